"""The Kubernetes API as the controller calls it: `KubeClient` implements the core's `Kube`.

Everything the controller writes goes through here, so the writes are easy to count and easy to
fake in unit tests. The official client is blocking; each call runs in a worker thread so the
event loop never waits on the network. Finalizers are changed with JSON patches that `test` the
list first, so a concurrent change by someone else fails instead of being overwritten.

Objects go in and come out as plain dicts in the API's JSON shape, and every refusal is translated
into the core's own errors (controller/core/kubeapi.py): 404 `NotFound`, 409 (and a failed patch
`test`) `Conflict`, a create in a terminating namespace `NamespaceTerminating`, anything else
`KubeError` with the server's one-line message. No `ApiException` leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.controller.core.conditions import now_rfc3339
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.resources import ObjectKey
from kumo.providers.base import Kind

from kumo.api import API_VERSION, GROUP, MANAGED, PLURALS, PROVIDER_CONFIG, VERSION

log = logging.getLogger(__name__)
PAGE = 500  # objects per list request: bounded memory however many there are

__all__ = ["Conflict", "KubeClient", "KubeError", "NamespaceTerminating", "NotFound"]


def api_error_message(error: ApiException) -> str:
    """The API server's own one-line message (its Status.message), not the HTTP dump."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return f"Kubernetes API {error.status} {error.reason}: {message or error.body or ''}".rstrip(": ")


def namespace_terminating(error: ApiException) -> bool:
    """403 with cause NamespaceTerminating: the NamespaceLifecycle admission plugin's answer to a
    create in a namespace being deleted ("unable to create new content in namespace X because it
    is being terminated"). It is final for that namespace: retrying cannot succeed."""
    if error.status != 403:
        return False
    try:
        causes = (json.loads(error.body or "{}").get("details") or {}).get("causes") or []
    except (TypeError, ValueError):
        return False
    return any(cause.get("reason") == "NamespaceTerminating" for cause in causes)


def translated(error: ApiException, *, guarded_patch: bool = False) -> KubeError:
    """The core's error for an API refusal. `guarded_patch`: the request was a JSON patch whose
    `test` operation guards against concurrent changes; the API server answers a failed `test`
    with 422, which means the same as a 409."""
    message = api_error_message(error)
    if namespace_terminating(error):
        return NamespaceTerminating(message)
    if error.status == 404:
        return NotFound(message)
    if error.status == 409 or (guarded_patch and error.status == 422):
        return Conflict(message)
    return KubeError(message)


