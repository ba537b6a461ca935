"""ProviderConfigs as reconciled objects: the Ready decision, status written only on change, the
requeue of users when a config or its credentials Secret changes, usage tracking of
ClusterProviderConfigs, and the messages of a reference that does not resolve."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import pytest
from kumo.controller.core import configstatus
from kumo.controller.core.configstatus import ConfigCheck
from kumo.controller.core.providerconfig import ProviderConfigError, RecentConfigs, resolve
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.providerconfigs import ProviderConfigs
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import CallHooks, Identity, Kind, ProviderSettings, Terminal
from kumo.providers.registry import ProviderRegistry

from kumo import api

from .fakes import FakeKube

NAMESPACE = "shop"


def config(kind: str = "ProviderConfig", name: str = "aws", *, secret: str = "", **meta: Any) -> dict[str, Any]:
    credentials = {"source": "Secret", "secretRef": {"name": secret}} if secret else {"source": "Environment"}
    metadata = {"name": name, "uid": f"uid-{name}", "generation": 1, **meta}
    if kind == "ProviderConfig":
        metadata["namespace"] = NAMESPACE
    return {"metadata": metadata, "spec": {"provider": "aws", "region": "eu-west-1", "credentials": credentials}}


def secret(name: str, namespace: str = NAMESPACE, **data: str) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"metadata": {"name": name, "namespace": namespace}, "data": encoded}


class Checked:
    """A provider plugin with the optional identity check."""

    name = "aws"
    kinds = frozenset({Kind.DATABASE})

    def __init__(self, refusal: Exception | None = None) -> None:
        self.refusal = refusal
        self.hooks: list[CallHooks | None] = []
        self.callers: list[str] = []

    async def check(self, settings: ProviderSettings, hooks: CallHooks | None = None) -> Identity:
        self.hooks.append(hooks)
        self.callers.append(settings.caller)
        if self.refusal is not None:
            raise self.refusal
        return Identity(
            "arn:aws:iam::123456789012:user/kumo", "STS GetCallerIdentity: arn:aws:iam::123456789012:user/kumo"
        )


class Unchecked:
    """A third-party plugin without an identity check."""

    name = "aws"
    kinds = frozenset({Kind.DATABASE})


# ---------------------------------------------------------------------- the Ready decision


@pytest.mark.parametrize(
    ("configs", "secrets", "registry", "ready", "reason", "says"),
    [
        pytest.param(
            [config(secret="creds")],
            [],
            {"aws": Checked()},
            False,
            api.CREDENTIALS_NOT_FOUND,
            "credentials Secret shop/creds not found",
            id="credentials-secret-missing",
        ),
        pytest.param(
            [config()],
            [],
            {},
            False,
            api.PROVIDER_NOT_INSTALLED,
            "no provider named 'aws' is installed",
            id="plugin-not-installed",
        ),
        pytest.param(
            [config(secret="creds")],
            [secret("creds", aws_access_key_id="AKIA", aws_secret_access_key="s")],
            {"aws": Checked(Terminal("The security token included in the request is invalid.", code="InvalidToken"))},
            False,
            api.IDENTITY_CHECK_FAILED,
            "The security token included in the request is invalid.",
            id="cloud-refuses-the-credentials",
        ),
        pytest.param(
            [config()],
            [],
            {"aws": Unchecked()},
            True,
            api.CREDENTIALS_RESOLVED,
            "has no identity check, so the cloud was not called",
            id="plugin-without-identity-check",
        ),
        pytest.param(
            [config()],
            [],
            {"aws": Checked()},
            True,
            api.IDENTITY_VERIFIED,
            "arn:aws:iam::123456789012:user/kumo",
            id="identity-verified",
        ),
    ],
)
def test_ready_says_which_step_failed_with_the_message_of_whoever_refused(
    configs: list[dict[str, Any]], secrets: list[dict[str, Any]], registry: dict[str, Any], ready, reason, says
) -> None:
    kube = FakeKube([])
    for body in configs:
        kube.provider_configs[("ProviderConfig", NAMESPACE, body["metadata"]["name"])] = body
    for body in secrets:
        kube.secrets[(NAMESPACE, body["metadata"]["name"])] = body
    providers = ProviderRegistry(providers=registry)
    outcome = asyncio.run(configstatus.check(kube, providers, ("ProviderConfig", NAMESPACE, "aws"), "kumo-system"))
    assert (outcome.ready, outcome.reason) == (ready, reason)
    assert says in outcome.message
    assert kube.writes == [], "a check never writes (no in-use finalizer)"


def test_the_identity_call_goes_through_the_controllers_hooks() -> None:
    """Paced and counted like every other cloud call."""
    kube, plugin, hooks = FakeKube([]), Checked(), CallHooks()
    kube.provider_configs[("ProviderConfig", NAMESPACE, "aws")] = config()
    providers = ProviderRegistry(providers={"aws": plugin})
    asyncio.run(configstatus.check(kube, providers, ("ProviderConfig", NAMESPACE, "aws"), "ns", lambda _: hooks))
    assert plugin.hooks == [hooks]


def test_a_sharded_replica_names_itself_in_the_identity_call_too() -> None:
    """Issue 17: every cloud call of a shard carries its name (User-Agent `kumo-shard/<name>`),
    the ProviderConfig's identity check as well as the reconciles' calls."""
    kube, plugin = FakeKube([]), Checked()
    kube.provider_configs[("ProviderConfig", NAMESPACE, "aws")] = config()
    providers = ProviderRegistry(providers={"aws": plugin})
    key = ("ProviderConfig", NAMESPACE, "aws")
    asyncio.run(configstatus.check(kube, providers, key, "ns", caller="kumo-0"))
    asyncio.run(configstatus.check(kube, providers, key, "ns"))
    assert plugin.callers == ["kumo-0", ""]


def test_status_is_written_only_when_it_changes() -> None:
    verified = ConfigCheck(True, api.IDENTITY_VERIFIED, "STS GetCallerIdentity: arn", "arn")
    first = configstatus.config_status({}, verified, generation=1, users=2)
    assert configstatus.needs_write({}, first)
    assert first["users"] == 2 and first["account"] == "arn" and first["observedGeneration"] == 1
    again = configstatus.config_status(first, verified, generation=1, users=2)
    assert not configstatus.needs_write(first, again), "the same outcome costs no write"
    more_users = configstatus.config_status(first, verified, generation=1, users=3)
    assert configstatus.needs_write(first, more_users)
    assert more_users["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]


def test_before_its_first_check_only_the_user_count_is_shown() -> None:
    shown = {"conditions": [{"type": "Ready", "status": "True"}], "users": 1}
    assert configstatus.config_status(shown, None, generation=2, users=4) == {"users": 4}


def test_the_in_use_event_names_the_first_holders_and_counts_the_rest() -> None:
    holders = [f"Database shop/db-{i}" for i in range(7)]
    message = configstatus.users_message("ClusterProviderConfig", "aws", holders, 7, shown=5)
    assert "7 objects still use it (Database shop/db-0, " in message
    assert "db-4 and 2 more" in message and "db-5" not in message
    assert api.IN_USE_FINALIZER in message


# ---------------------------------------------------------------------- references that do not resolve


@pytest.mark.parametrize(
    ("ref", "present", "expected"),
    [
        pytest.param(
            {"name": "aws"},
            ("ProviderConfig", NAMESPACE, "aws"),
            "ClusterProviderConfig 'aws' not found; a ProviderConfig 'aws' exists in namespace shop "
            "(kind defaults to ClusterProviderConfig): set kind: ProviderConfig",
            id="kind-omitted-namespaced-exists",
        ),
        pytest.param(
            {"kind": "ProviderConfig", "name": "aws"},
            ("ClusterProviderConfig", "", "aws"),
            "ProviderConfig 'aws' not found in namespace shop; a ClusterProviderConfig 'aws' exists: "
            "set kind: ClusterProviderConfig",
            id="namespaced-asked-cluster-exists",
        ),
        pytest.param(
            {"kind": "ProviderConfig", "name": "aws"},
            None,
            "ProviderConfig 'aws' not found in namespace shop",
            id="neither-exists",
        ),
    ],
)
def test_a_missing_config_says_when_the_other_kind_has_that_name(ref, present, expected) -> None:
    kube = FakeKube([])
    if present is not None:
        kube.provider_configs[present] = config(present[0])
    body = {"metadata": {"namespace": NAMESPACE}, "spec": {"providerConfigRef": ref}}
    with pytest.raises(ProviderConfigError) as refused:
        asyncio.run(resolve(kube, body, "kumo-system"))
    assert str(refused.value).endswith(expected)


def test_aws_unable_to_locate_credentials_explains_the_controllers_own_chain() -> None:
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError
    from kumo.providers.aws.session import translate

    error = translate(NoCredentialsError(), "DescribeDBInstances")
    assert str(error).startswith("DescribeDBInstances: Unable to locate credentials. ")
    for words in ("controller", "IRSA", "instance role", "AWS_ACCESS_KEY_ID", "source: Secret"):
        assert words in str(error)
    partial = translate(PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), "X")
    assert "source: Secret" not in str(partial), "only the empty chain gets the hint"


# ---------------------------------------------------------------------- requeue and usage


class RecordingHTTP:
    """kubehttp's seam: each write the real KubeClient sends, recorded as (what, details)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any]] = []

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        parts = path.strip("/").split("/")  # apis, group, version, [namespaces, ns], plural, name[, status]
        if path.endswith("/events"):
            self.writes.append(("event", (parts[3], body)))
        elif parts[-1] == "status":  # (namespace, plural, name) or (plural, name)
            where = parts[4:-1] if parts[3] == "namespaces" else parts[3:-1]
            self.writes.append(("status", (*where, body["status"])))
        else:
            self.writes.append(("finalizers", (parts[-1], body)))
        return {}


