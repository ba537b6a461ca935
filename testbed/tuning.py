"""Reading a strict emulator's tuning from the environment: one float per dataclass field.

The strict layers keep their waits and rate limits in frozen dataclasses with the real services'
values (or short test-bed ones) as defaults; `KUMO_STRICT_<SERVICE>_<FIELD>` overrides one field,
in seconds, so a developer can slow the bed down or switch a limit off without code.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, TypeVar

Tuning = TypeVar("Tuning")


def tuning_from_env(cls: type[Tuning], prefix: str) -> Tuning:
    """`cls()` with each field a `{prefix}{FIELD}` variable names replaced by its float value."""
    values: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        raw = os.environ.get(f"{prefix}{item.name.upper()}")
        if raw is not None:
            values[item.name] = float(raw)
    return cls(**values)
