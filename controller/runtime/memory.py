"""Keeping the controller's resident memory close to what it actually holds.

Two glibc behaviours inflate a long-running, threaded Python process. Each thread that allocates
gets its own malloc arena (up to 8 per core), and memory freed inside an arena stays mapped. A
sweep of 10,000 objects parses one large listing in a worker thread and frees it a second later;
without help that peak stays in the process for good. So the controller caps the arenas at start
and hands free pages back after each sweep. Both are no-ops where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - present only in glibc (musl has neither function)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENAS) -> None:
    """Call before threads start; the same as MALLOC_ARENA_MAX in the environment."""
    if _LIBC is not None and not _LIBC.mallopt(M_ARENA_MAX, arenas):
        log.debug("mallopt(M_ARENA_MAX) refused")


def release_free_memory() -> None:
    """Return free heap pages to the operating system (after a large, short-lived peak)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
