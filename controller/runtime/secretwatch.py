"""A watch of its own for each credentials Secret a provider config names.

kopf's one Secret watch is label-selected on the API server (controller/runtime/operator.py): it
asks only for kumo's connection Secrets, so the controller never receives, decodes or remembers
the cluster's other Secrets (Helm releases, ServiceAccount tokens, TLS certificates, other apps'
credentials). The credentials Secrets ProviderConfigs and ClusterProviderConfigs name are the
user's own and carry no kumo label; there are a handful of them, so each gets a watch of its own,
through kumo's client (controller/runtime/kubehttp.py), selected by its name:
`GET /api/v1/namespaces/<ns>/secrets?fieldSelector=metadata.name=<name>`. Its events go to
`ProviderConfigs.on_secret_event` exactly as kopf's did: a rotation requeues the config's users.

The loop is the one client-go's reflector runs, as the API documents it
(https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
list to learn the state and a resourceVersion; watch from that version with bookmarks
(https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks) and a server-side
`timeoutSeconds`; when the server ends the stream, watch again from the last version seen; when
that version is too old (410 Gone, as an HTTP status or an ERROR event:
https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses), list again;
on any other failure, back off and try again, for as long as a config names the Secret.

The watches also serve Secrets in namespaces kopf's watches do not (a ClusterProviderConfig's, in
the controller's namespace, when --namespace leaves it out): the ClusterRole (deploy/base/rbac.yaml)
grants get/list/watch on Secrets in every namespace it is bound in, kumo-system included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kumo.controller.core.kubeapi import KubeError
from kumo.controller.runtime.kube import core_path
from kumo.controller.runtime.kubehttp import Refusal

log = logging.getLogger(__name__)

SecretRef = tuple[str, str]  # (namespace, name)
Deliver = Callable[[str | None, Mapping[str, Any]], None]  # (event type, Secret) as kopf gave them

SERVER_TIMEOUT = 300  # seconds the API server keeps one watch open (kopf's own watches: the same)
# A stream the server has not ended this long after its timeoutSeconds is a dead connection.
STREAM_GRACE = 60.0
MAX_BACKOFF = 30.0  # seconds: client-go's reflector backs off from 800 ms up to 30 s


class Expired(KubeError):
    """The resourceVersion a watch asked to start from is no longer available: list again."""


class WatchTransport(Protocol):
    """What a watch needs from the API client (`KubeHTTP` in the controller, a fake in tests)."""

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str | int | None] | None = None
    ) -> dict[str, Any]: ...

    def stream(
        self, path: str, *, params: Mapping[str, str | int | None], timeout: float
    ) -> AsyncGenerator[dict[str, Any], None]: ...


def backoff(failures: int) -> float:
    """Seconds before trying again after `failures` failures in a row: doubling from 0.8 s up to
    MAX_BACKOFF, with jitter so the watches of many replicas do not retry in step."""
    delay = min(MAX_BACKOFF, 0.8 * 2 ** (failures - 1))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography


@dataclass
class SecretWatch:
    """Follows one Secret, by name, until cancelled; every change goes to `deliver`.

    Events delivered: the first listing's Secret with type None (as kopf's initial listing: what
    there is, no news), then ADDED, MODIFIED and DELETED as the API server sends them. A list
    after a 410 tells what changed during the gap: ADDED, MODIFIED or DELETED by what it finds.
    """

    transport: WatchTransport
    where: SecretRef
    deliver: Deliver
    server_timeout: int = SERVER_TIMEOUT
    backoff: Callable[[int], float] = backoff
    _version: str | None = None  # the resourceVersion to watch from; None: list first
    _exists: bool | None = None  # as last seen; None before the first listing
    _failures: int = 0  # in a row, reset by every event the server sends

    async def run(self) -> None:
        while True:
            try:
                if self._version is None:
                    await self._list()
                await self._watch()
            except Exception as error:  # a refusal, no answer, a garbled stream: try again
                self._failures += 1
                if isinstance(error, KubeError) and _expired(error):
                    self._version = None
                    if self._failures == 1:
                        continue  # the usual case (compacted while idle): list again at once
                delay = self.backoff(self._failures)
                log.warning(
                    "watch of credentials Secret %s/%s: %s; again in %.1fs",
                    *self.where,
                    error,
                    delay,
                    exc_info=not isinstance(error, KubeError),  # anything else may be a bug
                )
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        namespace, name = self.where
        listed = await self.transport.request("GET", core_path("secrets", namespace), params=self._selector())
        version = (listed.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise KubeError(f"the list of Secret {namespace}/{name} carries no resourceVersion")
        found = next(iter(listed.get("items") or []), None)
        event_type = self._news(found is not None)
        self._exists, self._version = found is not None, version
        if event_type != "":
            self._deliver(event_type, found or _placeholder(self.where))

    def _news(self, exists: bool) -> str | None:
        """What a listing tells about the Secret: None (first look), ADDED, MODIFIED (a change the
        digest may show), DELETED, or "" (absent, as before: nothing to say)."""
        if self._exists is None:
            return None if exists else ""
        if exists:
            return "MODIFIED" if self._exists else "ADDED"
        return "DELETED" if self._exists else ""

    async def _watch(self) -> None:
        """One watch request, from `_version` until the server ends it."""
        params = {
            **self._selector(),
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": self.server_timeout,
        }
        namespace, _ = self.where
        stream = self.transport.stream(
            core_path("secrets", namespace), params=params, timeout=self.server_timeout + STREAM_GRACE
        )
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                event_type, body = event.get("type"), event.get("object") or {}
                if event_type == "ERROR":
                    raise _watch_error(body)
                self._failures = 0  # the stream works
                self._version = (body.get("metadata") or {}).get("resourceVersion") or self._version
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    self._exists = event_type != "DELETED"
                    self._deliver(event_type, body)

    def _selector(self) -> dict[str, str | int | None]:
        return {"fieldSelector": f"metadata.name={self.where[1]}"}

    def _deliver(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        log.debug("credentials Secret %s/%s: %s", *self.where, event_type or "listed")
        try:
            self.deliver(event_type, body)
        except Exception:  # a bug in the consumer must not end the watch
            log.exception("handling an event of credentials Secret %s/%s failed", *self.where)


def _placeholder(where: SecretRef) -> dict[str, Any]:
    """A deleted Secret's stand-in when only a listing noticed it went (nothing of it is left)."""
    return {"metadata": {"namespace": where[0], "name": where[1]}}


