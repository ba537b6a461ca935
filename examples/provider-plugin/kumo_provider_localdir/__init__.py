"""An example kumo provider plugin: Buckets as directories.

Each bucket is the directory `<root>/<external name>`; a `.kumo.json` file inside records the
managed settings and the owner, the way a cloud keeps tags. The whole plugin is this module and
one entry point in pyproject.toml. Read it next to `kumo.providers.base`, the contract, and
`kumo.providers.plumbing`, the instrumented call every provider routes its cloud calls through.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kumo.providers.base import (
    BucketSpec,
    CallHooks,
    Creation,
    Deletion,
    FieldDrift,
    Kind,
    ManagedResource,
    Observation,
    Ownership,
    ProviderSettings,
    Terminal,
    Update,
    diff_settings,
)
from kumo.providers.plumbing import InstrumentedCaller, SdkErrors

PROVIDER_NAME = "localdir"
SERVICE = "fs"  # the `service` label of this plugin's calls in kumo's metrics
METADATA = ".kumo.json"


def _translate(error: Exception, operation: str) -> Terminal:
    """A filesystem error is nothing a retry soon would fix: a permission, a full disk."""
    assert isinstance(error, OSError)
    return Terminal(f"{operation}: {error.strerror or error}")


# OSError is the filesystem's answer; any other exception is a bug and propagates as it is.
FILESYSTEM_ERRORS = SdkErrors(answers=(OSError,), translate=_translate)


class LocalDirProvider:
    name = PROVIDER_NAME
    kinds = frozenset({Kind.BUCKET})

    def client(self, kind: Kind, settings: ProviderSettings, hooks: CallHooks | None = None) -> LocalDirBuckets:
        if kind is not Kind.BUCKET:
            raise Terminal(f"localdir manages Buckets only, not {kind}")
        return LocalDirBuckets(hooks or CallHooks())

    def validate(self, resource: ManagedResource) -> list[str]:
        root = resource.bucket.provider_options.get("root", "")
        if not root or not Path(str(root)).is_absolute():
            return ["spec.providerOptions.root: an absolute directory is required (or set it in the ProviderConfig)"]
        unknown = sorted(set(resource.bucket.provider_options) - {"root"})
        return [f"spec.providerOptions.{key}: unknown option for localdir; known: root" for key in unknown]


class LocalDirBuckets:
    """The ExternalClient for Buckets. Every filesystem call goes through `fs`: paced by the
    controller's hooks, run in a worker thread, counted in its metrics."""

    def __init__(self, hooks: CallHooks) -> None:
        self.fs = InstrumentedCaller(PROVIDER_NAME, SERVICE, FILESYSTEM_ERRORS, hooks)

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        spec: BucketSpec = resource.bucket
        return {"versioning": spec.versioning, "labels": {**spec.labels, **_owner_labels(resource.owner)}}

    async def observe(self, resource: ManagedResource) -> Observation | None:
        found = await self.fs.call("read", lambda: _read(_path(resource)))
        return None if found is None else self._observation(resource, found)

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        if not resources:
            return {}
        root = _root(resources[0])
        listed = await self.fs.call("list", lambda: _read_all(root))  # one call for the whole root
        return {
            r.external_name: self._observation(r, listed[r.external_name])
            for r in resources
            if r.external_name in listed
        }

    async def create(self, resource: ManagedResource, password: str | None) -> Creation:
        settings = self.desired(resource)
        await self.fs.call("create", lambda: _write(_path(resource), settings))
        return Creation(resource.external_name, "available")

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        settings = self.desired(resource)
        await self.fs.call("update", lambda: _write(_path(resource), settings))
        return Update(changed=tuple(d.field for d in drift))

    async def delete(self, resource: ManagedResource) -> Deletion:
        path = _path(resource)
        if await self.fs.call("delete", lambda: _delete(path, resource.bucket.force_destroy)):
            return Deletion(gone=True)
        raise Terminal(
            f"bucket directory {path} still holds files; empty it or set spec.forceDestroy: true", code="BucketNotEmpty"
        )

    def _observation(self, resource: ManagedResource, settings: dict[str, Any]) -> Observation:
        path = _path(resource)
        return Observation(
            external_name=resource.external_name,
            state="available",
            ready=True,
            owner=_owner_from(settings.get("labels", {})),
            settings=settings,
            drift=diff_settings(self.desired(resource), settings),
            connection={
                "bucket": resource.external_name,
                "region": "local",
                "endpoint": f"file://{path.parent}",
                "url": f"file://{path}",
            },
            at_provider={"provider": "localdir", "region": "local", "path": str(path)},
        )


def _root(resource: ManagedResource) -> Path:
    return Path(str(resource.bucket.provider_options["root"]))


def _path(resource: ManagedResource) -> Path:
    return _root(resource) / resource.external_name


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((path / METADATA).read_text()))
    except FileNotFoundError:
        return None


def _read_all(root: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for entry in root.iterdir() if root.is_dir() else []:
        settings = _read(entry)
        if settings is not None:
            found[entry.name] = settings
    return found


def _write(path: Path, settings: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)  # a retried create finds its own directory
    (path / METADATA).write_text(json.dumps(settings, sort_keys=True))


def _delete(path: Path, force: bool) -> bool:
    """True when the directory is gone; False when it holds files and force is off."""
    if not path.exists():
        return True
    if not force and any(entry.name != METADATA for entry in path.iterdir()):
        return False
    shutil.rmtree(path)
    return True


def _owner_labels(owner: Ownership) -> dict[str, str]:
    return {
        "kumo-owner-uid": owner.uid,
        "kumo-owner-namespace": owner.namespace,
        "kumo-owner-name": owner.name,
        "kumo-cluster-id": owner.cluster_id,
    }


def _owner_from(labels: dict[str, str]) -> Ownership | None:
    if "kumo-owner-uid" not in labels:
        return None
    return Ownership(
        labels["kumo-owner-uid"],
        labels.get("kumo-owner-namespace", ""),
        labels.get("kumo-owner-name", ""),
        labels.get("kumo-cluster-id", ""),
    )