class RecordingKube(KubeClient):
    """The real KubeClient ProviderConfigs writes through, over a recording transport."""

    def __init__(self) -> None:
        self.recorder = RecordingHTTP()
        super().__init__(self.recorder)  # type: ignore[arg-type]
        self.writes = self.recorder.writes


class World:
    def __init__(self, outcome: ConfigCheck | None = None) -> None:
        self.cache: ObjectCache = ObjectCache()
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.kube = RecordingKube()
        self.resolved = RecentConfigs()
        self.forgotten: list[tuple[str, str, str]] = []
        self.resolved.forget = self.forgotten.append
        reconciler = SimpleNamespace(configs=self.resolved, controller_namespace="kumo-system")
        self.outcome = outcome or ConfigCheck(True, api.IDENTITY_VERIFIED, "verified", "arn")
        self.configs = ProviderConfigs(
            self.kube,
            reconciler,
            self.cache,
            self.queue,
            checker=self.checked,
        )

    async def checked(self, key: tuple[str, str, str]) -> ConfigCheck:
        return self.outcome

    def use(self, name: str, ref: dict[str, str]) -> ObjectKey:
        key = ObjectKey(Kind.DATABASE, NAMESPACE, name)
        self.cache.put(key, {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"providerConfigRef": ref}})
        return key

    async def drain(self) -> list[ObjectKey]:
        taken = []
        while len(self.queue):
            key = await self.queue.get()
            self.queue.done(key)
            taken.append(key)
        return taken

    async def run_pass(self) -> None:
        await self.configs.run_pass()


