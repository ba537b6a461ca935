"""The connection Secret of one managed object: read, password first, publish, delete.

One collaborator of the reconciler (controller/core/reconciler.py), with the rules that keep the
Secret and the cloud resource in agreement:

- **read**: a Secret under the object's connection Secret name that the object does not own is
  never touched; the step fails with `SecretConflict` instead (before anything is created, so
  no cloud resource is left with nowhere to publish);
- **password first**: a Database's password is in the Secret *before* any cloud call that sets
  it, so a crash can never lose it. The first password goes under `password`; a rotation's new one
  is staged under `pending-password` while `password` and `uri` keep the credential the instance
  takes now; they switch together once the cloud has applied it (`publish`);
- **publish**: the connection details, written only when they differ from what is there;
- **delete**: the owned Secret goes with its object (never one someone else owns).

Nothing here is kept between calls: each call takes the `SecretState` the previous one returned
(the Secret as last read or written, and the password being worked on) and returns the next.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core import connection as conn
from kumo.controller.core.kubeapi import Kube, owned_by
from kumo.controller.core.resources import ObjectKey, owner_reference
from kumo.providers.base import Terminal

from kumo import api


class SecretConflict(Terminal):
    """The connection Secret's name is taken by a Secret this object does not own."""


@dataclass(frozen=True)
class SecretOwner:
    """The managed object a connection Secret belongs to, as the API server has it."""

    key: ObjectKey
    body: Mapping[str, Any]

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def secret_name(self) -> str:
        return api.connection_secret_name(self.key.kind, self.body)

    @property
    def rotation(self) -> str:
        """The rotation request the object carries ("" for none)."""
        return (self.body["metadata"].get("annotations") or {}).get(api.ANNOTATION_ROTATE_PASSWORD, "")

    @property
    def shard_labels(self) -> dict[str, str]:
        """The object's shard assignments (kumo run --shard-ring): its Secret follows it onto the
        same shard, as the sharder's own rule for controlled objects says; written here too so a
        Secret kumo replaces never drops out of its shard's watch between writes."""
        labels = self.body["metadata"].get("labels") or {}
        return {key: value for key, value in labels.items() if key.startswith(api.SHARD_LABEL_PREFIX)}


@dataclass(frozen=True)
class SecretState:
    """The connection Secret as this pass last read or wrote it (None: there is none), with the
    resourceVersion of that read or write, and the password being worked on (Databases only)."""

    current: Mapping[str, Any] | None = None
    password: conn.StoredPassword | None = None


