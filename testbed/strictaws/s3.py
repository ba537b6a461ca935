"""The strict s3 layer (to be filled in)."""

from __future__ import annotations

from typing import Any

from .timings import Timings


def install(timings: Timings) -> None:
    """Patch moto's s3 models in this process."""


def wrap(app: Any) -> Any:
    """WSGI middleware for what must be judged from the request itself."""
    return app
