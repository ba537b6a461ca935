"""kumo's version: the installed distribution's, so pyproject.toml's `version` is its only source."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "kumo"


def kumo_version() -> str:
    """The version pip installed (`kumo --version`, the controller's start-up line, its user agent)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
