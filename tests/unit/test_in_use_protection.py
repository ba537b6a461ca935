"""Namespace deletion, as the reconciler and the controller see it: a namespaced ProviderConfig
and its credentials Secret are held (finalizer `kumo.dev/in-use`) while objects use them and let
go when the last one is gone; a create refused because the namespace is terminating is an
expected answer, not an error.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from typing import Any

from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.kubeapi import Conflict
from kumo.controller.core.providerconfig import release
from kumo.controller.core.reconciler import Reconciler
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.kubehttp import Refusal
from kumo.controller.runtime.operator import Controller
from kumo.providers.base import Kind
from kumo.providers.registry import ProviderRegistry

from kumo.api import FINALIZER, IN_USE_FINALIZER

from ..specs import defaulted_spec
from .fakes import FakeCloud, FakeKube, secret_body

NS = "team-a"
REF = {"kind": "ProviderConfig", "name": "aws"}


def _world() -> tuple[FakeKube, Reconciler]:
    journal: list[tuple[str, ...]] = []
    kube = FakeKube(journal)
    kube.provider_configs[("ProviderConfig", NS, "aws")] = {
        "metadata": {"name": "aws", "namespace": NS},
        "spec": {"provider": "fake", "credentials": {"source": "Secret", "secretRef": {"name": "creds"}}},
    }
    kube.secrets[(NS, "creds")] = secret_body(
        {"metadata": {"name": "creds", "namespace": NS}, "data": {"key": base64.b64encode(b"k").decode()}}
    )
    reconciler = Reconciler(
        kube,  # type: ignore[arg-type]
        ProviderRegistry(providers={"fake": FakeCloud(journal)}),  # type: ignore[dict-item]
        cluster_id="c",
        controller_namespace="kumo-system",
    )
    return kube, reconciler


def _bucket(name: str, **metadata: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, **metadata}
    return {"metadata": meta, "spec": defaulted_spec(Kind.BUCKET, {"providerConfigRef": REF}), "status": {}}


def _held(kube: FakeKube) -> tuple[bool, bool]:
    config = kube.provider_configs[("ProviderConfig", NS, "aws")]["metadata"].get("finalizers") or []
    secret = kube.secrets[(NS, "creds")]["metadata"].get("finalizers") or []
    return IN_USE_FINALIZER in config, IN_USE_FINALIZER in secret


def test_a_reconcile_holds_the_provider_config_and_its_secret_once():
    """The first reconcile of an object adds the in-use finalizer to its ProviderConfig and the
    credentials Secret; later passes find it there and write nothing more."""
    kube, reconciler = _world()
    asyncio.run(reconciler.reconcile(ObjectKey(Kind.BUCKET, NS, "a"), _bucket("a")))
    assert _held(kube) == (True, True)
    reconciler.configs.forget(("ProviderConfig", NS, "aws"))
    before = len(kube.writes)
    asyncio.run(reconciler.reconcile(ObjectKey(Kind.BUCKET, NS, "a"), _bucket("a", finalizers=[FINALIZER])))
    assert [w for w in kube.writes[before:] if "finalizers" in w[0]] == []


def test_a_config_already_being_deleted_is_used_but_not_held():
    """The API server refuses new finalizers on an object being deleted: kumo still uses the
    config while it lasts, and holds neither it nor its Secret (a Secret held without its
    config could never be released)."""
    kube, reconciler = _world()
    kube.provider_configs[("ProviderConfig", NS, "aws")]["metadata"]["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    asyncio.run(reconciler.reconcile(ObjectKey(Kind.BUCKET, NS, "a"), _bucket("a")))
    assert _held(kube) == (False, False)
    assert kube.statuses["a"]["conditions"]  # the config was used: the reconcile went ahead


def test_release_lets_go_of_the_secret_then_the_config():
    kube, reconciler = _world()
    asyncio.run(reconciler.reconcile(ObjectKey(Kind.BUCKET, NS, "a"), _bucket("a")))
    asyncio.run(release(kube, NS, "aws"))  # type: ignore[arg-type]
    assert _held(kube) == (False, False)
    order = [w[0] for w in kube.writes if "finalizers" in w[0]][-2:]
    assert order == ["kube:secret-finalizers", "kube:provider-config-finalizers"]


def test_release_reads_again_when_someone_else_changed_the_finalizers():
    """Another writer (a user, a cleanup script) removed the finalizer between kumo's read and its
    patch: the patch's test fails (a Conflict), and kumo reads again and finds nothing left to do."""
    kube, reconciler = _world()
    asyncio.run(reconciler.reconcile(ObjectKey(Kind.BUCKET, NS, "a"), _bucket("a")))
    patch_secret = kube.set_secret_finalizers

    async def someone_else_was_quicker(namespace, name, current, wanted):
        await patch_secret(namespace, name, current, wanted)  # the other writer
        kube.set_secret_finalizers = patch_secret  # type: ignore[method-assign]
        raise Conflict("Kubernetes API 422 Unprocessable Entity: the server rejected our request")

    kube.set_secret_finalizers = someone_else_was_quicker  # type: ignore[method-assign]
    asyncio.run(release(kube, NS, "aws"))  # type: ignore[arg-type]
    assert _held(kube) == (False, False)


