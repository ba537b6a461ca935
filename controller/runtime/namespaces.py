"""Which namespaces a namespace pattern selects, as kopf's `--namespace` option documents it.

The start-up listing (`Controller.prime`) must see exactly the namespaces kopf's watches serve, so
it applies the same rules, written here against kopf's documentation
(https://kopf.readthedocs.io/en/stable/scopes/) rather than imported from kopf's private modules:

- a pattern is a comma-separated list of globs (`*` any characters, `?` one), spaces ignored;
- a glob starting with `!` excludes; a pattern starting with one implies a leading `*`;
- the first including glob decides the initial match; a later including glob only brings back a
  namespace that an exclusion removed (so `app-*, !*-pr-*, *-pr-1` keeps `app-pr-1` and
  never adds `other-pr-1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase


def matches(namespace: str, pattern: str) -> bool:
    """True if `pattern` selects `namespace`."""
    globs = [glob.strip() for glob in pattern.split(",") if glob.strip()]
    if not globs:
        return False
    # Before the first including glob has spoken nothing is selected, unless the pattern opens
    # with an exclusion (then everything is, until excluded).
    selected = eligible = globs[0].startswith("!")
    decided = eligible
    for glob in globs:
        if glob.startswith("!"):
            if selected and fnmatchcase(namespace, glob[1:].strip()):
                selected = False
        elif not decided:
            selected = eligible = fnmatchcase(namespace, glob)
            decided = True
        elif eligible and fnmatchcase(namespace, glob):
            selected = True
    return selected


def watched(namespace: str, patterns: Sequence[str]) -> bool:
    """True if any of `patterns` selects `namespace`; no patterns at all select every namespace."""
    return not patterns or any(matches(namespace, pattern) for pattern in patterns)
