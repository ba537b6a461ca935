"""The error disposition table (controller/core/disposition.py): for each error and step, what the
user is told and how soon kumo tries again; then the same rules seen through a reconcile."""

from __future__ import annotations

import asyncio

import pytest
from kumo.controller.core.disposition import OwnershipConflict, Pace, Step, Timing, dispose
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.providerconfig import ProviderConfigError
from kumo.controller.core.resources import InvalidSpec
from kumo.controller.core.secrets import SecretConflict
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import Ownership, Retryable, Terminal, Unavailable

from kumo import api

from .test_reconciler import World

TIMING = Timing()


@pytest.mark.parametrize(
    ("step", "error", "reason", "event", "pace"),
    [
        (
            Step.CONNECT,
            ProviderConfigError("ClusterProviderConfig 'x' not found"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_CONNECT,
            Pace.SOON,
        ),
        (
            Step.CONNECT,
            Unavailable("no provider named 'azure' is installed"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_CONNECT,
            Pace.SLOW,
        ),
        (
            Step.VALIDATE,
            InvalidSpec("spec.size: 'huge' is not one of small, medium, large"),
            api.INVALID_SPEC,
            api.EVENT_INVALID_SPEC,
            Pace.SLOW,
        ),
        (
            Step.OBSERVE,
            Retryable("Throttling: Rate exceeded"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_OBSERVE,
            Pace.BACKOFF,
        ),
        (
            Step.CREATE,
            Terminal("InvalidParameterValue: bad class"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_CREATE,
            Pace.SLOW,
        ),
        (Step.UPDATE, Retryable("InvalidDBInstanceState"), api.RECONCILE_ERROR, api.EVENT_CANNOT_UPDATE, Pace.BACKOFF),
        (Step.DELETE, Terminal("deletion protection"), api.RECONCILE_ERROR, api.EVENT_CANNOT_DELETE, Pace.SLOW),
        (
            Step.PUBLISH,
            SecretConflict("Secret 'db' exists and is not owned"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_PUBLISH,
            Pace.SLOW,
        ),
        (
            Step.PUBLISH,
            KubeError("Kubernetes API 403 Forbidden: exceeded quota"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_PUBLISH,
            Pace.BACKOFF,
        ),
        (
            Step.SET_PASSWORD,
            Retryable("InvalidDBInstanceState"),
            api.RECONCILE_ERROR,
            api.EVENT_CANNOT_SET_PASSWORD,
            Pace.BACKOFF,
        ),
        (
            Step.CLAIM,
            OwnershipConflict("db-1 belongs to team-b/x"),
            api.OWNED_BY_ANOTHER,
            api.EVENT_OWNED_BY_ANOTHER,
            Pace.SLOW,
        ),
        (Step.OBSERVE, KeyError("instanceArn"), api.RECONCILE_ERROR, api.EVENT_CANNOT_OBSERVE, Pace.BACKOFF),
    ],
    ids=[
        "missing-config-is-soon",
        "plugin-not-installed-is-slow",
        "invalid-spec",
        "throttled-observe",
        "terminal-create",
        "retryable-update",
        "terminal-delete",
        "secret-taken",
        "kube-refusal",
        "set-password",
        "owned-by-another",
        "a-bug",
    ],
)
def test_each_error_and_step_has_one_reason_event_and_pace(step, error, reason, event, pace):
    """The event names the step; the message starts with it; the pace follows the error class."""
    disposition = dispose(step, error, TIMING)
    assert (disposition.condition_reason, disposition.event_reason, disposition.pace) == (reason, event, pace)
    assert disposition.message.startswith(step.failure + ": ") and str(error) in disposition.message
    assert disposition.terminal is (pace is Pace.SLOW)


def test_a_missing_provider_config_is_retried_within_seconds_not_minutes():
    """Before, 5½ minutes passed between creating the ProviderConfig and the object noticing."""
    retry = dispose(Step.CONNECT, ProviderConfigError("not found"), TIMING).retry
    assert retry is not None
    delays = [retry.delay(failures) for failures in range(1, 12)]
    assert delays[0] <= TIMING.config_retry_first and max(delays) <= TIMING.config_retry_cap


@pytest.mark.parametrize(
    ("error", "retried"),
    [(Conflict("409"), True), (NotFound("404"), True), (NamespaceTerminating("being terminated"), False)],
    ids=["conflict", "not-found", "namespace-terminating"],
)
def test_lost_races_are_quiet(error, retried):
    """No condition, no event: a retry reads the new state (or the deletion is the next event)."""
    disposition = dispose(Step.PUBLISH, error, TIMING)
    assert disposition.quiet and (disposition.retry is not None) is retried


def test_the_queue_waits_as_long_as_the_pace_says():
    class Fixed:
        def delay(self, failures: int) -> float:
            return 7.0 * failures

    queue: WorkQueue[str] = WorkQueue()

    async def run() -> list[float]:
        return [queue.add_rate_limited("k", Fixed()), queue.add_rate_limited("k", Fixed())]

    assert asyncio.run(run()) == [7.0, 14.0]


def test_a_reconcile_without_its_provider_config_says_connect_failed_and_comes_back_soon():
    world = World()
    world.kube.provider_configs.clear()
    result = world.reconcile()
    assert not result.terminal and result.retry is not None and result.retry.cap == TIMING.config_retry_cap
    synced = world.condition("Synced")
    assert synced["message"].startswith("cannot connect to provider: spec.providerConfigRef")
    assert [reason for _, reason, _ in world.kube.events] == [api.EVENT_CANNOT_CONNECT]


def test_a_refused_resource_is_reported_as_owned_by_another():
    world = World()
    world.reconcile()
    for record in world.cloud.records.values():
        record.owner = Ownership("someone-else", "team-b", "x", "c9")
    world.kube.statuses.clear()  # nothing recorded that would make it ours
    world.reconcile()
    synced = world.condition("Synced")
    assert synced["reason"] == api.OWNED_BY_ANOTHER and "belongs to team-b/x" in synced["message"]
    assert world.kube.events[-1][1] == api.EVENT_OWNED_BY_ANOTHER
