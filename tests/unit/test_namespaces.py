"""Namespace patterns: the start-up listing selects exactly what kopf's watches serve, by the rules
kopf documents (https://kopf.readthedocs.io/en/stable/scopes/)."""

from __future__ import annotations

import pytest
from kumo.controller.runtime.namespaces import matches, watched


@pytest.mark.parametrize(
    ("pattern", "selected", "not_selected"),
    [
        ("team-a", ["team-a"], ["team-ab", "team-b"]),
        ("team-*", ["team-a", "team-b"], ["kube-system"]),
        ("team-?", ["team-a"], ["team-ab"]),
        ("!kube-*", ["default", "team-a"], ["kube-system", "kube-public"]),
        # the first including glob decides; a later one only brings back what an exclusion removed
        ("myapp-*, !*-pr-*, *pr-123", ["myapp-test", "myapp-pr-123"], ["myapp-pr-456", "otherapp-pr-123"]),
        # opening with an exclusion implies a leading "*": otherapp is back in
        ("!*-pr-*, *pr-123", ["myapp-test", "otherapp-pr-123"], ["myapp-pr-456"]),
    ],
    ids=["exact", "glob", "one-character", "exclusion-only", "exclusion-then-rematch", "implied-catch-all"],
)
def test_patterns_select_as_kopf_documents(pattern, selected, not_selected):
    assert all(matches(name, pattern) for name in selected)
    assert not any(matches(name, pattern) for name in not_selected)


def test_no_patterns_select_every_namespace_and_several_are_alternatives():
    assert watched("anything", [])
    assert watched("b", ["a", "b"]) and not watched("c", ["a", "b"])
