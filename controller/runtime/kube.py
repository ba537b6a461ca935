"""The Kubernetes API as the controller calls it: `KubeClient` implements the core's `Kube`.

Everything the controller writes goes through here, so the writes are easy to count and easy to
fake in unit tests. Calls go over controller/runtime/kubehttp.py's aiohttp client on the event
loop (no threads, no official client). Finalizers are changed with JSON patches that `test` the
list first, so a concurrent change by someone else fails instead of being overwritten.

Objects go in and come out as plain dicts in the API's JSON shape, and every refusal is translated
into the core's own errors (controller/core/kubeapi.py) by kubehttp: 404 `NotFound`, 409 (and a
failed patch `test`) `Conflict`, a create in a terminating namespace `NamespaceTerminating`,
anything else `KubeError` with the server's one-line message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kumo.controller.core.conditions import now_rfc3339
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.kubehttp import JSON, JSON_PATCH, MERGE_PATCH, METADATA_ONLY, KubeHTTP
from kumo.providers.base import Kind

from kumo.api import API_VERSION, CLUSTER_PROVIDER_CONFIG, GROUP, MANAGED, PLURALS, PROVIDER_CONFIG, VERSION

log = logging.getLogger(__name__)
PAGE = 500  # objects per list request: bounded memory however many there are

__all__ = ["Conflict", "KubeClient", "KubeError", "NamespaceTerminating", "NotFound"]


def custom_path(plural: str, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    """The REST path of kumo's own resources: one object, or the collection when `name` is None;
    cluster-scoped (or across all namespaces) when `namespace` is None."""
    path = f"/apis/{GROUP}/{VERSION}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    return f"{path}/{subresource}" if subresource else path


def core_path(plural: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a core/v1 resource (secrets, events, namespaces)."""
    path = "/api/v1" + (f"/namespaces/{namespace}" if namespace is not None else "") + f"/{plural}"
    return f"{path}/{name}" if name is not None else path


def finalizers_patch(current: list[str], wanted: list[str]) -> list[dict[str, Any]]:
    """A JSON patch from `current` to `wanted` finalizers that fails (`Conflict`) if someone else
    changed the list meanwhile, instead of overwriting their change."""
    if not current:
        return [{"op": "add", "path": "/metadata/finalizers", "value": wanted}]
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": wanted},
    ]


