"""The one generic reconcile path for every managed kind and every provider.

Create, update, resume after a restart and (later) drift sweeps all end up in `reconcile()`. It
owns the order of operations; providers only observe, create, update and delete:

1. Being deleted? Delete the cloud resource (or retain it), wait until it is gone, delete the
   connection Secret, release the finalizer.
2. Add the finalizer. For databases, make sure the connection Secret holds a password **before**
   anything is created in the cloud, so a crash can never lose it.
3. Observe. Absent: create under the deterministic external name with ownership tags. Present
   but tagged for another owner: refuse and say so.
4. Not ready yet: report Creating and look again later (a requeue, not a sleeping thread).
5. Drifted: update the cloud.
6. Make sure the password is set on the instance, write the connection details into the
   Secret, and write status only when it changed.

Every failure branch looks the same: log, event (once per distinct message, not per retry),
Synced=False with the cloud's message, requeue with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from kumo.controller.core import conditions as cond
from kumo.controller.core import connection as conn
from kumo.controller.core import drift as drift_policy
from kumo.controller.core.drift import DriftPolicy, policy_of
from kumo.controller.core.kubeapi import Conflict, Kube, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.providerconfig import ConfigKey, ProviderConfigError, RecentConfigs, release
from kumo.controller.core.resources import InvalidSpec, ObjectKey, derived_external_name, managed_resource
from kumo.controller.core.secrets import ConnectionSecrets, SecretOwner, SecretState
from kumo.controller.runtime.metrics import Metrics
from kumo.providers.base import (
    CallHooks,
    Creation,
    DatabaseClient,
    ExternalClient,
    FieldDrift,
    Kind,
    ManagedResource,
    NotReady,
    Observation,
    Provider,
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
)
from kumo.providers.registry import ProviderRegistry

from kumo import api
from kumo.api import (
    ANNOTATION_ADOPT,
    ANNOTATION_PAUSED,
    ANNOTATION_ROTATE_PASSWORD,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_DRIFT_CORRECTED,
    EVENT_DRIFT_DETECTED,
    EVENT_MISSING,
    EVENT_OWNED_BY_ANOTHER,
    EVENT_PASSWORD_SET,
    EVENT_RECONCILE_ERROR,
    EVENT_RETAINED,
    EVENT_UPDATED,
    FINALIZER,
    MANAGED,
    NORMAL,
    WARNING,
    connection_secret_name,
)

log = logging.getLogger(__name__)

OBSERVE_ONLY_MESSAGE = "managementPolicy ObserveOnly: kumo reads this resource and never writes to the cloud"
PAUSED_MESSAGE = 'kumo.dev/paused is "true": kumo makes no cloud call for this object until it is removed'
PASSWORD_APPLYING_MESSAGE = (
    "the cloud is applying a new master password; the connection Secret keeps the current one until it has"
)


class OwnershipConflict(Terminal):
    """The cloud resource exists under our external name but belongs to someone else."""


class UnexpectedError(Retryable):
    """An error no step foresaw (a Kubernetes refusal such as an exhausted quota or a policy, or a
    bug): shown in Synced=False and an event like any other, and retried with backoff."""


@dataclass(frozen=True)
class Timing:
    """How soon to look again; all in seconds."""

    poll_min: float = 2.0  # first look at a resource that is still provisioning
    poll_max: float = 30.0
    terminal_retry: float = 300.0  # errors a retry soon won't fix


class Connected(NamedTuple):
    provider: Provider
    client: ExternalClient
    settings: ProviderSettings


@dataclass(frozen=True)
class Result:
    """What the worker does next with the key."""

    requeue_after: float | None = None  # look again after this long (not an error)
    error: ProviderError | Exception | None = None
    terminal: bool = False


@dataclass
class _Pass:
    """Mutable state of one reconcile pass over one object."""

    key: ObjectKey
    body: Mapping[str, Any]
    resource: ManagedResource | None = None
    conditions: list[cond.Condition] = field(default_factory=list)
    at_provider: dict[str, Any] | None = None
    secret: SecretState = field(default_factory=SecretState)  # as last read or written this pass
    published: bool = False  # the connection Secret was checked or written this pass
    password_set_by_create: bool = False
    done: bool = False  # object fully handled (finalizer released): no status write
    drift: list[dict[str, Any]] | None = None  # new status.drift, when it changed
    # False while the cloud cannot have taken the spec yet (still provisioning): observedGeneration
    # must not move then, or an edit made meanwhile would look like drift instead of intent.
    spec_applied: bool = True
    pending_events: list[tuple[str, str, str]] = field(default_factory=list)
    # A sweep judges a cached copy that a reconcile may have overtaken: its status write is
    # guarded by the resourceVersion it read, so it can never overwrite newer conditions.
    guard_version: str | None = None

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def owner(self) -> SecretOwner:
        return SecretOwner(self.key, self.body)

    @property
    def password(self) -> conn.StoredPassword | None:
        return self.secret.password

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation", 0))

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.body["metadata"].get("annotations") or {}


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
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.secrets = ConnectionSecrets(kube)
        self.providers = providers
        self.cluster_id = cluster_id
        self.controller_namespace = controller_namespace
        self.hooks_for = hooks_for
        self.timing = timing or Timing()
        self.default_drift_policy = default_drift_policy
        self.metrics = metrics
        self._last_event: dict[ObjectKey, tuple[str, str]] = {}
        self._polls: dict[ObjectKey, int] = {}
        # The password digest a set_password the cloud applies later was sent with, per object: the
        # passes after it wait for the cloud instead of sending it again. A restart forgets it and
        # sends the stored password once more (idempotent), so nothing depends on it surviving.
        self._passwords_requested: dict[ObjectKey, str] = {}
        self.configs = RecentConfigs()

    def forget(self, key: ObjectKey) -> None:
        self._last_event.pop(key, None)
        self._polls.pop(key, None)
        self._passwords_requested.pop(key, None)

    async def reconcile(self, key: ObjectKey, body: Mapping[str, Any]) -> Result:
        work = _Pass(key, body)
        try:
            result = await self._reconcile(work)
        except NotReady as progress:
            result = self._in_progress(work, progress)
        except (ProviderError, ProviderConfigError) as error:
            result = await self._failed(work, error)
        except NamespaceTerminating as refused:
            # Namespace deletion under way: the API server refuses every create in it (a deleted
            # connection Secret cannot come back) until the namespace controller deletes this
            # object too; that deletion is the next event. Nothing to retry before it.
            log.info("%s: %s; waiting for the object's own deletion", key, refused)
            result = Result()
        except (NotFound, Conflict) as error:
            # Deleted or written by someone else while this pass ran: one line, and a retry
            # reads the new state (the object's own deletion drops the key from the queue).
            log.info("%s: %s; retrying", key, error)
            return Result(error=error)
        except KubeError as error:
            result = await self._failed(work, UnexpectedError(str(error)))
        except Exception as error:  # a bug, or an answer nobody foresaw: still the user's to see
            log.exception("unexpected error reconciling %s", key)
            result = await self._failed(work, UnexpectedError(f"unexpected error: {type(error).__name__}: {error}"))
        if not work.done:
            try:
                await self._finish(work)
            except (NotFound, Conflict) as error:
                log.info("%s: status not written: %s", key, error)
        return result

    async def _finish(self, work: _Pass) -> None:
        await self._write_status(work)
        for event in work.pending_events:
            await self._event(work, *event)

    async def connect(self, kind: Kind, body: Mapping[str, Any]) -> Connected:
        """Provider, client and settings for an object's provider config, resolved again after a
        few seconds so a rotated credential or a changed endpoint takes effect without a restart."""
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        settings = await self.configs.resolve(self.kube, body, self.controller_namespace, protect=not deleting)
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

    async def _reconcile(self, work: _Pass) -> Result:
        if work.annotations.get(ANNOTATION_PAUSED) == "true":
            # No cloud call at all, deletion included: a paused object is left exactly as it is.
            work.conditions.append(cond.Condition(api.SYNCED, False, api.PAUSED, PAUSED_MESSAGE))
            work.spec_applied = False
            return Result()
        provider, client, settings = await self.connect(work.key.kind, work.body)
        work.resource = self.resource_for(work.key.kind, work.body, settings)
        if work.body["metadata"].get("deletionTimestamp"):
            return await self._finalize(work, client)
        problems = provider.validate(work.resource)
        if problems:
            raise InvalidSpec("; ".join(problems))
        await self._ensure_finalizer(work)
        if _observe_only(work.body):
            return await self._observe_only(work, client)
        if work.key.kind is Kind.DATABASE:
            work.secret = await self.secrets.ensure_password(work.owner)
        else:
            # Before any create: a bucket whose Secret name is taken would exist in the cloud
            # with nowhere to publish it (a Database makes the same check storing its password).
            work.secret = await self.secrets.read(work.owner)
        observation = await client.observe(work.resource)
        if observation is None:
            observation = await self._absent(work, client)
            if observation is None:
                return self._creating(work, None) if not work.conditions else Result()
        self._check_owner(work, observation)
        if not observation.ready:
            if work.password_set_by_create and work.password is not None and not work.password.applied:
                # An RDS instance takes minutes to become ready; a later pass would not know this
                # create set the password and would send it again (a needless credentials reset).
                work.secret = await self.secrets.mark_password(work.owner, work.secret, conn.PASSWORD_APPLIED)
            return self._creating(work, observation)
        if _correctable(observation) and self._should_update(work):
            settled = await self._correct(work, client, observation)
            if settled is None:
                return Result(requeue_after=self.timing.poll_min)
            observation = settled
        self._assess_drift(work, observation)
        if work.key.kind is Kind.DATABASE:
            assert isinstance(client, DatabaseClient)  # connect refuses any other Database client
            await self._ensure_password_applied(work, client, observation)
        await self._write_connection_secret(work, observation)
        self._polls.pop(work.key, None)
        work.at_provider = self._at_provider(work, observation)
        work.conditions += [
            cond.Condition(api.READY, True, api.AVAILABLE, observation.message),
            cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS),
        ]
        if work.password is not None and work.password.rotation != work.annotations.get(ANNOTATION_ROTATE_PASSWORD, ""):
            # A rotation asked for while another was applied: it starts now that one is published.
            return Result(requeue_after=self.timing.poll_min)
        # A usable resource the cloud is working on (maintenance) is looked at again until the
        # note is gone, so Ready does not keep saying it afterwards.
        return Result(requeue_after=self.timing.poll_max) if observation.message else Result()

    async def _observe_only(self, work: _Pass, client: ExternalClient) -> Result:
        """ManagementPolicy ObserveOnly: read and report, never a cloud write (no create, update,
        tag, password or delete), and no connection Secret."""
        assert work.resource is not None
        observation = await client.observe(work.resource)
        if observation is None:
            work.conditions += [
                cond.Condition(api.READY, False, api.UNAVAILABLE, f"{work.resource.external_name} does not exist"),
                cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS, OBSERVE_ONLY_MESSAGE),
                drift_policy.missing(work.resource.external_name),
            ]
            return Result()
        work.at_provider = self._at_provider(work, observation)
        self._assess_drift(work, observation, policy=DriftPolicy.REPORT)
        ready = cond.Condition(api.READY, True, api.AVAILABLE, observation.message)
        if not observation.ready:
            message = observation.message or f"cloud state: {observation.state}"
            ready = cond.Condition(api.READY, False, api.UNAVAILABLE, message)
        work.conditions += [ready, cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS, OBSERVE_ONLY_MESSAGE)]
        return Result()

    async def assess_sweep(self, key: ObjectKey, body: Mapping[str, Any], observation: Observation | None) -> bool:
        """Judge one object against a batched observation from a drift sweep.

        Writes InSync / status.drift only when they change (a steady sweep writes nothing) and
        posts one Warning event per newly seen drift. Returns True when the object needs a full
        reconcile: to correct drift, to recreate a missing resource, or because its state moved.
        """
        work = _Pass(key, body, guard_version=body["metadata"].get("resourceVersion"))
        policy = DriftPolicy.REPORT if _observe_only(body) else policy_of(body, self.default_drift_policy)
        if observation is None:
            if policy is not DriftPolicy.REPORT:
                return True
            await self._report_missing(work)
        elif not _observe_only(body) and (
            not observation.ready
            or observation.owner is None
            or observation.owner.uid != work.uid
            or _note_changed(work, observation)
        ):
            return True
        elif self._applying_spec(work):
            # A spec edit the cloud has not taken yet (RDS refuses a storage change for hours after
            # the previous one) is the reconcile's to finish, not drift behind kumo's back.
            return True
        else:
            self._assess_drift(work, observation, policy=policy)
        if work.conditions:
            await self._finish(work)
        return observation is not None and bool(_correctable(observation)) and policy is DriftPolicy.CORRECT

    # ------------------------------------------------------------------ steps

    async def _ensure_finalizer(self, work: _Pass) -> None:
        finalizers = list(work.body["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            await self.kube.add_finalizer(work.key, finalizers, FINALIZER)

    async def _absent(self, work: _Pass, client: ExternalClient) -> Observation | None:
        """Nothing in the cloud under our name: create it, unless it existed before and the
        policy is Report (then it is reported Missing and left alone)."""
        assert work.resource is not None
        existed = bool((work.status.get("atProvider") or {}).get("externalName"))
        if existed:
            if self._policy(work) is DriftPolicy.REPORT and not self._spec_changed(work):
                await self._report_missing(work)
                return None
            await self._event(work, WARNING, EVENT_MISSING, f"{work.resource.external_name} was deleted outside kumo")
        password = work.password.value if work.password else None
        creation = await client.create(work.resource, password)
        if work.password is not None:
            await self._note_password_after_create(work, creation)
        verb = "Recreating" if existed else "Creating"
        message = f"{verb} {work.key.kind.lower()} {creation.external_name} (state: {creation.state})"
        await self._event(work, NORMAL, EVENT_CREATED, message)
        if creation.observation is not None:
            return creation.observation  # the create's own answer: no second read
        # Many resources are usable at once (buckets, emulators); one look saves a requeue.
        return await client.observe(work.resource)

    async def _report_missing(self, work: _Pass) -> None:
        external = (work.status.get("atProvider") or {}).get("externalName", "")
        work.conditions += [
            cond.Condition(api.READY, False, api.UNAVAILABLE, f"{external} no longer exists in the cloud"),
            drift_policy.missing(external),
        ]
        await self._event(work, WARNING, EVENT_MISSING, f"{external} was deleted outside kumo (driftPolicy Report)")

    def _policy(self, work: _Pass) -> DriftPolicy:
        return policy_of(work.body, self.default_drift_policy)

    def _spec_changed(self, work: _Pass) -> bool:
        """True until a reconcile of the current generation succeeded: the spec itself is news."""
        return work.generation != work.status.get("observedGeneration")

    def _applying_spec(self, work: _Pass) -> bool:
        """A reconcile of the current generation is still under way (not paused, not read-only)."""
        paused = work.annotations.get(ANNOTATION_PAUSED) == "true"
        return self._spec_changed(work) and not paused and not _observe_only(work.body)

    def _should_update(self, work: _Pass) -> bool:
        # A spec edit is the user's intent and is applied under every policy; drift made
        # behind kumo's back is corrected only under Correct.
        return self._spec_changed(work) or self._policy(work) is DriftPolicy.CORRECT

    def _assess_drift(self, work: _Pass, observation: Observation, policy: DriftPolicy | None = None) -> None:
        """InSync and status.drift for an observation that is not being corrected now."""
        if (policy or self._policy(work)) is DriftPolicy.IGNORE:
            work.conditions.append(drift_policy.ignored())
            work.drift = []
            return
        previous = work.status.get("drift") or []
        assessment = drift_policy.assess(observation.drift, previous, cond.now_rfc3339())
        current = cond.find(work.status.get("conditions") or [], api.IN_SYNC)
        if assessment.entries != previous or current is None or current.get("reason") != assessment.condition.reason:
            work.conditions.append(assessment.condition)
            work.drift = assessment.entries
        if assessment.new_fields:
            work.pending_events.append((WARNING, EVENT_DRIFT_DETECTED, assessment.condition.message))

    def _is_ours(self, work: _Pass, observation: Observation) -> bool:
        """Tagged with this object's uid, or untagged but provably this object's own: recorded in
        its status (someone stripped the tags), or carrying the name derived for this very object
        in this cluster (an earlier attempt died between creating it and tagging it: S3 tags in
        a second call)."""
        if observation.owner is not None:
            return observation.owner.uid == work.uid
        if (work.status.get("atProvider") or {}).get("externalName") == observation.external_name:
            return True
        explicit = (work.body.get("spec") or {}).get("externalName")
        meta = work.body["metadata"]
        derived = derived_external_name(meta["namespace"], meta["name"], self.cluster_id)
        return not explicit and observation.external_name == derived

    def _check_owner(self, work: _Pass, observation: Observation) -> None:
        owner = observation.owner
        if self._is_ours(work, observation):
            return  # untagged ones get their tags back with the next update, as drift
        if owner is None and work.annotations.get(ANNOTATION_ADOPT) == "true":
            return  # adoption asked for explicitly: the next update writes our tags
        if owner is None:
            raise OwnershipConflict(
                f"{observation.external_name} already exists and is not managed by kumo; "
                f'to adopt it set spec.externalName and the annotation {ANNOTATION_ADOPT}: "true"'
            )
        raise OwnershipConflict(
            f"{observation.external_name} belongs to {owner.object_ref} (uid {owner.uid}, "
            f"cluster {owner.cluster_id}); refusing to modify it"
        )

    def _creating(self, work: _Pass, observation: Observation | None) -> Result:
        polls = self._polls.get(work.key, 0) + 1
        self._polls[work.key] = polls
        if observation is not None:
            work.at_provider = self._at_provider(work, observation)
        work.spec_applied = False
        state = observation.state if observation else "requested"
        # A resource that was usable and no longer is (stopped, failed, storage full) is not "Creating".
        reason = api.UNAVAILABLE if _was_usable(work) else api.CREATING
        work.conditions += [
            cond.Condition(api.READY, False, reason, (observation and observation.message) or f"cloud state: {state}"),
            cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS),
        ]
        delay = min(self.timing.poll_max, self.timing.poll_min * 2 ** (polls - 1))
        return Result(requeue_after=delay)

    async def _correct(self, work: _Pass, client: ExternalClient, observation: Observation) -> Observation | None:
        """Update the cloud to the spec. Returns a fresh observation when the cloud took the
        change at once and now matches, so the same pass can finish (the usual case for buckets,
        and for the app database a new Cloud SQL instance needs); None means look again later."""
        assert work.resource is not None
        out_of_band = not self._spec_changed(work)
        if out_of_band:
            assessment = drift_policy.assess(observation.drift, work.status.get("drift") or [], cond.now_rfc3339())
            if assessment.new_fields:
                await self._event(work, WARNING, EVENT_DRIFT_DETECTED, assessment.condition.message)
        update = await client.update(work.resource, _correctable(observation))
        fields = ", ".join(update.changed) or "nothing"
        if out_of_band:
            await self._event(work, NORMAL, EVENT_DRIFT_CORRECTED, f"Put back to the spec: {fields}")
        elif _was_usable(work):  # before that, an update is part of creating (a Cloud SQL app database)
            await self._event(work, NORMAL, EVENT_UPDATED, f"Updated {fields}")
        if not update.pending:
            after = await client.observe(work.resource)
            # Never a second update in one pass: what still differs waits for the next look.
            if after is not None and after.ready and not _correctable(after):
                return after
        work.at_provider = self._at_provider(work, observation)
        work.conditions.append(cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS))
        return None

    async def _finalize(self, work: _Pass, client: ExternalClient) -> Result:
        assert work.resource is not None
        finalizers = list(work.body["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            work.done = True
            return Result()
        if work.body.get("spec", {}).get("deletionPolicy", "Delete") == "Retain" or _observe_only(work.body):
            await self._event(
                work,
                NORMAL,
                EVENT_RETAINED,
                f"deletionPolicy is Retain: {work.resource.external_name} is left in the cloud",
            )
        else:
            observation = await client.observe(work.resource)
            if observation is not None and self._is_ours(work, observation):
                deletion = await client.delete(work.resource)
                if not deletion.gone:
                    work.conditions.append(
                        cond.Condition(api.READY, False, api.DELETING, f"cloud state: {deletion.state}")
                    )
                    return Result(requeue_after=self.timing.poll_min * 2)
                await self._event(work, NORMAL, EVENT_DELETED, f"Deleted {work.resource.external_name}")
        await self.secrets.delete(work.owner)
        await self.kube.remove_finalizer(work.key, finalizers, FINALIZER)
        work.done = True
        self.forget(work.key)
        return Result()

    # ------------------------------------------------------------------ the connection Secret

    async def _note_password_after_create(self, work: _Pass, creation: Creation) -> None:
        """After a create, the stored password is on the instance only if the create said so.
        A resource recreated after an out-of-band deletion may need it set again, so an
        'applied' mark that is no longer true is withdrawn in the Secret before anything else."""
        assert work.password is not None
        if creation.password_applied:
            work.password_set_by_create = True
        elif work.password.applied:
            work.secret = await self.secrets.mark_password(work.owner, work.secret, conn.PASSWORD_PENDING)

    async def _ensure_password_applied(self, work: _Pass, client: DatabaseClient, observation: Observation) -> None:
        """Set the stored password on the instance and return once the cloud applied it; until
        then `NotReady` (a quiet wait: the Secret keeps the credential that works)."""
        assert work.password is not None and work.resource is not None
        if work.password.applied:
            return
        if not work.password_set_by_create:
            # The instance was created earlier, or the password changed since: set it. Safe to
            # repeat, so a crash between this call and the Secret write only costs a retry.
            digest = conn.password_digest(work.uid, work.password.value)
            if self._passwords_requested.get(work.key) == digest:
                applied = not observation.password_pending
            else:
                applied = (await client.set_password(work.resource, work.password.value)).applied
                if not applied:
                    self._passwords_requested[work.key] = digest
            if not applied:
                raise NotReady(PASSWORD_APPLYING_MESSAGE)
            self._passwords_requested.pop(work.key, None)
            if _was_usable(work):  # a rotation or a reset is news; the first password is part of creating
                await self._event(work, NORMAL, EVENT_PASSWORD_SET, "Master password set on the instance")
        applied = conn.StoredPassword(work.password.value, conn.PASSWORD_APPLIED, work.password.rotation)
        work.secret = replace(work.secret, password=applied)

    async def _write_connection_secret(self, work: _Pass, observation: Observation) -> None:
        if work.key.kind is Kind.DATABASE:
            assert work.password is not None and work.resource is not None
            data = conn.database_data(
                observation.connection, work.resource.database.master_username, work.password.value
            )
        else:
            data = {k: str(v) for k, v in observation.connection.items()}
        work.published = True
        await self.secrets.publish(work.owner, work.secret, data)

    async def release_config(self, config: ConfigKey) -> None:
        """No object uses this namespaced ProviderConfig any more: drop its in-use protection."""
        self.configs.forget(config)
        await release(self.kube, config[1], config[2])

    # ------------------------------------------------------------------ status, events, errors

    def _at_provider(self, work: _Pass, observation: Observation) -> dict[str, Any]:
        assert work.resource is not None
        facts = {"externalName": observation.external_name, "state": observation.state}
        facts.update(observation.at_provider)
        return facts

    def _in_progress(self, work: _Pass, progress: NotReady) -> Result:
        """The cloud is still busy with an earlier request: poll, no error, no failure count. What
        is waited for shows in Synced (still True: nothing failed), say a change the cloud takes
        only later; the message is the cloud's own, stable between polls, so no write per poll."""
        log.debug("%s waits for the cloud: %s", work.key, progress)
        work.spec_applied = False
        work.conditions.append(cond.Condition(api.SYNCED, True, api.RECONCILE_PENDING, str(progress)))
        polls = self._polls.get(work.key, 0) + 1
        self._polls[work.key] = polls
        return Result(requeue_after=min(self.timing.poll_max, self.timing.poll_min * 2 ** (polls - 1)))

    async def _failed(self, work: _Pass, error: Exception) -> Result:
        terminal = isinstance(error, Terminal | ProviderConfigError)
        reason = api.RECONCILE_ERROR
        if isinstance(error, OwnershipConflict):
            reason = api.OWNED_BY_ANOTHER
        elif isinstance(error, InvalidSpec):
            reason = api.INVALID_SPEC
        message = str(error)
        log.warning("reconcile of %s failed (%s): %s", work.key, reason, message)
        event_reason = EVENT_OWNED_BY_ANOTHER if reason == api.OWNED_BY_ANOTHER else EVENT_RECONCILE_ERROR
        await self._event(work, WARNING, event_reason, message)
        work.conditions.append(cond.Condition(api.SYNCED, False, reason, message))
        if cond.find(work.status.get("conditions") or [], api.READY) is None:
            work.conditions.append(cond.Condition(api.READY, False, api.CREATING, "waiting for a successful reconcile"))
        return Result(error=error, terminal=terminal and not isinstance(error, Retryable))

    async def _write_status(self, work: _Pass) -> None:
        current = work.status
        new: dict[str, Any] = {
            "conditions": cond.merge(current.get("conditions") or [], work.conditions, work.generation),
        }
        synced = not any(c.type == api.SYNCED and not c.status for c in work.conditions)
        applied = synced and work.spec_applied
        new["observedGeneration"] = work.generation if applied else current.get("observedGeneration", 0)
        if work.at_provider is not None:
            new["atProvider"] = work.at_provider
        if work.drift is not None:
            new["drift"] = work.drift
        if (work.published or work.at_provider is not None) and not _observe_only(work.body):
            # Recorded, so a later change of the default name never moves an existing Secret.
            new["connectionSecret"] = connection_secret_name(work.key.kind, work.body)
        if all(current.get(k) == v for k, v in new.items()):
            return
        await self.kube.patch_status(work.key, new, work.guard_version)

    async def _event(self, work: _Pass, event_type: str, reason: str, message: str) -> None:
        if self._last_event.get(work.key) == (reason, message):
            return  # the same news again (a retry): say it once
        self._last_event[work.key] = (reason, message)
        if self.metrics is not None and reason in (EVENT_DRIFT_DETECTED, EVENT_DRIFT_CORRECTED):
            counter = self.metrics.drift_detected if reason == EVENT_DRIFT_DETECTED else self.metrics.drift_corrected
            counter.labels(work.key.kind).inc()
        await self.kube.emit_event(work.key, work.uid, event_type, reason, message)


def _was_usable(work: _Pass) -> bool:
    """Ready was True at some point (Available, or Unavailable since)."""
    ready = cond.find(work.status.get("conditions") or [], api.READY)
    return ready is not None and ready.get("reason") in (api.AVAILABLE, api.UNAVAILABLE)


def _note_changed(work: _Pass, observation: Observation) -> bool:
    """Ready is True but does not carry the cloud's current note on the state (maintenance
    began or ended): a full reconcile rewrites it, so Ready says what is going on without flapping."""
    ready = cond.find(work.status.get("conditions") or [], api.READY)
    return bool(ready and ready.get("status") == "True" and (ready.get("message") or "") != observation.message)


def _observe_only(body: Mapping[str, Any]) -> bool:
    return (body.get("spec") or {}).get("managementPolicy") == "ObserveOnly"


def _correctable(observation: Observation) -> tuple[FieldDrift, ...]:
    return tuple(d for d in observation.drift if d.correctable)