class ConnectionSecrets:
    """The connection Secret calls of the reconciler, over the core's `Kube`."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def read(self, owner: SecretOwner) -> SecretState:
        """The Secret as it is now; `SecretConflict` if one of that name belongs to someone else."""
        secret = await self.kube.read_secret(owner.key.namespace, owner.secret_name)
        if secret is not None and not owned_by(secret, owner.uid):
            raise SecretConflict(
                f"spec.writeConnectionSecretToRef: Secret {owner.secret_name!r} exists and is not owned by this "
                f"{owner.key.kind}; choose another name or delete that Secret"
            )
        return SecretState(secret)

    async def ensure_password(self, owner: SecretOwner) -> SecretState:
        """A password in the Secret before any cloud call that sets it: the one stored, or a new
        one (the first, or a rotation's, staged). A staged password is finished before a newer
        rotation starts, so one the cloud may hold is never dropped."""
        secret = (await self.read(owner)).current
        stored = stored_password(secret, owner.uid)
        if stored is not None and (stored.rotation == owner.rotation or stored.staged):
            # A password a user wrote into the Secret comes back 'pending' (its digest no longer
            # matches): it is set on the instance later, like a rotation (docs/concepts.md).
            return SecretState(secret, stored)
        data = secret_data(secret)
        staged = bool(data.get("password"))
        password = conn.StoredPassword(conn.generate_password(), conn.PASSWORD_PENDING, owner.rotation, staged=staged)
        data[api.PENDING_PASSWORD_KEY if staged else "password"] = password.value
        body = secret_body(owner, data, password)
        if secret is None:
            version = await self.kube.create_secret(owner.key.namespace, body)
        else:
            body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
            version = await self.kube.replace_secret(owner.key.namespace, owner.secret_name, body)
        # Later writes compare against what is there now, and are guarded by the version this
        # write made: keeping the one read before it made every rotation fail once with 409.
        body["metadata"]["resourceVersion"] = version
        return SecretState(body, password)

    async def mark_password(self, owner: SecretOwner, state: SecretState, password_state: str) -> SecretState:
        """Record in the Secret whether its password is known to be set on the instance (the
        data stays as it is)."""
        assert state.password is not None
        password = conn.StoredPassword(state.password.value, password_state, state.password.rotation)
        body = secret_body(owner, secret_data(state.current), password)
        body["metadata"]["resourceVersion"] = await self.kube.replace_secret(
            owner.key.namespace, owner.secret_name, body
        )
        return SecretState(body, password)

    async def publish(self, owner: SecretOwner, state: SecretState, data: Mapping[str, str]) -> None:
        """Write the connection details (and the password's state) unless the Secret already
        says exactly that."""
        wanted = secret_body(owner, data, state.password)
        current = state.current
        if current is None:
            await self.kube.create_secret(owner.key.namespace, wanted)
        elif not _same(current, wanted):
            if current["metadata"].get("resourceVersion"):
                wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.kube.replace_secret(owner.key.namespace, owner.secret_name, wanted)

    async def delete(self, owner: SecretOwner) -> None:
        """Delete the Secret if the object owns it. Garbage collection removes it through the
        ownerReference too, but only after the object is gone and at the collector's pace; deleting
        it here means the Secret never outlives the finalizer (an app sees it vanish with its
        database). If the collector or a user was quicker, nothing is found: fine."""
        secret = await self.kube.read_secret(owner.key.namespace, owner.secret_name)
        if secret is not None and owned_by(secret, owner.uid):
            await self.kube.delete_secret(owner.key.namespace, owner.secret_name)


def secret_body(owner: SecretOwner, data: Mapping[str, str], password: conn.StoredPassword | None) -> dict[str, Any]:
    """The Secret kumo writes for `owner` with `data` (plain text; encoded here)."""
    annotations = {}
    if password is not None:
        # The state and rotation describe the password being worked on (the staged one, while
        # there is one); the digest always the published `password` apps read.
        annotations = {api.ANNOTATION_PASSWORD_STATE: password.state, api.ANNOTATION_ROTATION: password.rotation}
        if data.get("password"):
            annotations[api.ANNOTATION_PASSWORD_DIGEST] = conn.password_digest(owner.uid, data["password"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": owner.secret_name,
            "namespace": owner.key.namespace,
            "labels": {
                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                api.LABEL_OWNER_KIND: str(owner.key.kind),
                api.LABEL_OWNER_NAME: owner.key.name,
                **owner.shard_labels,
            },
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner.key.kind, owner.body)],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def secret_data(secret: Mapping[str, Any] | None) -> dict[str, str]:
    """A Secret's data, decoded (empty for no Secret)."""
    return {k: _decoded(v) for k, v in ((secret or {}).get("data") or {}).items()}


def stored_password(secret: Mapping[str, Any] | None, uid: str) -> conn.StoredPassword | None:
    """The password being worked on: a staged rotation's (not yet published), else `password`."""
    if secret is None:
        return None
    annotations = secret["metadata"].get("annotations") or {}
    data = secret.get("data") or {}
    state = annotations.get(api.ANNOTATION_PASSWORD_STATE, conn.PASSWORD_PENDING)
    rotation = annotations.get(api.ANNOTATION_ROTATION, "")
    if data.get(api.PENDING_PASSWORD_KEY):
        return conn.StoredPassword(_decoded(data[api.PENDING_PASSWORD_KEY]), state, rotation, staged=True)
    if not data.get("password"):
        return None
    value = _decoded(data["password"])
    if conn.edited(annotations, uid, value):
        state = conn.PASSWORD_PENDING  # someone else wrote this value: not known on the instance
    return conn.StoredPassword(value, state, rotation)


def _decoded(value: str) -> str:
    return base64.b64decode(value).decode()


def _same(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """`current` already holds `wanted`'s data and kumo's labels and annotations (others may
    have added their own: those are left alone)."""
    meta, want_meta = current["metadata"], wanted["metadata"]
    return (
        current.get("data") == wanted["data"]
        and all((meta.get("labels") or {}).get(k) == v for k, v in want_meta["labels"].items())
        and all((meta.get("annotations") or {}).get(k) == v for k, v in want_meta["annotations"].items())
    )
