"""What `kumo run` says at INFO: one line for each cloud create, update and delete, naming the
object (kind namespace/name) and the external name; none of kopf's per-event lines ("Handler
'watch-buckets' succeeded.", kept at DEBUG); no Python function names; never a secret value.

The test controller logs at DEBUG, so the INFO view is taken from each line's level field."""

from __future__ import annotations

import re

import pytest

from .conftest import example, unique

pytestmark = pytest.mark.e2e

# `%(asctime)s %(levelname)-7s %(name)s: %(message)s` (controller/runtime/logs.py)
LINE = re.compile(r"^\d{4}-\d\d-\d\d \S+ (?P<level>[A-Z]+)\s+(?P<logger>\S+): (?P<message>.*)$")
KOPF_SUCCESS = re.compile(r"(Handler|Activity|Daemon|Timer|Indexer|Webhook) '[^']*' succeeded")


def messages(text: str, levels: frozenset[str] = frozenset({"INFO", "WARNING", "ERROR", "CRITICAL"})) -> list[str]:
    return [m["message"] for line in text.splitlines() if (m := LINE.match(line)) and m["level"] in levels]


def about(lines: list[str], kind: str, namespace: str, name: str) -> list[str]:
    """The lines that name this object as `Kind namespace/name`."""
    return [line for line in lines if re.search(rf"\b{kind} {re.escape(namespace)}/{re.escape(name)}\b", line)]


def test_each_cloud_change_is_one_info_line_and_kopf_says_nothing_at_info(kumo, probe, provider_config, cloud):
    name = unique("bk")
    marker = len(kumo.controller.log_text())
    kumo.create(example(cloud, "Bucket", name))
    external = kumo.wait_ready("Bucket", name)["status"]["atProvider"]["externalName"]
    kumo.patch("Bucket", name, {"spec": {"versioning": False}})
    kumo.wait_for("the edit applied", lambda: kumo.get("Bucket", name)["status"].get("observedGeneration") == 2)
    kumo.delete("Bucket", name)
    kumo.wait_gone("Bucket", name)

    log = kumo.controller.log_text()
    mine = about(messages(log[marker:]), "Bucket", kumo.namespace, name)
    mutations = [line for line in mine if re.match(r"(created|updated|deleted) ", line)]
    assert [line.split()[0] for line in mutations] == ["created", "updated", "deleted"], mine
    assert all(external in line for line in mutations), mutations
    assert "versioning" in mutations[1], mutations[1]

    at_info = messages(log)
    assert not [line for line in at_info if KOPF_SUCCESS.search(line)]
    assert not [line for line in at_info if "<locals>" in line]
    # Kept where it helps to follow one event through kopf: at DEBUG, under the handler's own id.
    assert "Handler 'watch-buckets' succeeded." in messages(log, frozenset({"DEBUG"}))


def test_a_database_password_never_reaches_the_log(kumo, probe, provider_config, cloud):
    name = unique("db")
    kumo.create(example(cloud, "Database", name))
    external = kumo.wait_ready("Database", name)["status"]["atProvider"]["externalName"]
    password = kumo.wait_for(
        "the connection Secret", lambda: (kumo.connection_secret("Database", name) or {}).get("password")
    )
    log = kumo.controller.log_text()
    created = [line for line in about(messages(log), "Database", kumo.namespace, name) if line.startswith("created ")]
    assert len(created) == 1 and external in created[0], created
    assert password not in log
    kumo.delete("Database", name)