async def _call(call: Callable[..., Any], *args: Any, guarded_patch: bool = False, **options: Any) -> Any:
    """Run one blocking client call in a worker thread, with its refusal translated."""
    try:
        return await asyncio.to_thread(call, *args, **options)
    except ApiException as error:
        raise translated(error, guarded_patch=guarded_patch) from None


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
    """The core's `Kube` over the official client, plus the listings the runtime needs."""

    def __init__(self, api_client: client.ApiClient, component: str = "kumo") -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
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
        await _call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            key.namespace,
            MANAGED[key.kind].plural,
            key.name,
            body,
            _content_type="application/merge-patch+json",
        )

    async def add_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        patch: list[dict[str, Any]]
        if current:
            patch = [
                {"op": "test", "path": "/metadata/finalizers", "value": current},
                {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
            ]
        else:
            patch = [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]
        await self._json_patch(key, patch)

    async def remove_finalizer(self, key: ObjectKey, current: list[str], finalizer: str) -> None:
        index = current.index(finalizer)
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        with contextlib.suppress(NotFound):  # already gone: nothing left to hold
            await self._json_patch(key, patch)

    async def _json_patch(self, key: ObjectKey, patch: list[dict[str, Any]]) -> None:
        await _call(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            key.namespace,
            MANAGED[key.kind].plural,
            key.name,
            patch,
            guarded_patch=True,
            _content_type="application/json-patch+json",
        )

    async def get_object(self, key: ObjectKey) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await _call(
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                key.namespace,
                MANAGED[key.kind].plural,
                key.name,
            )
        except NotFound:
            return None
        return found

    async def list_objects(self, kind: Kind, namespace: str | None) -> AsyncIterator[dict[str, Any]]:
        """Every object of a kind, in one namespace or all (None), a page at a time."""
        plural = MANAGED[kind].plural
        token = None
        while True:
            if namespace is None:
                page = await _call(
                    self.custom.list_cluster_custom_object, GROUP, VERSION, plural, limit=PAGE, _continue=token
                )
            else:
                page = await _call(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    limit=PAGE,
                    _continue=token,
                )
            for item in page.get("items") or []:
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    async def list_secret_metadata(self, namespace: str | None, label_selector: str) -> AsyncIterator[dict[str, Any]]:
        """The metadata of matching Secrets, a page at a time; their data is never decoded."""
        token = None
        while True:
            options: dict[str, Any] = {"label_selector": label_selector, "limit": PAGE, "_continue": token}
            if namespace is None:
                response = await _call(self.core.list_secret_for_all_namespaces, _preload_content=False, **options)
            else:
                response = await _call(self.core.list_namespaced_secret, namespace, _preload_content=False, **options)
            page = json.loads(response.data)
            for item in page.get("items") or []:
                yield item["metadata"]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    # ------------------------------------------------------------------ provider configs

    async def get_provider_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        plural = PLURALS[kind]
        try:
            if kind == "ClusterProviderConfig":
                found: dict[str, Any] = await _call(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
            else:
                found = await _call(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)
        except NotFound:
            raise NotFound(f"{kind} {name!r} not found") from None
        return found

    async def set_provider_config_finalizers(
        self, namespace: str, name: str, current: list[str], wanted: list[str]
    ) -> None:
        """A namespaced ProviderConfig's finalizers (the in-use protection); gone is fine."""
        with contextlib.suppress(NotFound):
            await _call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PROVIDER_CONFIG.plural,
                name,
                finalizers_patch(current, wanted),
                guarded_patch=True,
                _content_type="application/json-patch+json",
            )

    # ------------------------------------------------------------------ secrets

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as the API returns it (read raw: no client model is built for it)."""
        try:
            response = await _call(self.core.read_namespaced_secret, name, namespace, _preload_content=False)
        except NotFound:
            return None
        secret: dict[str, Any] = json.loads(response.data)
        return secret

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> str:
        """Create a Secret; returns its resourceVersion, so a later replace in the same pass is
        guarded by the version this write made, not a stale one."""
        created = await _call(self.core.create_namespaced_secret, namespace, secret)
        return str(created.metadata.resource_version)

    async def set_secret_finalizers(self, namespace: str, name: str, current: list[str], wanted: list[str]) -> None:
        """A credentials Secret's finalizers (the in-use protection); gone is fine."""
        with contextlib.suppress(NotFound):
            await _call(
                self.core.patch_namespaced_secret,
                name,
                namespace,
                finalizers_patch(current, wanted),
                guarded_patch=True,
                _content_type="application/json-patch+json",
            )

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> str:
        """Replace a Secret (`Conflict` if it carries a resourceVersion that is no longer
        current); returns the new resourceVersion."""
        replaced = await _call(self.core.replace_namespaced_secret, name, namespace, secret)
        return str(replaced.metadata.resource_version)

    async def delete_secret(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await _call(self.core.delete_namespaced_secret, name, namespace)

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
            await _call(self.core.create_namespaced_event, key.namespace, event)
        except NamespaceTerminating:  # expected while a namespace's objects are finalized
            log.info("event %s on %s not posted: namespace %s is being terminated", reason, key, key.namespace)
        except KubeError as error:
            log.warning("could not post event %s on %s: %s", reason, key, error)

    async def namespace_uid(self, name: str) -> str:
        namespace = await _call(self.core.read_namespace, name)
        return str(namespace.metadata.uid)
