"""Keeping the controller's resident memory close to what it actually holds.

Two glibc behaviours inflate a long-running, threaded Python process. Each thread that allocates
gets its own malloc arena (up to 8 per core), and memory freed inside an arena stays mapped. A
sweep of 10,000 objects parses one large listing in a worker thread and frees it a second later;
without help that peak stays in the process for good. So the controller caps the arenas at start
and hands free pages back after each sweep. Both are no-ops where glibc is not the allocator.

kopf, for its part, keeps a record per watched object for as long as the object exists (its memo,
its daemons, its error throttle): ~0.7 KB for each object and each connection Secret. kumo's
handlers are all `on.event` ones and use none of it, so the operator runs with
`EventOnlyMemories`, which keeps none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

# kopf exports no name for the memories it accepts (kopf.operator(memories=...)); this is the type.
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

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


class EventOnlyMemories(ResourceMemories):
    """kopf's per-object memories for an operator of `on.event` handlers only: each event gets a
    fresh record, and none is kept. What kopf keeps there serves daemons, timers, change handlers
    (resuming them), indexes and handler memos, none of which kumo uses; the one thing an event
    handler's operator loses is that the throttle kopf applies after its own error in processing
    an object restarts at the first delay with the object's next event."""

    async def recall(self, raw_body: Any, *, ephemeral: bool = False, **kwargs: Any) -> ResourceMemory:
        return await super().recall(raw_body, ephemeral=True, **kwargs)