class KubeClient:
    """The core's `Kube` over kubehttp, plus the listings and writes the runtime needs."""

    def __init__(self, http: KubeHTTP, component: str = "kumo") -> None:
        self.http = http
        self.component = component

    # ------------------------------------------------------------------ managed objects

    async def patch_status(
        self, key: ObjectKey, status: Mapping[str, Any], resource_version: str | None = None
    ) -> None:
        """Merge-patch status; with `resource_version` the write is refused (`Conflict`) if the
        object changed since that version was read."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        path = custom_path(MANAGED[key.kind].plural, key.namespace, key.name, "status")
        await self.http.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def add_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        patch: list[dict[str, Any]]
        if current:
            patch = [
                {"op": "test", "path": "/metadata/finalizers", "value": current},
                {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
            ]
        else:
            patch = [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]
        await self._json_patch(custom_path(MANAGED[key.kind].plural, key.namespace, key.name), patch)

    async def remove_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        index = current.index(finalizer)
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        with contextlib.suppress(NotFound):  # already gone: nothing left to hold
            await self._json_patch(custom_path(MANAGED[key.kind].plural, key.namespace, key.name), patch)

    async def _json_patch(self, path: str, patch: list[dict[str, Any]]) -> None:
        """A JSON patch guarded by its `test` operations (a failed one is a `Conflict`)."""
        await self.http.request("PATCH", path, body=patch, content_type=JSON_PATCH, guarded_patch=True)

    async def get_object(self, key: ObjectKey) -> dict[str, Any] | None:
        try:
            return await self.http.request("GET", custom_path(MANAGED[key.kind].plural, key.namespace, key.name))
        except NotFound:
            return None

    async def list_objects(
        self, kind: Kind, namespace: str | None, label_selector: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object of a kind (only those matching `label_selector`, when given: a shard's
        own), in one namespace or all (None), a page at a time."""
        params = {"labelSelector": label_selector} if label_selector else {}
        async for page in self._pages(custom_path(MANAGED[kind].plural, namespace), params):
            for item in page.get("items") or []:
                yield item

    async def patch_object_metadata(self, key: ObjectKey, patch: Mapping[str, Any]) -> None:
        """Merge-patch a managed object's metadata (a shard's drain acknowledgement: labels only)."""
        path = custom_path(MANAGED[key.kind].plural, key.namespace, key.name)
        await self.http.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def list_secret_metadata(self, namespace: str | None, label_selector: str) -> AsyncIterator[dict[str, Any]]:
        """The metadata of matching Secrets, a page at a time: asked for as PartialObjectMetadata,
        so their data is not even sent (a server that ignores the ask sends it; it is dropped)."""
        params = {"labelSelector": label_selector}
        async for page in self._pages(core_path("secrets", namespace), params, accept=METADATA_ONLY):
            for item in page.get("items") or []:
                yield item["metadata"]

    async def _pages(self, path: str, params: Mapping[str, str], accept: str = JSON) -> AsyncIterator[dict[str, Any]]:
        """A list request's pages of at most PAGE items, following the continue token."""
        token = None
        while True:
            query = {**params, "limit": PAGE, "continue": token}
            page = await self.http.request("GET", path, params=query, accept=accept)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    # ------------------------------------------------------------------ provider configs

    async def get_provider_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        cluster_scoped = kind == CLUSTER_PROVIDER_CONFIG.kind
        try:
            return await self.http.request(
                "GET", custom_path(PLURALS[kind], None if cluster_scoped else namespace, name)
            )
        except NotFound:
            raise NotFound(f"{kind} {name!r} not found") from None

    async def set_provider_config_finalizers(
        self, namespace: str, name: str, current: list[str], wanted: list[str]
    ) -> None:
        """A namespaced ProviderConfig's finalizers (the in-use protection); gone is fine."""
        with contextlib.suppress(NotFound):
            await self._json_patch(
                custom_path(PROVIDER_CONFIG.plural, namespace, name), finalizers_patch(current, wanted)
            )

    async def set_cluster_provider_config_finalizers(self, name: str, current: list[str], wanted: list[str]) -> None:
        """A ClusterProviderConfig's finalizers; `Conflict` if the list is no longer `current`."""
        await self._json_patch(
            custom_path(CLUSTER_PROVIDER_CONFIG.plural, None, name), finalizers_patch(current, wanted)
        )

    async def patch_provider_config_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch a ProviderConfig's (namespace given) or ClusterProviderConfig's status."""
        path = custom_path(PLURALS[kind], namespace or None, name, "status")
        await self.http.request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    # ------------------------------------------------------------------ secrets

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as the API returns it."""
        try:
            return await self.http.request("GET", core_path("secrets", namespace, name))
        except NotFound:
            return None

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> str:
        """Create a Secret; returns its resourceVersion, so a later replace in the same pass is
        guarded by the version this write made, not a stale one."""
        created = await self.http.request("POST", core_path("secrets", namespace), body=secret)
        return str(created["metadata"]["resourceVersion"])

    async def set_secret_finalizers(self, namespace: str, name: str, current: list[str], wanted: list[str]) -> None:
        """A credentials Secret's finalizers (the in-use protection); gone is fine."""
        with contextlib.suppress(NotFound):
            await self._json_patch(core_path("secrets", namespace, name), finalizers_patch(current, wanted))

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> str:
        """Replace a Secret (`Conflict` if it carries a resourceVersion that is no longer
        current); returns the new resourceVersion."""
        replaced = await self.http.request("PUT", core_path("secrets", namespace, name), body=secret)
        return str(replaced["metadata"]["resourceVersion"])

    async def patch_secret_metadata(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Secret's metadata (a shard's drain acknowledgement: labels only)."""
        await self.http.request("PATCH", core_path("secrets", namespace, name), body=patch, content_type=MERGE_PATCH)

    async def delete_secret(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.http.request("DELETE", core_path("secrets", namespace, name))

    # ------------------------------------------------------------------ events and cluster facts

    async def emit_event(self, key: ObjectKey, uid: str, event_type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about a managed object. Best effort: failures are logged only,
        because an event is never worth failing a reconcile for."""
        now = now_rfc3339()
        event = {
            "metadata": {"generateName": f"{key.name}.", "namespace": key.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": str(key.kind),
                "name": key.name,
                "namespace": key.namespace,
                "uid": uid,
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
        }
        try:
            await self.create_event(key.namespace, event)
        except NamespaceTerminating:  # expected while a namespace's objects are finalized
            log.info("event %s on %s not posted: namespace %s is being terminated", reason, key, key.namespace)
        except KubeError as error:
            log.warning("could not post event %s on %s: %s", reason, key, error)

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        """Post a core/v1 Event as given (refusals raise)."""
        await self.http.request("POST", core_path("events", namespace), body=event)

    async def namespace_uid(self, name: str) -> str:
        namespace = await self.http.request("GET", core_path("namespaces", None, name))
        return str(namespace["metadata"]["uid"])
