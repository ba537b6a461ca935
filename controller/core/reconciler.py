"""The one generic reconcile path for every managed kind and every provider.

Create, update, resume after a restart and drift sweeps all end up here. The reconciler only
orders the steps; what each step decides lives in a collaborator that is tested alone:

- ownership of what the cloud holds under our name (controller/core/ownership.py, pure),
- what to do about drift (controller/core/driftverdict.py, pure),
- the connection Secret and its password (controller/core/secrets.py),
- what a failure means and when to retry (controller/core/disposition.py, one table),
- events, each piece of news once (controller/core/events.py),
- whether this replica may still act on the object (controller/core/assignment.py, sharded
  controllers): asked right before every cloud create, update, delete and password change.

The order, as in crossplane-runtime's managed reconciler:

1. Being deleted? Delete the cloud resource (or retain it), wait until it is gone, delete the
   connection Secret, release the finalizer.
2. Add the finalizer. For databases, make sure the connection Secret holds a password **before**
   anything is created in the cloud, so a crash can never lose it.
3. Observe. Absent: create under the deterministic external name with ownership tags. Present
   but someone else's: refuse and say so.
4. Not ready yet: report Creating and look again later (a requeue, not a sleeping thread).
5. Drifted: update the cloud (or only report it, as the drift verdict says).
6. Make sure the password is set on the instance, write the connection details into the
   Secret, and write status only when it changed.

Steps return `Outcome`s (controller/core/outcome.py) that the pass adds up and writes once; no
step changes state another step reads. Every failure goes through the disposition table: log,
event naming the failed step (once per distinct message, not per retry), Synced=False with the
step and the cloud's message, and a retry at the pace the error's fixability calls for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from kumo.controller.core import conditions as cond
from kumo.controller.core import connection as conn
from kumo.controller.core import drift as drift_policy
from kumo.controller.core import driftverdict, ownership
from kumo.controller.core.assignment import Assignment, NotAssigned, Unsharded
from kumo.controller.core.disposition import (
    Disposition,
    OwnershipConflict,
    Step,
    StepFailed,
    Timing,
    at,
    describe,
    dispose,
)
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.events import EventHook, EventRecorder
from kumo.controller.core.kubeapi import Kube
from kumo.controller.core.outcome import Event, Outcome, Result, Subject, status_patch
from kumo.controller.core.providerconfig import ConfigKey, RecentConfigs, release
from kumo.controller.core.resources import InvalidSpec, ObjectKey, managed_resource
from kumo.controller.core.secrets import ConnectionSecrets, SecretState
from kumo.providers.base import (
    CallHooks,
    Creation,
    DatabaseClient,
    ExternalClient,
    Kind,
    ManagedResource,
    NotReady,
    Observation,
    Provider,
    ProviderSettings,
    Terminal,
)
from kumo.providers.registry import ProviderRegistry

from kumo import api
from kumo.api import (
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_DRIFT_CORRECTED,
    EVENT_DRIFT_DETECTED,
    EVENT_MISSING,
    EVENT_PASSWORD_SET,
    EVENT_RETAINED,
    EVENT_UPDATED,
    FINALIZER,
    MANAGED,
    NORMAL,
    WARNING,
)

__all__ = ["Connected", "Reconciler", "Result", "Timing"]

log = logging.getLogger(__name__)

OBSERVE_ONLY_MESSAGE = "managementPolicy ObserveOnly: kumo reads this resource and never writes to the cloud"
PAUSED_MESSAGE = 'kumo.dev/paused is "true": kumo makes no cloud call for this object until it is removed'
PASSWORD_APPLYING_MESSAGE = (
    "the cloud is applying a new master password; the connection Secret keeps the current one until it has"
)


class Connected(NamedTuple):
    provider: Provider
    client: ExternalClient
    settings: ProviderSettings


@dataclass(frozen=True)
class Created:
    """What the create step leaves: the resource as now known (None: not yet, or reported
    missing instead), the Secret after it, and whether the create itself set the password."""

    observation: Observation | None
    secret: SecretState
    password_set: bool = False
    outcome: Outcome = field(default_factory=Outcome)


@dataclass(frozen=True)
class Corrected:
    """What the update step leaves: the resource when the cloud took the change at once and now
    matches (the pass goes on), else None and what to report until the next look."""

    observation: Observation | None
    outcome: Outcome = field(default_factory=Outcome)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        providers: ProviderRegistry,
        *,
        cluster_id: str,
        controller_namespace: str,
        hooks_for: Callable[[ProviderSettings], CallHooks] | None = None,
        timing: Timing | None = None,
        default_drift_policy: DriftPolicy = DriftPolicy.CORRECT,
        on_event: EventHook | None = None,
        assignment: Assignment | None = None,
        caller: str = "",
    ) -> None:
        self.kube = kube
        self.assignment: Assignment = assignment or Unsharded()
        self.caller = caller  # the replica's name in its cloud calls' User-Agent (sharded)
        self.secrets = ConnectionSecrets(kube)
        self.events = EventRecorder(kube, on_event)
        self.providers = providers
        self.cluster_id = cluster_id
        self.controller_namespace = controller_namespace
        self.hooks_for = hooks_for
        self.timing = timing or Timing()
        self.default_drift_policy = default_drift_policy
        self._polls: dict[ObjectKey, int] = {}
        # The password digest a set_password the cloud applies later was sent with, per object: the
        # passes after it wait for the cloud instead of sending it again. A restart forgets it and
        # sends the stored password once more (idempotent), so nothing depends on it surviving.
        self._passwords_requested: dict[ObjectKey, str] = {}
        self.configs = RecentConfigs()

    def forget(self, key: ObjectKey) -> None:
        self.events.forget(key)
        self._polls.pop(key, None)
        self._passwords_requested.pop(key, None)

    async def connect(self, kind: Kind, body: Mapping[str, Any]) -> Connected:
        """Provider, client and settings for an object's provider config, resolved again after a
        few seconds so a rotated credential or a changed endpoint takes effect without a restart."""
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        settings = await self.configs.resolve(self.kube, body, self.controller_namespace, protect=not deleting)
        if self.caller:
            settings = replace(settings, caller=self.caller)
        provider = self.providers.get(settings.provider)
        if kind not in provider.kinds:
            raise Terminal(f"provider {settings.provider!r} does not manage {kind} objects")
        hooks = self.hooks_for(settings) if self.hooks_for else None
        client = provider.client(kind, settings, hooks)
        if kind is Kind.DATABASE and not deleting and not isinstance(client, DatabaseClient):
            # Refused here, before any cloud call: a Database created without a way to set its
            # password could never get the one its Secret holds. Deleting needs no password.
            raise Terminal(f"provider {provider.name!r} cannot set database passwords")
        return Connected(provider, client, settings)

    def resource_for(self, kind: Kind, body: Mapping[str, Any], settings: ProviderSettings) -> ManagedResource:
        defaults = settings.provider_options.get(MANAGED[kind].plural) or {}
        return managed_resource(kind, body, self.cluster_id, defaults)

    async def release_config(self, config: ConfigKey) -> None:
        """No object uses this namespaced ProviderConfig any more: drop its in-use protection."""
        self.configs.forget(config)
        await release(self.kube, config[1], config[2])

    # ------------------------------------------------------------------ one pass

    async def reconcile(self, key: ObjectKey, body: Mapping[str, Any]) -> Result:
        subject = Subject(key, body)
        report = Outcome()
        try:
            async for outcome in self._steps(subject):
                report += outcome
        except NotReady as progress:
            report += self._in_progress(subject, progress)
        except NotAssigned as moved:
            # Not ours any more (sharded): nothing of this pass is written; its shard takes over.
            log.info("%s: %s; dropped without acting", key, moved)
            self.forget(key)
            return Result(dropped=True)
        except Exception as error:  # every failure, whichever step: the disposition table decides
            failure = error if isinstance(error, StepFailed) else StepFailed(Step.RECONCILE, error)
            disposition = dispose(failure.step, failure.cause, self.timing)
            if disposition.quiet and disposition.retry is not None:
                # Deleted or written by someone else while this pass ran: one line, and a retry
                # reads the new state (the object's own deletion drops the key from the queue).
                log.info("%s: %s; retrying", key, disposition.message)
                return Result(error=disposition.error, retry=disposition.retry)
            report += await self._failed(subject, disposition)
        if not report.done:
            await self._finish(subject, report)
        return report.result or Result()

    async def _steps(self, s: Subject) -> AsyncIterator[Outcome]:
        """The order of operations. Each step's outcome is yielded as soon as it is known, so a
        later step's failure still reports what the earlier ones found."""
        if s.paused:
            # No cloud call at all, deletion included: a paused object is left exactly as it is.
            paused = cond.Condition(api.SYNCED, False, api.PAUSED, PAUSED_MESSAGE)
            yield Outcome(conditions=(paused,), spec_applied=False)
            return
        with at(Step.CONNECT):
            provider, client, settings = await self.connect(s.key.kind, s.body)
        with at(Step.VALIDATE):
            resource = self.resource_for(s.key.kind, s.body, settings)
        if s.deleting:
            yield await self._finalize(s, resource, client)
            return
        with at(Step.VALIDATE):
            problems = provider.validate(resource)
            if problems:
                raise InvalidSpec("; ".join(problems))
        with at(Step.ADD_FINALIZER):
            await self._ensure_finalizer(s)
        if s.observe_only:
            yield await self._observe_only(s, resource, client)
        else:
            async for outcome in self._manage(s, resource, client):
                yield outcome

    async def _manage(self, s: Subject, resource: ManagedResource, client: ExternalClient) -> AsyncIterator[Outcome]:
        """Password first, observe, create if absent, claim, wait for ready, correct, publish."""
        with at(Step.PUBLISH):
            # Before any create: a resource whose Secret name is taken would exist in the cloud with
            # nowhere to publish it; a Database's password is stored before anything can set it.
            is_database = s.key.kind is Kind.DATABASE
            secret = await (self.secrets.ensure_password(s.owner) if is_database else self.secrets.read(s.owner))
        with at(Step.OBSERVE):
            observation = await client.observe(resource)
        created = Created(observation, secret)
        if observation is None:
            created = await self._absent(s, resource, client, secret)
            yield created.outcome
        if created.observation is None:
            if not created.outcome.conditions:  # not reported missing: asked for, not there yet
                yield self._creating(s, None)
            return
        observation, secret = created.observation, created.secret
        self._claim(s, observation)
        if not observation.ready:
            yield await self._not_ready(s, observation, created)
            return
        verdict = driftverdict.judge(observation.drift, self._situation(s))
        if verdict.update:
            corrected = await self._correct(s, resource, client, observation, verdict)
            yield corrected.outcome
            if corrected.observation is None:
                return
            observation = corrected.observation
        yield self._assess_drift(s, observation)
        if is_database:
            assert isinstance(client, DatabaseClient)  # connect refuses any other Database client
            secret = await self._ensure_password_applied(s, client, resource, observation, created)
        yield Outcome(published=True)
        with at(Step.PUBLISH):
            await self.secrets.publish(s.owner, secret, self._connection_details(resource, observation, secret))
        yield self._available(s, observation, secret)

    async def _not_ready(self, s: Subject, observation: Observation, created: Created) -> Outcome:
        secret = created.secret
        if created.password_set and secret.password is not None and not secret.password.applied:
            # An RDS instance takes minutes to become ready; a later pass would not know this
            # create set the password and would send it again (a needless credentials reset).
            with at(Step.PUBLISH):
                await self.secrets.mark_password(s.owner, secret, conn.PASSWORD_APPLIED)
        return self._creating(s, observation)

    def _available(self, s: Subject, observation: Observation, secret: SecretState) -> Outcome:
        """Everything done: Ready and Synced, and when to look again."""
        self._polls.pop(s.key, None)
        result = Result()
        if secret.password is not None and secret.password.rotation != s.rotation:
            # A rotation asked for while another was applied: it starts now that one is published.
            result = Result(requeue_after=self.timing.poll_min)
        elif observation.message:
            # A usable resource the cloud is working on (maintenance) is looked at again until the
            # note is gone, so Ready does not keep saying it afterwards.
            result = Result(requeue_after=self.timing.poll_max)
        return Outcome(
            conditions=(
                cond.Condition(api.READY, True, api.AVAILABLE, observation.message),
                cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS),
            ),
            at_provider=_at_provider(observation),
            result=result,
        )

    async def _observe_only(self, s: Subject, resource: ManagedResource, client: ExternalClient) -> Outcome:
        """ManagementPolicy ObserveOnly: read and report, never a cloud write (no create, update,
        tag, password or delete), and no connection Secret."""
        synced = cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS, OBSERVE_ONLY_MESSAGE)
        with at(Step.OBSERVE):
            observation = await client.observe(resource)
        if observation is None:
            missing = f"{resource.external_name} does not exist"
            ready = cond.Condition(api.READY, False, api.UNAVAILABLE, missing)
            return Outcome(conditions=(ready, synced, drift_policy.missing(resource.external_name)), result=Result())
        ready = cond.Condition(api.READY, True, api.AVAILABLE, observation.message)
        if not observation.ready:
            message = observation.message or f"cloud state: {observation.state}"
            ready = cond.Condition(api.READY, False, api.UNAVAILABLE, message)
        return (
            Outcome(at_provider=_at_provider(observation))
            + self._assess_drift(s, observation)
            + Outcome(conditions=(ready, synced), result=Result())
        )

    # ------------------------------------------------------------------ drift sweeps

    async def assess_sweep(self, key: ObjectKey, body: Mapping[str, Any], observation: Observation | None) -> bool:
        """Judge one object against a batched observation from a drift sweep.

        Writes InSync / status.drift only when they change (a steady sweep writes nothing) and
        posts one Warning event per newly seen drift. Returns True when the object needs a full
        reconcile: to correct drift, to recreate a missing resource, or because its state moved.
        """
        s = Subject(key, body, guard_version=body["metadata"].get("resourceVersion"))
        situation = self._situation(s)
        if observation is None:
            if situation.effective_policy is not DriftPolicy.REPORT:
                return True
            report = await self._report_missing(s)
        elif not s.observe_only and (
            not observation.ready
            or self._judge_owner(s, observation).claim is not ownership.Claim.OURS
            or _note_changed(s, observation)
        ):
            return True
        elif situation.spec_changed and situation.writes:
            # A spec edit the cloud has not taken yet (RDS refuses a storage change for hours after
            # the previous one) is the reconcile's to finish, not drift behind kumo's back.
            return True
        else:
            report = self._assess_drift(s, observation)
        if report.conditions:
            await self._finish(s, report)
        return observation is not None and driftverdict.judge(observation.drift, situation).needs_update

    # ------------------------------------------------------------------ steps

    async def _ensure_finalizer(self, s: Subject) -> None:
        finalizers = list(s.meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            await self.kube.add_finalizer(s.key, finalizers, FINALIZER)

    async def _absent(
        self, s: Subject, resource: ManagedResource, client: ExternalClient, secret: SecretState
    ) -> Created:
        """Nothing in the cloud under our name: create it, unless the drift verdict says it is
        only to be reported missing (it existed, driftPolicy Report, no spec edit)."""
        existed = bool(s.recorded_external_name)
        absent = driftverdict.judge_absent(existed, self._situation(s))
        if absent is driftverdict.Absent.REPORT_MISSING:
            return Created(None, secret, outcome=await self._report_missing(s))
        await self.assignment.confirm(s.key)  # before the event too: the create is not ours to announce
        if absent is driftverdict.Absent.RECREATE:
            await self._event(s, WARNING, EVENT_MISSING, f"{resource.external_name} was deleted outside kumo")
        with at(Step.CREATE):
            creation = await client.create(resource, secret.password.value if secret.password else None)
        password_set = creation.password_applied and secret.password is not None
        if secret.password is not None and not creation.password_applied and secret.password.applied:
            # A resource recreated after an out-of-band deletion needs its password set again: the
            # 'applied' mark is no longer true and is withdrawn in the Secret before anything else.
            with at(Step.PUBLISH):
                secret = await self.secrets.mark_password(s.owner, secret, conn.PASSWORD_PENDING)
        verb = "Recreating" if existed else "Creating"
        message = f"{verb} {s.key.kind.lower()} {creation.external_name} (state: {creation.state})"
        _log_change(s, "recreated" if existed else "created", creation.external_name, f"cloud state: {creation.state}")
        if existed or secret.password is not None or not _ready_at_once(creation):
            # A resource usable at once and without a password (a bucket) gets no event: this
            # pass's status write already says it (Ready=True since this moment, status.atProvider
            # naming it), one Kubernetes write per object fewer. One that provisions, takes its
            # first password, or comes back after an out-of-band deletion is news the status does
            # not tell (yet): those get the event.
            await self._event(s, NORMAL, EVENT_CREATED, message)
        if creation.observation is not None:
            return Created(creation.observation, secret, password_set)  # the create's own answer
        # Many resources are usable at once (buckets, emulators); one look saves a requeue.
        with at(Step.OBSERVE):
            return Created(await client.observe(resource), secret, password_set)

    async def _report_missing(self, s: Subject) -> Outcome:
        external = s.recorded_external_name
        await self._event(s, WARNING, EVENT_MISSING, f"{external} was deleted outside kumo (driftPolicy Report)")
        ready = cond.Condition(api.READY, False, api.UNAVAILABLE, f"{external} no longer exists in the cloud")
        return Outcome(conditions=(ready, drift_policy.missing(external)), result=Result())

    def _situation(self, s: Subject) -> driftverdict.Situation:
        return driftverdict.situation_of(s.body, self.default_drift_policy)

    def _judge_owner(self, s: Subject, observation: Observation) -> ownership.OwnershipVerdict:
        return ownership.judge_object(s.body, observation, self.cluster_id)

    def _claim(self, s: Subject, observation: Observation) -> None:
        """Refuse a resource that is someone else's. Ours but untagged, or adoption asked for:
        the next update writes our tags, as drift."""
        verdict = self._judge_owner(s, observation)
        if verdict.conflict:
            with at(Step.CLAIM):
                raise OwnershipConflict(verdict.message)

    def _assess_drift(self, s: Subject, observation: Observation) -> Outcome:
        """InSync and status.drift for an observation that is not being corrected now."""
        if driftverdict.judge(observation.drift, self._situation(s)).ignored:
            return Outcome(conditions=(drift_policy.ignored(),), drift=[])
        previous = s.status.get("drift") or []
        assessment = drift_policy.assess(observation.drift, previous, cond.now_rfc3339())
        current = s.condition(api.IN_SYNC)
        report = Outcome()
        if assessment.entries != previous or current is None or current.get("reason") != assessment.condition.reason:
            report = Outcome(conditions=(assessment.condition,), drift=assessment.entries)
        if assessment.new_fields:
            report += Outcome(events=(Event(WARNING, EVENT_DRIFT_DETECTED, assessment.condition.message),))
        return report

    def _creating(self, s: Subject, observation: Observation | None) -> Outcome:
        state = observation.state if observation else "requested"
        # A resource that was usable and no longer is (stopped, failed, storage full) is not "Creating".
        reason = api.UNAVAILABLE if s.was_usable else api.CREATING
        message = (observation and observation.message) or f"cloud state: {state}"
        return Outcome(
            conditions=(
                cond.Condition(api.READY, False, reason, message),
                cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS),
            ),
            at_provider=_at_provider(observation) if observation is not None else None,
            spec_applied=False,
            result=Result(requeue_after=self._next_poll(s.key)),
        )

    def _next_poll(self, key: ObjectKey) -> float:
        """The delay before the next look at something the cloud is still working on: growing
        from poll_min to poll_max while it lasts."""
        polls = self._polls[key] = self._polls.get(key, 0) + 1
        return min(self.timing.poll_max, self.timing.poll_min * 2 ** (polls - 1))

    async def _correct(
        self,
        s: Subject,
        resource: ManagedResource,
        client: ExternalClient,
        observation: Observation,
        verdict: driftverdict.DriftVerdict,
    ) -> Corrected:
        """Update the cloud to the spec. The resource comes back when the cloud took the change at
        once and now matches, so the same pass can finish (the usual case for buckets, and for the
        app database a new Cloud SQL instance needs); None means look again later."""
        await self.assignment.confirm(s.key)  # before the drift event: the update is not ours to announce
        out_of_band = not self._situation(s).spec_changed
        if out_of_band:
            assessment = drift_policy.assess(observation.drift, s.status.get("drift") or [], cond.now_rfc3339())
            if assessment.new_fields:
                await self._event(s, WARNING, EVENT_DRIFT_DETECTED, assessment.condition.message)
        with at(Step.UPDATE):
            update = await client.update(resource, verdict.update)
        fields = ", ".join(update.changed) or "nothing"
        if update.changed:
            _log_change(s, "updated", resource.external_name, fields + ("; drift put back" if out_of_band else ""))
        if out_of_band:
            await self._event(s, NORMAL, EVENT_DRIFT_CORRECTED, f"Put back to the spec: {fields}")
        elif s.was_usable:  # before that, an update is part of creating (a Cloud SQL app database)
            await self._event(s, NORMAL, EVENT_UPDATED, f"Updated {fields}")
        if not update.pending:
            with at(Step.OBSERVE):
                after = await client.observe(resource)
            # Never a second update in one pass: what still differs waits for the next look.
            if after is not None and after.ready and not any(d.correctable for d in after.drift):
                return Corrected(after)
        synced = cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS)
        later = Result(requeue_after=self.timing.poll_min)
        return Corrected(None, Outcome(conditions=(synced,), at_provider=_at_provider(observation), result=later))

    async def _ensure_password_applied(
        self,
        s: Subject,
        client: DatabaseClient,
        resource: ManagedResource,
        observation: Observation,
        created: Created,
    ) -> SecretState:
        """Set the stored password on the instance and return once the cloud applied it; until
        then `NotReady` (a quiet wait: the Secret keeps the credential that works)."""
        secret, password = created.secret, created.secret.password
        assert password is not None
        if password.applied:
            return secret
        if not created.password_set:
            # The instance was created earlier, or the password changed since: set it. Safe to
            # repeat, so a crash between this call and the Secret write only costs a retry.
            digest = conn.password_digest(s.uid, password.value)
            if self._passwords_requested.get(s.key) == digest:
                applied = not observation.password_pending
            else:
                await self.assignment.confirm(s.key)
                with at(Step.SET_PASSWORD):
                    applied = (await client.set_password(resource, password.value)).applied
                _log_change(s, "set the master password of", resource.external_name)
                if not applied:
                    self._passwords_requested[s.key] = digest
            if not applied:
                raise NotReady(PASSWORD_APPLYING_MESSAGE)
            self._passwords_requested.pop(s.key, None)
            if s.was_usable:  # a rotation or a reset is news; the first password is part of creating
                await self._event(s, NORMAL, EVENT_PASSWORD_SET, "Master password set on the instance")
        return replace(secret, password=replace(password, state=conn.PASSWORD_APPLIED, staged=False))

    def _connection_details(
        self, resource: ManagedResource, observation: Observation, secret: SecretState
    ) -> dict[str, str]:
        if resource.kind is Kind.DATABASE:
            assert secret.password is not None
            return conn.database_data(observation.connection, resource.database.master_username, secret.password.value)
        return {k: str(v) for k, v in observation.connection.items()}

    async def _finalize(self, s: Subject, resource: ManagedResource, client: ExternalClient) -> Outcome:
        finalizers = list(s.meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return Outcome(done=True)
        if (s.body.get("spec") or {}).get("deletionPolicy", "Delete") == "Retain" or s.observe_only:
            retained = f"deletionPolicy is Retain: {resource.external_name} is left in the cloud"
            await self._event(s, NORMAL, EVENT_RETAINED, retained)
        else:
            with at(Step.OBSERVE):
                observation = await client.observe(resource)
            if observation is not None and self._judge_owner(s, observation).ours:
                await self.assignment.confirm(s.key)
                with at(Step.DELETE):
                    deletion = await client.delete(resource)
                if deletion.gone:
                    _log_change(s, "deleted", resource.external_name)
                elif not _deleting(s):  # polling a delete under way is not news
                    _log_change(s, "deleting", resource.external_name, f"cloud state: {deletion.state}")
                if not deletion.gone:
                    deleting = cond.Condition(api.READY, False, api.DELETING, f"cloud state: {deletion.state}")
                    return Outcome(conditions=(deleting,), result=Result(requeue_after=self.timing.poll_min * 2))
                await self._event(s, NORMAL, EVENT_DELETED, f"Deleted {resource.external_name}")
        with at(Step.UNPUBLISH):
            await self.secrets.delete(s.owner)
        with at(Step.REMOVE_FINALIZER):
            await self.kube.remove_finalizer(s.key, finalizers, FINALIZER)
        self.forget(s.key)
        return Outcome(done=True)

    # ------------------------------------------------------------------ status, events, errors

    def _in_progress(self, s: Subject, progress: NotReady) -> Outcome:
        """The cloud is still busy with an earlier request: poll, no error, no failure count. What
        is waited for shows in Synced (still True: nothing failed), say a change the cloud takes
        only later; the message is the cloud's own, stable between polls, so no write per poll."""
        log.debug("%s waits for the cloud: %s", s.key, progress)
        pending = cond.Condition(api.SYNCED, True, api.RECONCILE_PENDING, str(progress))
        return Outcome(conditions=(pending,), spec_applied=False, result=Result(requeue_after=self._next_poll(s.key)))

    async def _failed(self, s: Subject, disposition: Disposition) -> Outcome:
        """One failure, as the disposition table says: log, event, Synced=False, retry pace."""
        if disposition.quiet:  # a namespace being deleted: nothing to say, nothing to retry
            log.info("%s: %s; waiting for the object's own deletion", s.key, disposition.message)
            return Outcome(result=Result())
        if describe(disposition.error).startswith("unexpected error"):
            log.error("unexpected error reconciling %s", s.key, exc_info=disposition.error)
        assert disposition.condition_reason is not None
        log.warning("reconcile of %s failed (%s): %s", s.key, disposition.event_reason, disposition.message)
        await self._event(s, WARNING, disposition.event_reason, disposition.message)
        conditions: tuple[cond.Condition, ...] = (
            cond.Condition(api.SYNCED, False, disposition.condition_reason, disposition.message),
        )
        if s.condition(api.READY) is None:
            conditions += (cond.Condition(api.READY, False, api.CREATING, "waiting for a successful reconcile"),)
        failed = Result(error=disposition.error, terminal=disposition.terminal, retry=disposition.retry)
        return Outcome(conditions=conditions, result=failed)

    async def _finish(self, s: Subject, report: Outcome) -> None:
        """Write status if it changed, then post the news it is about. Deleted or written by
        someone else meanwhile: the next pass writes it."""
        try:
            await self._write_status(s, report)
        except Exception as error:
            disposition = dispose(Step.RECONCILE, error, self.timing)
            if not (disposition.quiet and disposition.retry is not None):
                raise
            log.info("%s: status not written: %s", s.key, error)
            return
        for event in report.events:
            await self._event(s, event.type, event.reason, event.message)

    async def _write_status(self, s: Subject, report: Outcome) -> None:
        patch = status_patch(s, report)
        if patch is not None:
            await self.kube.patch_status(s.key, patch, s.guard_version)

    async def _event(self, s: Subject, event_type: str, reason: str, message: str) -> None:
        await self.events.post(s.key, s.uid, event_type, reason, message)


def _deleting(s: Subject) -> bool:
    """An earlier pass asked the cloud to delete the resource (Ready says Deleting)."""
    return (cond.find(s.status.get("conditions") or [], api.READY) or {}).get("reason") == api.DELETING


def _ready_at_once(creation: Creation) -> bool:
    """The create's own answer says the resource is usable already (S3 and GCS buckets)."""
    return creation.observation is not None and creation.observation.ready


def _log_change(s: Subject, done: str, external_name: str, detail: str = "") -> None:
    """One INFO line per change kumo makes in the cloud, naming the object and the resource:
    `updated Bucket team-a/assets: team-a-assets-1a2b3c4d (versioning)`. Names of fields only,
    never values (a password is said to be set, never shown)."""
    key = s.key
    log.info("%s %s %s/%s: %s%s", done, key.kind, key.namespace, key.name, external_name, f" ({detail})" * bool(detail))


def _at_provider(observation: Observation) -> dict[str, Any]:
    facts = {"externalName": observation.external_name, "state": observation.state}
    facts.update(observation.at_provider)
    return facts


def _note_changed(s: Subject, observation: Observation) -> bool:
    """Ready is True but does not carry the cloud's current note on the state (maintenance
    began or ended): a full reconcile rewrites it, so Ready says what is going on without flapping."""
    ready = s.condition(api.READY)
    return bool(ready and ready.get("status") == "True" and (ready.get("message") or "") != observation.message)
