"""The subset of the Kubernetes API the reconciler uses, as one narrow async interface.

Everything the controller writes goes through here, so the writes are easy to count and easy to
fake in unit tests. The official client is blocking; each call runs in a worker thread so the
event loop never waits on the network. Finalizers are changed with JSON patches that `test` the
list first, so a concurrent change by someone else fails with 409 instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.controller.core.conditions import now_rfc3339
from kumo.controller.core.resources import ObjectKey
from kumo.providers.base import Kind

from kumo.api import API_VERSION, GROUP, MANAGED, PLURALS, PROVIDER_CONFIG, VERSION

log = logging.getLogger(__name__)
PAGE = 500  # objects per list request: bounded memory however many there are


class NotFound(Exception):
    """The object asked for does not exist."""


def expected_conflict(error: ApiException) -> bool:
    """404 (the object or its Secret was deleted while a reconcile ran) or 409 (someone wrote
    it meanwhile): ordinary in a shared cluster; a retry reads the new state."""
    return error.status in (404, 409)


def api_error_message(error: ApiException) -> str:
    """The API server's own one-line message (its Status.message), not the HTTP dump."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return f"Kubernetes API {error.status} {error.reason}: {message or error.body or ''}".rstrip(": ")


class NamespaceTerminating(Exception):
    """The namespace is being deleted: the API server refuses to create anything in it."""


def _not_found(error: ApiException) -> bool:
    return error.status == 404


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


def finalizers_patch(current: list[str], wanted: list[str]) -> list[dict[str, Any]]:
    """A JSON patch from `current` to `wanted` finalizers that fails (409/422) if someone else
    changed the list meanwhile, instead of overwriting their change."""
    if not current:
        return [{"op": "add", "path": "/metadata/finalizers", "value": wanted}]
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": wanted},
    ]


class KubeClient:
    def __init__(self, api_client: client.ApiClient, component: str = "kumo") -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.component = component

    # ------------------------------------------------------------------ managed objects

    async def patch_status(
        self, key: ObjectKey, status: Mapping[str, Any], resource_version: str | None = None
    ) -> None:
        """Merge-patch status; with `resource_version` the write is refused (409) if the object
        changed since that version was read."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        await asyncio.to_thread(
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
        try:
            await self._json_patch(key, patch)
        except ApiException as error:
            if not _not_found(error):
                raise

    async def _json_patch(self, key: ObjectKey, patch: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            key.namespace,
            MANAGED[key.kind].plural,
            key.name,
            patch,
            _content_type="application/json-patch+json",
        )

    async def get_object(self, key: ObjectKey) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                key.namespace,
                MANAGED[key.kind].plural,
                key.name,
            )
        except ApiException as error:
            if _not_found(error):
                return None
            raise

    async def list_objects(self, kind: Kind, namespace: str | None) -> AsyncIterator[dict[str, Any]]:
        """Every object of a kind, in one namespace or all (None), a page at a time."""
        plural = MANAGED[kind].plural
        token = None
        while True:
            if namespace is None:
                page = await asyncio.to_thread(
                    self.custom.list_cluster_custom_object, GROUP, VERSION, plural, limit=PAGE, _continue=token
                )
            else:
                page = await asyncio.to_thread(
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
                response = await asyncio.to_thread(
                    self.core.list_secret_for_all_namespaces, _preload_content=False, **options
                )
            else:
                response = await asyncio.to_thread(
                    self.core.list_namespaced_secret, namespace, _preload_content=False, **options
                )
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
                return await asyncio.to_thread(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
            return await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if _not_found(error):
                raise NotFound(f"{kind} {name!r} not found") from None
            raise

    async def set_provider_config_finalizers(
        self, namespace: str, name: str, current: list[str], wanted: list[str]
    ) -> None:
        """A namespaced ProviderConfig's finalizers (the in-use protection); gone is fine."""
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PROVIDER_CONFIG.plural,
                name,
                finalizers_patch(current, wanted),
                _content_type="application/json-patch+json",
            )
        except ApiException as error:
            if not _not_found(error):
                raise

    # ------------------------------------------------------------------ secrets

    async def read_secret(self, namespace: str, name: str) -> client.V1Secret | None:
        try:
            return await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if _not_found(error):
                return None
            raise

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> str:
        """Create a Secret; returns its resourceVersion, so a later replace in the same pass is
        guarded by the version this write made, not a stale one."""
        try:
            created = await asyncio.to_thread(self.core.create_namespaced_secret, namespace, secret)
        except ApiException as error:
            if namespace_terminating(error):
                raise NamespaceTerminating(f"namespace {namespace} is being terminated") from None
            raise
        return str(created.metadata.resource_version)

    async def set_secret_finalizers(self, namespace: str, name: str, current: list[str], wanted: list[str]) -> None:
        """A credentials Secret's finalizers (the in-use protection); gone is fine."""
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_secret,
                name,
                namespace,
                finalizers_patch(current, wanted),
                _content_type="application/json-patch+json",
            )
        except ApiException as error:
            if not _not_found(error):
                raise

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> str:
        """Replace a Secret (refused with 409 if it carries a resourceVersion that is no longer
        current); returns the new resourceVersion."""
        replaced = await asyncio.to_thread(self.core.replace_namespaced_secret, name, namespace, secret)
        return str(replaced.metadata.resource_version)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_secret, name, namespace)
        except ApiException as error:
            if not _not_found(error):
                raise

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
            await asyncio.to_thread(self.core.create_namespaced_event, key.namespace, event)
        except ApiException as error:
            if namespace_terminating(error):  # expected while a namespace's objects are finalized
                log.info("event %s on %s not posted: namespace %s is being terminated", reason, key, key.namespace)
                return
            log.warning("could not post event %s on %s: %s", reason, key, error.reason)

    async def namespace_uid(self, name: str) -> str:
        namespace = await asyncio.to_thread(self.core.read_namespace, name)
        return str(namespace.metadata.uid)
