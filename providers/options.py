"""`spec.providerOptions`: each provider's allow-list of keys, and the checks of their values.

Options are the escape hatch for settings the portable vocabulary lacks, so they are the one part
of a spec the API server cannot check. Every provider documents the keys it accepts per kind as
`ProviderOption`s; `option_problems` turns a manifest's options into messages that name
`spec.providerOptions.<key>` (reported by `validate()` before any cloud call), and
`checked_options` refuses a request built from options that were never validated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .base import Terminal

OPTIONS_FIELD = "spec.providerOptions"
CODE_INVALID_OPTIONS = "InvalidProviderOptions"
Check = Callable[[Any], str | None]  # what is wrong with a value, or None


@dataclass(frozen=True)
class ProviderOption:
    """One allowed key and how its value is checked. `parameter` names the API parameter the
    value is passed as, where the provider maps options one to one (AWS); otherwise where it goes
    in the request is the kind's business."""

    name: str
    check: Check
    parameter: str = ""


def option_problems(options: Mapping[str, Any], allowed: Collection[ProviderOption], provider: str) -> list[str]:
    """What is wrong with the options, each message naming its `spec.providerOptions.<key>`."""
    by_name = {option.name: option for option in allowed}
    known = ", ".join(sorted(by_name))
    problems: list[str] = []
    for key, value in options.items():
        option = by_name.get(key)
        if option is None:
            problems.append(f"{OPTIONS_FIELD}.{key}: unknown option for {provider}; known: {known}")
        elif (problem := option.check(value)) is not None:
            problems.append(f"{OPTIONS_FIELD}.{key}: {problem}")
    return problems


def checked_options(
    options: Mapping[str, Any], allowed: Collection[ProviderOption], provider: str
) -> Mapping[str, Any]:
    """The options, or `Terminal` when any is invalid (validate() normally caught that earlier,
    but a create must never send a half-understood request)."""
    problems = option_problems(options, allowed, provider)
    if problems:
        raise Terminal("; ".join(problems), code=CODE_INVALID_OPTIONS)
    return options


# ---------------------------------------------------------------------------- value checks


def text_matching(pattern: str, shape: str) -> Check:
    """A check accepting strings that fully match `pattern`; `shape` describes it to the user."""
    compiled = re.compile(pattern)

    def check(value: Any) -> str | None:
        if isinstance(value, str) and compiled.fullmatch(value):
            return None
        return f"must be {shape}, got {value!r}"

    return check


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def integer_between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"must be an integer from {low} to {high}, got {value!r}"

    return check


def list_of(item: Check) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list, got {value!r}"
        return next((problem for problem in map(item, value) if problem is not None), None)

    return check


def is_boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