def test_a_config_created_or_changed_requeues_its_users_at_once() -> None:
    async def scenario() -> None:
        world = World()
        user = world.use("orders", {"kind": "ProviderConfig", "name": "aws"})
        world.use("other", {"kind": "ProviderConfig", "name": "gcp"})
        world.configs.on_config_event("ProviderConfig", None, config())
        assert await world.drain() == [], "listed at start-up: its users are reconciled anyway"
        changed = config()
        changed["metadata"]["generation"] = 2
        world.configs.on_config_event("ProviderConfig", "MODIFIED", changed)
        assert await world.drain() == [user]
        assert world.forgotten == [("ProviderConfig", NAMESPACE, "aws")], "resolved afresh, not from the cache"
        world.configs.on_config_event("ProviderConfig", "MODIFIED", changed)  # a status write comes back
        assert await world.drain() == [], "only a spec change counts"
        changed_again = config()
        changed_again["metadata"]["generation"] = 3
        world.configs.on_config_event("ProviderConfig", None, changed_again)
        assert await world.drain() == [user], "a change delivered by a watch's re-listing counts too"

    asyncio.run(scenario())


def test_a_missing_config_created_later_requeues_the_waiting_object() -> None:
    async def scenario() -> None:
        world = World()
        waiting = world.use("orders", {"name": "aws"})
        world.configs.on_config_event("ClusterProviderConfig", "ADDED", config("ClusterProviderConfig"))
        assert await world.drain() == [waiting]

    asyncio.run(scenario())


