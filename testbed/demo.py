"""`make demo`: the whole kumo story on the local test bed, with no cloud account.

1. Start (or reuse) the test bed: kube-apiserver + etcd + kube-controller-manager, moto, the GCS
   and Cloud SQL emulators, and the PostgreSQL server behind the emulated instances.
2. Install the CRDs, start `kumo run`, apply each cloud's example ProviderConfig (pointed at its
   emulator), Database and Bucket, unchanged apart from the namespace.
3. Show progress until every object is Ready, then the connection Secrets (passwords masked).
4. Check, like an app would, that the Secrets work: a real driver connects with each database
   Secret's `uri` (the instance the cloud reports), writes a row and reads it back, and the bucket
   details reach a bucket an object can be written to.
5. Report time to Ready per object and the controller's Kubernetes writes per object (from the
   API server's audit log), then delete everything and show the cloud resources go.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kumo.providers.base import Kind

from kumo.api import GROUP, PLURALS, PROVIDER_CONFIG, VERSION, connection_secret_name

from . import engines
from .bed import TestBed, install_crds
from .controllerproc import ControllerProcess
from .devbed import default_env_file
from .probes import CLOUDS, CloudProbe, probe_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONTROLLER_AGENT = "kumo-controller"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


@dataclass
class Tracked:
    cloud: str
    namespace: str
    kind: str
    name: str
    ready_after: float | None = None
    last_state: str = ""

    @property
    def label(self) -> str:
        return f"{self.cloud}: {self.kind}/{self.name}"

    @property
    def secret_name(self) -> str:
        """The default connection Secret of a new object (the controller's own rule)."""
        return connection_secret_name(Kind(self.kind), {"metadata": {"name": self.name}})


def main() -> int:
    started = time.monotonic()
    bed, owned = _test_bed()
    controller: ControllerProcess | None = None
    try:
        api = _api(bed.env["kubeconfig"])
        say("installing CRDs: " + ", ".join(install_crds(api)))
        _ensure_namespace(api, "kumo-system")
        controller = ControllerProcess(bed.env["kubeconfig"], Path(bed.env["workdir"]) / "demo-controller.log")
        controller.start()
        say(f"controller running (log: {controller.log_path})")
        tracked = _apply_examples(api, bed.env)
        _wait_ready(api, tracked, controller)
        _show_secrets(api, tracked)
        _app_checks(api, tracked, bed.env)
        _report(tracked, bed.env, time.monotonic() - started)
        _delete_all(api, tracked, bed.env)
        say("demo complete")
        return 0
    finally:
        if controller is not None:
            controller.stop()
        if owned:
            say("stopping the test bed")
            bed.stop()


def _test_bed() -> tuple[TestBed, bool]:
    env_file = Path(os.environ.get("KUMO_TESTBED_ENV") or default_env_file())  # `kumo dev up`'s
    if env_file.exists():
        bed = TestBed.from_env_file(env_file)
        if bed.status() and all(alive for _, _, alive in bed.status()):
            say(f"reusing the running test bed from {env_file}")
            return bed, False
    say("starting the test bed (control plane + emulated AWS and GCP)")
    bed = TestBed.start(progress=True, audit_log=True)
    say(f"test bed up in {bed.env['startup_seconds']}s")
    return bed, True


def _api(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


def _apply_examples(api: client.ApiClient, env: dict[str, Any]) -> list[Tracked]:
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    tracked = []
    for cloud in CLOUDS:
        namespace = f"demo-{cloud}-{int(time.time()) % 100000}"
        _ensure_namespace(api, namespace)
        probe = probe_for(cloud, env)
        secret, provider_config = probe.provider_config(name=cloud)
        core.create_namespaced_secret(namespace, secret)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PROVIDER_CONFIG.plural, provider_config)
        for filename in ("database.yaml", "bucket.yaml"):
            manifest = yaml.safe_load((EXAMPLES / cloud / filename).read_text())
            plural = PLURALS[manifest["kind"]]
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, manifest)
            tracked.append(Tracked(cloud, namespace, manifest["kind"], manifest["metadata"]["name"]))
            say(f"applied examples/{cloud}/{filename} -> {manifest['kind']}/{manifest['metadata']['name']}")
    return tracked


def _get(api: client.ApiClient, item: Tracked) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, item.namespace, PLURALS[item.kind], item.name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def _wait_ready(api: client.ApiClient, tracked: list[Tracked], controller: ControllerProcess) -> None:
    say("waiting for every object to become Ready")
    applied = time.monotonic()
    deadline = applied + 180
    while any(t.ready_after is None for t in tracked):
        if time.monotonic() > deadline:
            raise SystemExit(f"objects not Ready after 180s; controller log: {controller.log_path}")
        for item in tracked:
            obj = _get(api, item)
            conditions = _conditions(obj or {})
            ready, synced = conditions.get("Ready", {}), conditions.get("Synced", {})
            state = f"Ready={ready.get('status', '-')} ({ready.get('reason', '')}) Synced={synced.get('status', '-')}"
            if synced.get("status") == "False":
                state += f": {synced.get('message', '')}"
            if state != item.last_state:
                item.last_state = state
                say(f"  {time.monotonic() - applied:6.1f}s  {item.label:38} {state}")
            if ready.get("status") == "True" and item.ready_after is None:
                item.ready_after = time.monotonic() - applied
        time.sleep(0.25)


