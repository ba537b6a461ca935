"""An app connects with the connection Secret kumo writes: a real driver, the Secret's `uri`, a
real PostgreSQL server behind the emulated RDS and Cloud SQL instances (testbed/engines.py).

Each scenario checks what an app would notice: that it can connect, write and read; that after a
rotation the new password works and the old one is refused; that a MySQL instance (no real server
here, docs/testbed.md) is reported as skipped rather than faked.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from kumo.testbed import engines

from .conftest import Kumo, example, unique

ROTATE = "kumo.dev/rotate-password"


def _ready_secret(kumo: Kumo, cloud: str, name: str, **spec: object) -> dict[str, str]:
    manifest = example(cloud, "Database", name)
    manifest["spec"].update(spec)
    kumo.create(manifest)
    kumo.wait_ready("Database", name, timeout=90)
    return kumo.wait_for("the Secret's uri", lambda: (s := kumo.secret(f"{name}-connection")) and "uri" in s and s)


def _connects(uri: str) -> bool:
    try:
        engines.app_round_trip(uri)
    except psycopg.OperationalError:
        return False
    return True


def test_an_app_connects_with_the_secrets_uri_writes_and_reads(kumo: Kumo, probe, provider_config, cloud):
    name = unique("app")
    secret = _ready_secret(kumo, cloud, name)
    assert secret["engine"] == "postgres"
    assert engines.app_round_trip(secret["uri"]).startswith("written by kumo's app check")
    # The Secret's separate keys reach the same database as its uri.
    with psycopg.connect(
        host=secret["host"],
        port=secret["port"],
        user=secret["username"],
        password=secret["password"],
        dbname=secret["database"],
        connect_timeout=5,
    ) as connection:
        assert connection.execute("SELECT count(*) FROM kumo_app_check").fetchone() == (1,)


def test_rotation_the_new_password_connects_and_the_old_one_is_refused(kumo: Kumo, probe, provider_config, cloud):
    name = unique("rot")
    before = _ready_secret(kumo, cloud, name)
    assert _connects(before["uri"])
    kumo.patch("Database", name, {"metadata": {"annotations": {ROTATE: str(uuid.uuid4())}}})

    def rotated() -> dict[str, str] | None:
        # An app re-reads the Secret until its uri carries the new password and connects: RDS
        # applies a new master password asynchronously (resetting-master-credentials).
        secret = kumo.secret(f"{name}-connection") or {}
        fresh = secret.get("password") not in ("", before["password"]) and secret["password"] in secret.get("uri", "")
        return secret if fresh and _connects(secret["uri"]) else None

    after = kumo.wait_for("the rotated Secret's uri to connect", rotated, timeout=90)
    assert after["uri"] != before["uri"]
    assert not _connects(before["uri"]), "the rotated-away password still connects"


def test_a_mysql_database_has_no_real_server_here(kumo: Kumo, probe, provider_config, cloud):
    """MySQL is not backed (no MySQL or MariaDB server installs from a package registry): the
    check is skipped, never faked, once the Secret is known to be complete."""
    name = unique("my")
    version = "8.0"
    secret = _ready_secret(kumo, cloud, name, engine="mysql", version=version)
    assert secret["uri"].startswith("mysql://") and secret["password"]
    assert "mysql" not in engines.BACKED_ENGINES
    pytest.skip("MySQL instances have no real server in the test bed (docs/testbed.md): connect check skipped")
