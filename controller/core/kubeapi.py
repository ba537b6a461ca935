"""The Kubernetes API as the reconcile core sees it: a narrow interface over plain dicts.

The core never imports the Kubernetes client: it is handed something that satisfies `Kube`
(controller/runtime/kube.py's `KubeClient` in the controller, `tests/unit/fakes.FakeKube` in unit
tests). Objects go in and come out as the API's own JSON shape (camelCase keys, Secret `data`
base64-encoded), and the API server's refusals arrive as the exceptions below, so no step needs to
know about HTTP status codes or the client's model classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kumo.controller.core.resources import ObjectKey


class KubeError(Exception):
    """The API server refused a request no step foresaw (an exhausted quota, an admission policy,
    missing RBAC). The message is the server's own one line, never a request body."""


class NotFound(KubeError):
    """The object asked for, or written to, does not exist (any more)."""


class Conflict(KubeError):
    """Someone else wrote the object since it was read: a write guarded by a resourceVersion, or a
    finalizer patch whose `test` no longer holds. A retry reads the new state."""


class NamespaceTerminating(KubeError):
    """The namespace is being deleted: the API server refuses to create anything in it."""


class Kube(Protocol):
    """The calls the reconcile core makes. Reads that find nothing return None (a missing object
    is an ordinary answer); writes raise the errors above."""

    async def patch_status(
        self, key: ObjectKey, status: Mapping[str, Any], resource_version: str | None = None
    ) -> None:
        """Merge-patch a managed object's status; with `resource_version`, `Conflict` if the
        object changed since that version was read."""

    async def add_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        """Append `finalizer`; `Conflict` if the list is no longer `current`."""

    async def remove_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        """Remove `finalizer` (an object already gone is fine); `Conflict` if the list changed."""

    async def get_provider_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A ProviderConfig (in `namespace`) or ClusterProviderConfig; `NotFound` if absent."""

    async def set_provider_config_finalizers(
        self, namespace: str, name: str, current: list[str], wanted: list[str]
    ) -> None:
        """A namespaced ProviderConfig's finalizers from `current` to `wanted` (gone is fine)."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as the API returns it, or None if there is none."""

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> str:
        """Create a Secret and return its resourceVersion; `NamespaceTerminating` in a namespace
        being deleted, `Conflict` if the name is taken."""

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> str:
        """Replace a Secret and return its new resourceVersion; `Conflict` if `secret` carries a
        resourceVersion that is no longer current, `NotFound` if it is gone."""

    async def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret; one already gone is fine."""

    async def set_secret_finalizers(self, namespace: str, name: str, current: list[str], wanted: list[str]) -> None:
        """A Secret's finalizers from `current` to `wanted` (gone is fine)."""

    async def emit_event(self, key: ObjectKey, uid: str, event_type: str, reason: str, message: str) -> None:
        """Post an Event about a managed object; best effort, never raises."""


def owned_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    """True if `obj` (any object in the API's dict shape) names `uid` among its owners."""
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)