def _expired(error: KubeError) -> bool:
    cause = error.__cause__
    return isinstance(error, Expired) or (isinstance(cause, Refusal) and cause.status == 410)


def _watch_error(status: Mapping[str, Any]) -> KubeError:
    """The error of an ERROR event, whose object is a metav1.Status."""
    code, message = status.get("code"), status.get("message") or status.get("reason") or "no message"
    if code == 410:
        return Expired(f"watch expired: {message}")
    return KubeError(f"watch error {code}: {message}")


@dataclass
class SecretWatches:
    """The running watches, one per Secret some config names (`follow` / `unfollow`)."""

    transport: WatchTransport
    deliver: Deliver
    server_timeout: int = SERVER_TIMEOUT
    backoff: Callable[[int], float] = backoff
    _tasks: dict[SecretRef, asyncio.Task[None]] = field(default_factory=dict)
    _stopped: bool = False

    @property
    def followed(self) -> set[SecretRef]:
        return set(self._tasks)

    def follow(self, where: SecretRef) -> None:
        """Start watching `where`, unless it is watched already (called on the event loop)."""
        if self._stopped or where in self._tasks:
            return
        watch = SecretWatch(self.transport, where, self.deliver, self.server_timeout, self.backoff)
        self._tasks[where] = asyncio.create_task(watch.run(), name=f"kumo-watch-secret-{where[0]}/{where[1]}")
        self._tasks[where].add_done_callback(_report_end)

    def unfollow(self, where: SecretRef) -> None:
        """Stop watching `where` (no config names it any more)."""
        task = self._tasks.pop(where, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """End every watch; later `follow` calls start none (the controller is stopping)."""
        self._stopped = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _report_end(task: asyncio.Task[None]) -> None:
    """A watch only ends when cancelled; anything else is a bug worth a traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended", task.get_name(), exc_info=task.exception())
