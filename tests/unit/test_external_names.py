"""Derived external names: valid on every cloud kumo supports, and unchanged where they were valid.

The rules below are written from each cloud's documentation, independently of kumo's code, so
the property test is an oracle rather than kumo checking itself:
- S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
- GCS: https://cloud.google.com/storage/docs/buckets#naming
- RDS: CreateDBInstance API reference, DBInstanceIdentifier constraints
- Cloud SQL: Cloud SQL Admin API reference, the instance ID (with the project ID, at most 98)
"""

from __future__ import annotations

import hashlib
import random
import re

import pytest
from kumo.controller.core.resources import derived_external_name, external_name

SEED = 13
CASES = 4000
LONGEST_PROJECT_ID = 30  # GCP project IDs are 6 to 30 characters


def s3_refuses(name: str) -> list[str]:
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append("length")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name):
        problems.append("characters or first/last character")
    if ".." in name:
        problems.append("adjacent dots")
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        problems.append("IP address")
    problems += [f"prefix {p}" for p in ("xn--", "sthree-", "amzn-s3-demo-") if name.startswith(p)]
    suffixes = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    problems += [f"suffix {s}" for s in suffixes if name.endswith(s)]
    return problems


def gcs_refuses(name: str) -> list[str]:
    problems = []
    if not 3 <= len(name) <= (222 if "." in name else 63) or any(len(p) > 63 for p in name.split(".")):
        problems.append("length")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name):
        problems.append("characters or first/last character")
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        problems.append("IP address")
    if name.startswith("goog"):
        problems.append("prefix goog")
    if re.search(r"g[o0][o0]g[l1][e3]", name):
        problems.append("google or a close misspelling")
    return problems


def rds_refuses(name: str) -> list[str]:
    problems = []
    if not 1 <= len(name) <= 63:
        problems.append("length")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name):
        problems.append("characters or first character")
    if "--" in name or name.endswith("-"):
        problems.append("hyphens")
    return problems


def cloud_sql_refuses(name: str) -> list[str]:
    problems = []
    if len(name) + 1 + LONGEST_PROJECT_ID > 98:
        problems.append("length with the project ID")
    if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name):
        problems.append("characters or first/last character")
    return problems


def refusals(name: str) -> dict[str, list[str]]:
    found = {
        "s3": s3_refuses(name),
        "gcs": gcs_refuses(name),
        "rds": rds_refuses(name),
        "cloudsql": cloud_sql_refuses(name),
    }
    return {cloud: problems for cloud, problems in found.items() if problems}


# Words the clouds reserve, and shapes that stress the derivation (digits first, dots, hyphens).
ADVERSARIAL = [
    "google", "g00gle", "goog1e", "g0og13", "goog", "sthree", "sthree-", "sthree-configurator",
    "amzn-s3-demo-", "amzn-s3-demo", "xn--", "xn--abc", "-s3alias", "--ol-s3", ".mrap", "--x-s3",
    "--table-s3", "192.168.5.4", "0", "9", "--", "..", "-.", "apps", "data",
]  # fmt: skip


def _label(rng: random.Random, longest: int, alphabet: str) -> str:
    """A DNS label-like string: first and last a letter or digit."""
    length = rng.randint(1, longest)
    middle = "".join(rng.choice(alphabet) for _ in range(max(0, length - 2)))
    edge = "abcdefghijklmnopqrstuvwxyz0123456789"
    return (rng.choice(edge) + middle + (rng.choice(edge) if length > 1 else ""))[:length]


def _with_words(rng: random.Random, text: str, longest: int, separators: str) -> str:
    """`text` with reserved words spliced in, cut back to a valid Kubernetes name of `longest`."""
    parts = [text]
    for _ in range(rng.randint(0, 3)):
        parts.insert(rng.randint(0, len(parts)), rng.choice(ADVERSARIAL))
    joined = rng.choice(separators).join(parts)
    joined = re.sub(f"[^a-z0-9{re.escape(separators)}]", "", joined)[:longest]
    joined = joined.strip(".-")
    if separators == "-":
        return joined or "a"
    return re.sub(r"[.-]*\.[.-]*", ".", joined).strip(".-") or "a"  # each dot-separated part a label


def random_namespace(rng: random.Random) -> str:
    """A valid namespace: a DNS-1123 label, at most 63 characters."""
    return _with_words(rng, _label(rng, 63, "abcdefghijklmnopqrstuvwxyz0123456789-"), 63, "-")


