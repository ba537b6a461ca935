"""Following the bench's objects through watches, the way a dashboard would: when each became
Ready, when its InSync condition changed, which connection Secrets exist.

One list-then-watch thread per resource (Databases, Buckets, kumo's Secrets) in the bench's
namespace. Times are `time.monotonic()` at the moment the event arrived, so latency figures
carry no polling error; at 10,000 objects a watch is also far cheaper than listing every second.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kumo.providers.base import Kind

from kumo.api import GROUP, MANAGED, VERSION, connection_secret_name

# The managed kinds this tracker watches, by Kubernetes kind.
PLURALS = {str(kind): resource.plural for kind, resource in MANAGED.items()}
MANAGED_SECRETS = "app.kubernetes.io/managed-by=kumo"
WATCH_SECONDS = 120  # each watch request is renewed after this long
USABLE_STATES = frozenset({"available", "RUNNABLE"})  # RDS, S3 and GCS; Cloud SQL


@dataclass
class ObjectState:
    ready: bool = False
    ready_at: float | None = None  # first time Ready=True was seen
    in_sync: list[tuple[float, str]] = field(default_factory=list)  # (time, status) on each change
    secret: str = ""  # the connection Secret's name
    synced: str = ""  # the Synced condition as "status reason: message", for stuck objects
    cloud_state: str = ""  # status.atProvider.state
    changed_at: float = 0.0  # when the last event for it arrived


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for entry in (body.get("status") or {}).get("conditions") or []:
        if entry.get("type") == type_:
            return dict(entry)
    return {}


class ObjectTracker:
    def __init__(self, api_factory: Callable[[], client.ApiClient], namespace: str) -> None:
        self._api_factory = api_factory
        self.namespace = namespace
        self.objects: dict[tuple[str, str], ObjectState] = {}
        self.secrets: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._synced: set[str] = set()

    def start(self) -> ObjectTracker:
        for kind in PLURALS:
            self._spawn(f"track-{kind}", functools.partial(self._follow_objects, kind))
        self._spawn("track-secrets", self._follow_secrets)
        deadline = time.monotonic() + 30
        while len(self._synced) < len(PLURALS) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ questions

    def ready_with_secret(self) -> dict[str, int]:
        """Objects Ready with their Secret in place, by kind."""
        counts = dict.fromkeys(PLURALS, 0)
        with self._lock:
            for (kind, _), state in self.objects.items():
                if state.ready and state.secret in self.secrets:
                    counts[kind] += 1
        return counts

    def stuck(self, quiet_for: float) -> list[str]:
        """Objects that kumo has finished with but that are not Ready: the cloud reports them
        usable, the last reconcile succeeded (Synced=True), and nothing changed for a while.
        (A sweep that judges a just-reconciled object from a stale cache can overwrite Ready=True
        this way; docs/performance.md has the evidence.)"""
        now = time.monotonic()
        with self._lock:
            return sorted(
                f"{kind}/{name}"
                for (kind, name), state in self.objects.items()
                if not state.ready
                and state.cloud_state in USABLE_STATES
                and state.synced.startswith("True")
                and now - state.changed_at > quiet_for
            )

    def not_ready(self, limit: int = 10) -> list[str]:
        """Some objects that are not Ready with their Secret, with their Synced condition."""
        with self._lock:
            stuck = [
                f"{kind}/{name}: Synced {state.synced}"
                for (kind, name), state in sorted(self.objects.items())
                if not (state.ready and state.secret in self.secrets)
            ]
        return stuck[:limit]

    def total(self) -> int:
        with self._lock:
            return len(self.objects)

    def last_ready_at(self) -> float:
        with self._lock:
            return max((s.ready_at or 0.0) for s in self.objects.values()) if self.objects else 0.0

    def out_of_sync_since(self, kind: str, name: str, after: float) -> float | None:
        """When the object's InSync first turned False after `after`, if it did."""
        with self._lock:
            state = self.objects.get((kind, name))
            changes = list(state.in_sync) if state else []
        return next((at for at, status in changes if at >= after and status == "False"), None)

    def in_sync(self, kind: str, name: str) -> bool:
        with self._lock:
            state = self.objects.get((kind, name))
            return bool(state and state.in_sync and state.in_sync[-1][1] == "True")

    # ------------------------------------------------------------------ watching

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _follow_objects(self, kind: str) -> None:
        objects = client.CustomObjectsApi(self._api_factory())
        plural = PLURALS[kind]

        def listing() -> tuple[list[dict[str, Any]], str]:
            found = objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
            return found["items"], found["metadata"]["resourceVersion"]

        def stream(version: str) -> Any:
            return watch.Watch().stream(
                objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
            )

        self._follow(kind, listing, stream, lambda body, gone: self._object_event(kind, body, gone))

    def _follow_secrets(self) -> None:
        core = client.CoreV1Api(self._api_factory())

        def listing() -> tuple[list[Any], str]:
            found = core.list_namespaced_secret(self.namespace, label_selector=MANAGED_SECRETS)
            return list(found.items), str(found.metadata.resource_version)

        def stream(version: str) -> Any:
            return watch.Watch().stream(
                core.list_namespaced_secret,
                self.namespace,
                label_selector=MANAGED_SECRETS,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
            )

        self._follow("secrets", listing, stream, self._secret_event)

    def _follow(
        self,
        name: str,
        listing: Callable[[], tuple[list[Any], str]],
        stream: Callable[[str], Any],
        handle: Callable[[Any, bool], None],
    ) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    items, version = listing()
                    for item in items:
                        handle(item, False)
                    self._synced.add(name)
                for event in stream(version):
                    if self._stop.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "ERROR":
                        version = ""  # expired: list again
                        break
                    handle(obj, event["type"] == "DELETED")
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    version = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
            except ApiException as error:
                version = "" if error.status == 410 else version
                time.sleep(0.5)
            except Exception:  # a dropped connection: watch again from where we were
                time.sleep(0.5)

    def _object_event(self, kind: str, body: dict[str, Any], gone: bool) -> None:
        now = time.monotonic()
        meta = body["metadata"]
        key = (kind, meta["name"])
        with self._lock:
            if gone:
                self.objects.pop(key, None)
                return
            state = self.objects.setdefault(key, ObjectState())
            state.secret = connection_secret_name(Kind(kind), body)
            state.ready = _condition(body, "Ready").get("status") == "True"
            if state.ready and state.ready_at is None:
                state.ready_at = now
            state.changed_at = now
            state.cloud_state = str(((body.get("status") or {}).get("atProvider") or {}).get("state", ""))
            synced = _condition(body, "Synced")
            state.synced = f"{synced.get('status')} {synced.get('reason')}: {synced.get('message', '')}"
            in_sync = _condition(body, "InSync").get("status", "")
            if in_sync and (not state.in_sync or state.in_sync[-1][1] != in_sync):
                state.in_sync.append((now, in_sync))

    def _secret_event(self, secret: Any, gone: bool) -> None:
        with self._lock:
            if gone:
                self.secrets.discard(secret.metadata.name)
            else:
                self.secrets.add(secret.metadata.name)