def test_a_changed_credentials_secret_requeues_the_users_of_its_config() -> None:
    async def scenario() -> None:
        world = World()
        user = world.use("orders", {"kind": "ProviderConfig", "name": "aws"})
        world.configs.on_config_event("ProviderConfig", None, config(secret="creds"))
        held = secret("creds", aws_access_key_id="old")
        held["metadata"]["finalizers"] = [api.IN_USE_FINALIZER]
        world.configs.on_secret_event("MODIFIED", held)
        assert await world.drain() == [], "first seen modified (kumo's own finalizer): nothing to apply"
        world.configs.on_secret_event(None, secret("creds", aws_access_key_id="old"))
        world.configs.on_secret_event(None, secret("unrelated", token="x"))
        assert await world.drain() == []
        labelled = secret("creds", aws_access_key_id="old")
        labelled["metadata"]["finalizers"] = [api.IN_USE_FINALIZER]
        world.configs.on_secret_event("MODIFIED", labelled)
        assert await world.drain() == [], "a finalizer edit is no credential change"
        world.configs.on_secret_event("MODIFIED", secret("creds", aws_access_key_id="rotated"))
        assert await world.drain() == [user]
        world.configs.on_secret_event("DELETED", secret("creds", aws_access_key_id="rotated"))
        assert await world.drain() == [user], "its users report the missing Secret at once"

    asyncio.run(scenario())


def test_status_shows_the_outcome_and_user_count_written_once() -> None:
    async def scenario() -> None:
        world = World()
        world.use("orders", {"kind": "ProviderConfig", "name": "aws"})
        world.configs.on_config_event("ProviderConfig", None, config())
        await world.run_pass()
        [(what, (namespace, plural, name, status))] = world.kube.writes
        assert (what, namespace, plural, name) == ("status", NAMESPACE, "providerconfigs", "aws")
        assert status["users"] == 1 and status["conditions"][0]["reason"] == api.IDENTITY_VERIFIED
        await world.run_pass()
        assert len(world.kube.writes) == 1, "nothing changed: no second write"

    asyncio.run(scenario())


def test_a_burst_of_new_users_is_counted_in_one_status_write_per_tick() -> None:
    """Objects arriving one after another change only the user count: that is written at most
    once per tick, with the count as it is by then; a change of the Ready condition is not held."""

    async def scenario() -> None:
        world = World()
        now = [100.0]
        world.configs.clock = lambda: now[0]
        world.use("orders", {"kind": "ProviderConfig", "name": "aws"})
        world.configs.on_config_event("ProviderConfig", None, config())
        await world.run_pass()
        for name in ("carts", "users"):
            world.use(name, {"kind": "ProviderConfig", "name": "aws"})
            await world.run_pass()
        assert [status["users"] for _, (*_, status) in world.kube.writes] == [1]
        now[0] += world.configs.tick
        await world.run_pass()
        assert [status["users"] for _, (*_, status) in world.kube.writes] == [1, 3]
        world.outcome = ConfigCheck(False, api.IDENTITY_CHECK_FAILED, "identity check failed: denied")
        world.configs.on_config_event("ProviderConfig", None, config(generation=2))
        await world.run_pass()
        assert world.kube.writes[-1][1][3]["conditions"][0]["reason"] == api.IDENTITY_CHECK_FAILED

    asyncio.run(scenario())


def test_a_cluster_config_in_use_is_held_and_its_deletion_names_the_holders_once() -> None:
    async def scenario() -> None:
        world = World()
        world.configs.on_config_event("ClusterProviderConfig", None, config("ClusterProviderConfig"))
        world.use("orders", {"name": "aws"})
        world.use("billing", {"name": "aws"})
        await world.run_pass()
        assert (
            "finalizers",
            ("aws", [{"op": "add", "path": "/metadata/finalizers", "value": [api.IN_USE_FINALIZER]}]),
        ) in (world.kube.writes)
        deleting = config(
            "ClusterProviderConfig", deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[api.IN_USE_FINALIZER]
        )
        world.configs.on_config_event("ClusterProviderConfig", "MODIFIED", deleting)
        await world.run_pass()
        await world.run_pass()
        events = [args[1] for what, args in world.kube.writes if what == "event"]
        [event] = events
        assert event["reason"] == api.EVENT_CONFIG_IN_USE and event["involvedObject"]["kind"] == "ClusterProviderConfig"
        assert "2 objects still use it (Database shop/billing, Database shop/orders)" in event["message"]
        for name in ("orders", "billing"):
            world.cache.pop(ObjectKey(Kind.DATABASE, NAMESPACE, name))
        world.kube.writes.clear()
        await world.run_pass()
        released = [args for what, args in world.kube.writes if what == "finalizers"]
        assert released and released[0][1][-1] == {"op": "replace", "path": "/metadata/finalizers", "value": []}

    asyncio.run(scenario())