def random_object_name(rng: random.Random) -> str:
    """A valid object name: a DNS-1123 subdomain (lowercase labels joined by dots), at most 253."""
    labels = [_label(rng, 63, "abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(rng.randint(1, 4))]
    return _with_words(rng, ".".join(labels), 253, rng.choice(["-", ".-"]))


def valid_kubernetes_pair(namespace: str, name: str) -> bool:
    label = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
    return bool(
        len(namespace) <= 63
        and re.fullmatch(label, namespace)
        and len(name) <= 253
        and re.fullmatch(rf"{label}(\.{label})*", name)
    )


def random_pairs(seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        pair = (random_namespace(rng), random_object_name(rng))
        if valid_kubernetes_pair(*pair):  # a dot-separated part may come out longer than 63
            pairs.append(pair)
    # The cases the issue names, spelled out: they must be among the checked ones whatever the seed.
    pairs += [
        ("google-apps", "data"), ("sthree-data", "x"), ("xn--abc", "b"), ("amzn-s3-demo-x", "y"),
        ("a" * 63, "b" * 63), ("9lives", "db"), ("g00gle", "x"), ("data", "ends-s3alias"),
        ("t-google-apps", "bucket"), ("sthree", "a"), ("amzn-s3", "demo"), ("goog", "le"),
        ("x", "y-google"), ("a" * 48, "google"), ("a" * 50, "g00gle"),
    ]  # fmt: skip
    return pairs


def _derivation_before_issue_13(namespace: str, name: str, cluster_id: str) -> str:
    """kumo's derivation before names with reserved words were neutralised, kept as the oracle
    for "a name that was valid derives exactly as before"."""
    digest = hashlib.sha256(f"{cluster_id}/{namespace}/{name}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{namespace}-{name}".lower())
    stem = re.sub(r"-{2,}", "-", stem).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"k-{stem}".rstrip("-")
    stem = stem[: 63 - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def test_random_pairs_are_valid_kubernetes_names_and_carry_the_reserved_words():
    """The generator itself: every pair is a valid namespace and object name, and enough of them
    carry a reserved word that the derivation is really tested."""
    pairs = random_pairs(SEED, CASES)
    assert all(valid_kubernetes_pair(ns, name) for ns, name in pairs)
    adversarial = [p for p in pairs if refusals(_derivation_before_issue_13(*p, "cluster-1"))]
    assert len(adversarial) > CASES // 10


def test_derived_names_are_valid_on_every_cloud_for_every_valid_namespace_and_name():
    """Thousands of valid namespaces and names (random, with the clouds' reserved words spliced
    in): each derived name passes the rules of S3, GCS, RDS and Cloud SQL, and is deterministic."""
    bad = {}
    for namespace, name in random_pairs(SEED, CASES):
        derived = derived_external_name(namespace, name, "cluster-1")
        if refusals(derived) or derived != derived_external_name(namespace, name, "cluster-1"):
            bad[(namespace, name)] = (derived, refusals(derived))
    assert bad == {}


def test_names_that_were_valid_everywhere_derive_exactly_as_before():
    """An existing object's external name must never change (it would orphan the resource): every
    random pair whose old name was valid on every cloud gets that same name."""
    changed = {}
    for namespace, name in random_pairs(SEED, CASES):
        before = _derivation_before_issue_13(namespace, name, "cluster-1")
        now = derived_external_name(namespace, name, "cluster-1")
        if not refusals(before) and now != before:
            changed[(namespace, name)] = (before, now)
    assert changed == {}


@pytest.mark.parametrize(
    ("namespace", "name", "cluster_id", "expected"),
    [
        ("team-a", "orders", "cluster-1", "team-a-orders-5c404c91"),
        ("9lives", "db", "cluster-1", "k-9lives-db-02b7fb8b"),
        ("a" * 60, "b" * 60, "cluster-1", "a" * 54 + "-fa85cb4a"),
        ("ns", "dotted.name.v2", "cluster-1", "ns-dotted-name-v2-9bdc6c1f"),
        ("t-prod", "web.assets", "kumo-test", "t-prod-web-assets-54d2b41e"),
        ("default", "x", "c", "default-x-d5dee76d"),
        ("kube-system", "b-1", "prod-eu", "kube-system-b-1-75e36bf0"),
        ("go-ogle", "x", "c", "go-ogle-x-ce4d4128"),
        ("t-abc123", "bucket-1", "kumo-e2e", "t-abc123-bucket-1-72d8b2c6"),
        ("0", "0", "c", "k-0-0-648dd290"),
        ("xn--abc", "x", "c", "xn-abc-x-d69e1e70"),
        ("sthreedata", "x", "c", "sthreedata-x-4d7fc578"),
        ("data", "ends-s3alias", "c", "data-ends-s3alias-69bba922"),
        ("my-goo", "gle", "c", "my-goo-gle-d46d6d79"),
    ],
)
def test_derived_names_recorded_before_the_change_are_kept(namespace, name, cluster_id, expected):
    """Literal names the derivation gave before reserved words were neutralised (valid on every
    cloud, so they must not change)."""
    assert derived_external_name(namespace, name, cluster_id) == expected


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("google-apps", "data", "ggl-apps-data-4c43b1ce"),
        ("sthree", "data", "k-sthree-data-1b862b98"),
        ("amzn-s3", "demo", "k-amzn-s3-demo-99c80bc0"),
        ("goog", "x", "k-goog-x-966b8251"),
        ("t-g00gle", "b", "t-ggl-b-4af4ec58"),
    ],
    ids=["google-word", "sthree-prefix", "amzn-s3-demo-prefix", "goog-prefix", "g00gle-misspelling"],
)
def test_reserved_words_are_neutralised_only_where_they_are(namespace, name, expected):
    """Only the reserved word changes: "google"-like words become "ggl", a reserved prefix gets
    "k-" in front; the hash (and so uniqueness) is the same as before."""
    derived = derived_external_name(namespace, name, "c")
    assert derived == expected
    assert derived[-8:] == _derivation_before_issue_13(namespace, name, "c")[-8:]


def test_the_name_recorded_in_status_wins_over_the_derivation():
    """An object whose resource was created under an older derivation keeps that name (here an
    S3 bucket in namespace google-apps, valid on S3, now derived differently)."""
    old = _derivation_before_issue_13("google-apps", "data", "c")
    body = {
        "metadata": {"namespace": "google-apps", "name": "data"},
        "spec": {},
        "status": {"atProvider": {"externalName": old}},
    }
    assert external_name(body, "c") == old != derived_external_name("google-apps", "data", "c")
    assert external_name({**body, "status": {}}, "c") == derived_external_name("google-apps", "data", "c")
    explicit = {**body, "spec": {"externalName": "chosen-by-user"}}
    assert external_name(explicit, "c") == "chosen-by-user"