class RecordingReconciler:
    default_drift_policy = DriftPolicy.CORRECT

    def __init__(self) -> None:
        self.released: list[tuple[str, str, str]] = []

    def forget(self, key: ObjectKey) -> None:
        pass

    async def release_config(self, config: tuple[str, str, str]) -> None:
        self.released.append(config)


def test_the_config_is_released_when_its_last_user_is_gone_not_before():
    """Two Buckets use the config: deleting the first releases nothing, the second releases it.
    A config being deleted with no user left is released when its own event arrives."""
    reconciler = RecordingReconciler()
    controller = Controller(reconciler)  # type: ignore[arg-type]

    async def scenario() -> None:
        controller._loop = asyncio.get_running_loop()
        for name in ("a", "b"):
            controller.on_object_event(Kind.BUCKET, "ADDED", _bucket(name))
        controller.on_object_event(Kind.BUCKET, "DELETED", _bucket("a"))
        await asyncio.sleep(0.01)
        assert reconciler.released == []
        controller.on_object_event(Kind.BUCKET, "DELETED", _bucket("b"))
        await asyncio.sleep(0.01)
        assert reconciler.released == [("ProviderConfig", NS, "aws")]
        config = {"metadata": {"name": "other", "namespace": NS, "finalizers": [IN_USE_FINALIZER]}}
        controller.on_provider_config_event(config)  # not being deleted: kept
        controller.on_provider_config_event(
            copy.deepcopy(config) | {"metadata": config["metadata"] | {"deletionTimestamp": "x"}}
        )
        await asyncio.sleep(0.01)
        assert reconciler.released[-1] == ("ProviderConfig", NS, "other") and len(reconciler.released) == 2

    asyncio.run(scenario())


def test_a_create_refused_in_a_terminating_namespace_is_no_error():
    """A connection Secret deleted while the namespace terminates cannot be created again (403):
    the pass ends quietly, with no error, no event and no retry, until the object's own deletion."""
    kube, reconciler = _world()
    key = ObjectKey(Kind.DATABASE, NS, "db")
    body = _bucket("db")
    body["spec"] = defaulted_spec(Kind.DATABASE, {"providerConfigRef": REF, "engine": "postgres", "version": "16"})
    kube.terminating.add(NS)
    result = asyncio.run(reconciler.reconcile(key, body))
    assert result.error is None and result.requeue_after is None
    assert kube.events == []


def test_the_namespace_lifecycle_refusal_is_recognised_by_its_cause():
    refused = Refusal(
        403,
        "Forbidden",
        json.dumps(
            {
                "kind": "Status",
                "status": "Failure",
                "message": "unable to create new content in namespace t because it is being terminated",
                "reason": "Forbidden",
                "details": {
                    "name": "x",
                    "kind": "secrets",
                    "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
                },
                "code": 403,
            }
        ),
    )
    rbac = Refusal(
        403,
        "Forbidden",
        json.dumps({"kind": "Status", "reason": "Forbidden", "details": {"kind": "secrets"}, "code": 403}),
    )
    assert refused.namespace_terminating()
    assert not rbac.namespace_terminating()