def _secret(api: client.ApiClient, item: Tracked) -> dict[str, str]:
    secret = client.CoreV1Api(api).read_namespaced_secret(item.secret_name, item.namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _mask(key: str, value: str) -> str:
    if key == "password":
        return value[:2] + "*" * (len(value) - 2)
    if key == "uri":
        parsed = urlparse(value)
        return value.replace(parsed.password or "", "****") if parsed.password else value
    return value


def _show_secrets(api: client.ApiClient, tracked: list[Tracked]) -> None:
    for item in tracked:
        say(f"Secret {item.namespace}/{item.secret_name} ({item.label}):")
        for key, value in sorted(_secret(api, item).items()):
            print(f"         {key:24} {_mask(key, value)}")


def _app_checks(api: client.ApiClient, tracked: list[Tracked], env: dict[str, Any]) -> None:
    say("checking the Secrets the way an app would use them")
    for item in tracked:
        data, probe, obj = _secret(api, item), probe_for(item.cloud, env), _get(api, item) or {}
        external = obj.get("status", {}).get("atProvider", {}).get("externalName", "")
        if item.kind == "Database":
            _check_database(item, data, probe, external)
        else:
            _check_bucket(item, data, probe)


def _check_database(item: Tracked, data: dict[str, str], probe: CloudProbe, external: str) -> None:
    uri, instance = urlparse(data["uri"]), probe.database(external)
    if instance is None:
        raise SystemExit(f"{item.label}: the cloud has no instance {external}")
    matches = (uri.hostname, str(uri.port)) == (instance["host"], instance["port"]) and uri.password
    if not matches:
        raise SystemExit(f"{item.label}: uri {uri.hostname}:{uri.port} does not match {instance}")
    if data.get("engine") not in engines.BACKED_ENGINES:
        say(f"  --  {item.label}: {data.get('engine')} has no real server in the test bed (docs/testbed.md)")
        return
    try:
        engines.app_round_trip(data["uri"])
    except Exception as error:
        raise SystemExit(f"{item.label}: could not use the database through the Secret's uri: {error}") from error
    say(f"  ok  {item.label}: connected with the Secret's uri as {uri.username}, wrote a row and read it back")


def _check_bucket(item: Tracked, data: dict[str, str], probe: CloudProbe) -> None:
    probe.put_object(data["bucket"], "hello.txt", b"hello from kumo")
    if probe.get_object(data["bucket"], "hello.txt") != b"hello from kumo":
        raise SystemExit(f"{item.label}: could not read back the object written to {data['url']}")
    probe.delete_object(data["bucket"], "hello.txt")
    say(f"  ok  {item.label}: wrote and read {data['url']}/hello.txt via {data['endpoint']}")


def _controller_writes(env: dict[str, Any], namespaces: set[str]) -> int:
    """Write requests the controller made in the demo namespaces, from the audit log."""
    if not env.get("audit_log") or not Path(env["audit_log"]).is_file():
        return -1  # a reused test bed started without --audit-log
    path = Path(env["audit_log"])
    writes = 0
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if (
            entry.get("stage") == "ResponseComplete"
            and entry.get("userAgent", "").startswith(CONTROLLER_AGENT)
            and ref.get("namespace") in namespaces
            and entry.get("verb") in ("create", "update", "patch", "delete")
        ):
            writes += 1
    return writes


def _report(tracked: list[Tracked], env: dict[str, Any], elapsed: float) -> None:
    time.sleep(1.5)  # the audit log is written in batches of up to a second
    writes = _controller_writes(env, {t.namespace for t in tracked})
    say("time to Ready per object (from apply):")
    for item in tracked:
        print(f"         {item.label:38} {item.ready_after:6.2f}s")
    if writes >= 0:
        say(
            f"controller writes to Kubernetes to reach Ready: {writes} for {len(tracked)} objects "
            f"({writes / len(tracked):.1f} per object: finalizer, Secret, status, Created event)"
        )
    say(f"elapsed so far: {elapsed:.1f}s")


def _force_if_refused(api: client.ApiClient, item: Tracked, forced: set[str]) -> None:
    """The versioned example bucket still holds the app check's object versions, so kumo refuses
    to delete it; show that, then allow it the way a user would."""
    synced = _conditions(_get(api, item) or {}).get("Synced", {})
    if item.label in forced or synced.get("status") != "False" or "forceDestroy" not in synced.get("message", ""):
        return
    say(f"  refused {item.label}: {synced['message']}")
    say(f"  setting spec.forceDestroy=true on {item.label}")
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        item.namespace,
        PLURALS[item.kind],
        item.name,
        {"spec": {"forceDestroy": True}},
        _content_type="application/merge-patch+json",
    )
    forced.add(item.label)


def _delete_all(api: client.ApiClient, tracked: list[Tracked], env: dict[str, Any]) -> None:
    say("deleting the objects (deletionPolicy Delete): the cloud resources go too")
    objects = client.CustomObjectsApi(api)
    externals = {}
    for item in tracked:
        obj = _get(api, item) or {}
        externals[item.label] = obj.get("status", {}).get("atProvider", {}).get("externalName", "")
        objects.delete_namespaced_custom_object(GROUP, VERSION, item.namespace, PLURALS[item.kind], item.name)
    deadline = time.monotonic() + 120
    forced: set[str] = set()
    while any(_get(api, t) is not None for t in tracked):
        if time.monotonic() > deadline:
            raise SystemExit("objects not deleted after 120s")
        for item in tracked:
            _force_if_refused(api, item, forced)
        time.sleep(0.5)
    for item in tracked:
        probe = probe_for(item.cloud, env)
        look = probe.database if item.kind == "Database" else probe.bucket
        state = look(externals[item.label])
        gone = state is None or state.get("status") == "deleting"
        say(f"  {'ok ' if gone else 'LEFT'} {item.label}: {externals[item.label]} {'gone' if gone else state}")


if __name__ == "__main__":
    sys.exit(main())
