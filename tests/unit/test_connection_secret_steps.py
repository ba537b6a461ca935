"""The connection Secret collaborator alone (controller/core/secrets.py), against the in-memory API
server: each scenario is one rule that keeps the Secret and the instance in agreement."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kumo.controller.core import connection as conn
from kumo.controller.core.resources import ObjectKey
from kumo.controller.core.secrets import ConnectionSecrets, SecretConflict, SecretOwner, SecretState
from kumo.providers.base import Kind

from kumo import api

from .fakes import FakeKube, secret_body

NS, NAME, UID = "team-a", "orders", "uid-1"
SECRET = f"{NAME}-connection"


def owner(rotation: str = "") -> SecretOwner:
    annotations = {api.ANNOTATION_ROTATE_PASSWORD: rotation} if rotation else {}
    body: dict[str, Any] = {
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "annotations": annotations},
        "spec": {},
    }
    return SecretOwner(ObjectKey(Kind.DATABASE, NS, NAME), body)


def world() -> tuple[FakeKube, ConnectionSecrets]:
    kube = FakeKube([])
    return kube, ConnectionSecrets(kube)  # type: ignore[arg-type]


def test_a_secret_someone_else_owns_is_a_conflict_and_is_left_alone():
    kube, secrets = world()
    kube.secrets[(NS, SECRET)] = secret_body({"metadata": {"name": SECRET}, "data": {}})
    with pytest.raises(SecretConflict, match="not owned by this Database"):
        asyncio.run(secrets.ensure_password(owner()))
    assert kube.writes == []


def test_the_first_password_is_stored_before_anything_else_and_kept_afterwards():
    """The first call creates the Secret with a pending password; the next finds and keeps it."""
    kube, secrets = world()
    first = asyncio.run(secrets.ensure_password(owner()))
    assert first.password is not None and first.password.state == conn.PASSWORD_PENDING
    assert kube.secret_value(NS, SECRET, "password") == first.password.value
    again = asyncio.run(secrets.ensure_password(owner()))
    assert again.password == first.password and [w[0] for w in kube.writes] == ["kube:create-secret"]


def test_a_rotation_is_staged_while_apps_keep_the_working_password():
    kube, secrets = world()
    first = asyncio.run(secrets.ensure_password(owner()))
    assert first.password is not None
    rotated = asyncio.run(secrets.ensure_password(owner(rotation="r1")))
    assert rotated.password is not None and rotated.password.staged and rotated.password.rotation == "r1"
    assert kube.secret_value(NS, SECRET, "password") == first.password.value
    assert kube.secret_value(NS, SECRET, api.PENDING_PASSWORD_KEY) == rotated.password.value


def test_publishing_what_is_already_there_writes_nothing():
    """A steady state costs no write: the second publish finds the same data and annotations."""
    kube, secrets = world()
    state = asyncio.run(secrets.ensure_password(owner()))
    assert state.password is not None
    details = conn.database_data({"host": "h", "port": "5432", "engine": "postgres"}, "app", state.password.value)
    asyncio.run(secrets.publish(owner(), state, details))
    written = len(kube.writes)
    now = SecretState(asyncio.run(secrets.read(owner())).current, state.password)
    asyncio.run(secrets.publish(owner(), now, details))
    assert len(kube.writes) == written and kube.secret_value(NS, SECRET, "host") == "h"


def test_only_the_owned_secret_is_deleted():
    kube, secrets = world()
    kube.secrets[(NS, SECRET)] = secret_body({"metadata": {"name": SECRET}, "data": {}})
    asyncio.run(secrets.delete(owner()))
    assert (NS, SECRET) in kube.secrets
    del kube.secrets[(NS, SECRET)]
    asyncio.run(secrets.ensure_password(owner()))
    asyncio.run(secrets.delete(owner()))
    assert (NS, SECRET) not in kube.secrets


def test_a_secret_the_sharder_moved_ahead_of_its_draining_owner_keeps_its_data_and_follows_the_owner():
    """Issue 17's window: the sharder moves a controlled Secret to the owner's next shard at once,
    while the owner keeps the old shard's label until that shard acknowledges the drain. A pass of
    the old shard in that window (its cache has not seen the drain label yet) reads the Secret live:
    it keeps the data and password, and only writes the owner's label back; the new shard's first
    pass, once the owner is its own, writes its label again. Nothing is deleted, no password is
    made, and the Secret ends on the owner's shard."""
    ring_label = api.shard_label("kumo")

    def on(shard: str) -> SecretOwner:
        body = owner().body
        return SecretOwner(owner().key, {**body, "metadata": {**body["metadata"], "labels": {ring_label: shard}}})

    kube, secrets = world()
    first = asyncio.run(secrets.ensure_password(on("old")))
    assert first.password is not None
    details = conn.database_data({"host": "h", "port": "5432", "engine": "postgres"}, "app", first.password.value)
    asyncio.run(secrets.publish(on("old"), first, details))
    kube.secrets[(NS, SECRET)]["metadata"]["labels"][ring_label] = "new"  # the sharder's direct move

    for shard in ("old", "new"):  # the old shard's late pass, then the new shard's first
        state = asyncio.run(secrets.ensure_password(on(shard)))
        assert state.password == first.password, "the stored password is kept, none is made"
        asyncio.run(secrets.publish(on(shard), state, details))
        assert kube.secrets[(NS, SECRET)]["metadata"]["labels"][ring_label] == shard
        assert kube.secret_value(NS, SECRET, "password") == first.password.value
    assert [write[0] for write in kube.writes].count("kube:create-secret") == 1
    assert not any("delete" in write[0] for write in kube.writes)
