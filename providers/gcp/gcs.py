"""Buckets on Cloud Storage: the `ExternalClient` for Bucket objects under provider "gcp".

The bucket name is the external name, in the provider config's project. Managed settings are
Object Versioning, public access prevention (with uniform bucket-level access always on), the
default encryption key, one lifecycle rule (Delete at an age of N days) and the labels. Settings
kumo does not manage are left alone: foreign labels and foreign lifecycle rules are read and
written back whenever kumo rewrites the label map or the rule list.

Creating is one call: buckets.insert carries every setting, as GCS keeps them at insert. A
second metadata write right after it would meet GCS's limit of one bucket metadata update per
second (429 rateLimitExceeded, https://cloud.google.com/storage/quotas), so kumo never sends one:
`UpdatePacer`, shared by every client of a provider, spaces kumo's writes to one bucket by that
second, and a 429 that still comes (another writer) is `Retryable`.

Bucket names are global. A bucket is kumo's only in the provider config's project: a name held by
another project answers insert with 409, and a bucket read by name (callers with access to other
projects can read theirs) counts as present only when the project's own listing holds it. Either
way the Bucket reports the name as taken and nothing is written.

A bucket is read with one buckets.get (projection full), plus one buckets.list of that name when
it does not carry this object's ownership labels; a drift sweep over N buckets costs
ceil(N/1000) buckets.list calls, because a listing carries every bucket's full metadata.

GCS always encrypts at rest: `spec.encryption: false` cannot turn that off; it only means no
customer-managed key, so the encryption setting reads "google-managed" either way.

`spec.providerOptions`: kmsKeyName (projects/P/locations/L/keyRings/R/cryptoKeys/K), the
customer-managed Cloud KMS key new objects are encrypted with.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from kumo.providers.base import (
    BucketSpec,
    Creation,
    Deletion,
    FieldDrift,
    ManagedResource,
    Observation,
    ProviderSettings,
    Terminal,
    Update,
)
from kumo.providers.fields import FieldTable, Setting
from kumo.providers.naming import GOOGLE_LIKE
from kumo.providers.options import ProviderOption

from .session import (
    CALL_TIMEOUT,
    OWNERSHIP_LABEL_KEYS,
    PROVIDER_NAME,
    PageWalker,
    ServiceCaller,
    checked_options,
    is_kms_key,
    option_problems,
    owner_from_labels,
    ownership_labels,
    present_labels,
)

T = TypeVar("T")

FIELD_VERSIONING = "versioning"
FIELD_PUBLIC_ACCESS_PREVENTION = "publicAccessPrevention"
FIELD_ENCRYPTION = "encryption"
FIELD_LIFECYCLE = "lifecycleExpireDays"
FIELD_LABELS = "labels"

PREVENTION_ENFORCED = "enforced"
PREVENTION_INHERITED = "inherited"
PREVENTION_UNSPECIFIED = "unspecified"  # the older name GCS may still report for "inherited"
GOOGLE_MANAGED = "google-managed"
OPTION_KMS_KEY = "kmsKeyName"
OPTIONS = (ProviderOption(OPTION_KMS_KEY, is_kms_key),)
EXPIRE_ACTION = "Delete"

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
STATE_AVAILABLE = "available"  # GCS buckets have no state of their own: they exist or not
STATE_DELETED = "deleted"
BUCKETS_PAGE_SIZE = 1000  # the buckets.list maximum
# "Maximum rate of bucket metadata updates per bucket: One update per second"
# (https://cloud.google.com/storage/quotas); kumo's writes to one bucket keep at least this apart.
UPDATE_INTERVAL = 1.0
OBJECTS_PAGE_SIZE = 1000  # the objects.list maximum
DELETE_BATCH = 100  # the most requests one GCS batch request may carry
MAX_LABELS = 64
# A region (europe-west1), a multi-region (EU, US, ASIA) or a dual-region (NAM4, EUR4).
LOCATION_PATTERN = r"[a-z]+-[a-z]+\d+|[a-z]+\d*"

# Google's reason, or api_core's class name when the answer had no body (the emulator's 404 / 409).
CODES_CONFLICT = ("conflict", "Conflict")
CODES_FORBIDDEN = ("forbidden", "Forbidden")
CODE_NOT_EMPTY = "BucketNotEmpty"
CODE_NAME_TAKEN = "BucketNameTaken"
CODE_OWNED_BY_OTHER = "OwnedByAnotherObject"

MESSAGE_NOT_EMPTY = (
    "bucket {name!r} still holds objects; empty it, or set spec.forceDestroy: true "
    "to let kumo delete every object version with the bucket"
)
MESSAGE_NAME_TAKEN = (
    "bucket name {name!r} is taken by another project than {project!r} (bucket names are global); "
    "choose another with spec.externalName"
)
MESSAGE_OWNED_BY_OTHER = "bucket {name!r} already exists and belongs to {owner}"
MESSAGE_NAME_REFUSED = (
    "spec.externalName: the bucket name {name!r} {reason}, which GCS refuses; set spec.externalName "
    "to another name (unset, the name is derived from the namespace and the object's name)"
)


# ---------------------------------------------------------------------------- pure mapping


def bucket_location(resource: ManagedResource, settings: ProviderSettings) -> str:
    return resource.bucket.location or settings.region


def desired_encryption(spec: BucketSpec) -> str:
    """The KMS key when one is asked for, else Google-managed keys (GCS cannot store unencrypted)."""
    key = spec.provider_options.get(OPTION_KMS_KEY)
    return str(key) if spec.encryption and key else GOOGLE_MANAGED


def is_expire_rule(rule: Mapping[str, Any]) -> bool:
    """kumo's lifecycle rule: Delete, with an age as its only condition."""
    condition = rule.get("condition") or {}
    return (rule.get("action") or {}).get("type") == EXPIRE_ACTION and set(condition) == {"age"}


def _rules(bucket: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((bucket.get("lifecycle") or {}).get("rule") or [])


def expire_days(bucket: Mapping[str, Any]) -> int | None:
    for rule in _rules(bucket):
        if is_expire_rule(rule):
            return int(rule["condition"]["age"])
    return None


def lifecycle_rules(current: Sequence[Mapping[str, Any]], days: int | None) -> list[dict[str, Any]]:
    """The bucket's rule list with kumo's rule replaced (or removed); other rules are kept."""
    rules = [dict(rule) for rule in current if not is_expire_rule(rule)]
    if days is not None:
        rules.append({"action": {"type": EXPIRE_ACTION}, "condition": {"age": days}})
    return rules


def public_access_prevention(bucket: Mapping[str, Any]) -> str:
    prevention = (bucket.get("iamConfiguration") or {}).get("publicAccessPrevention") or PREVENTION_INHERITED
    return PREVENTION_INHERITED if prevention == PREVENTION_UNSPECIFIED else str(prevention)


def _set_public_access_prevention(bucket: Any, prevention: Any) -> None:
    # Sent together: the GCS emulator replaces iamConfiguration as a whole on PATCH.
    iam = bucket.iam_configuration
    iam.uniform_bucket_level_access_enabled = True
    iam.public_access_prevention = prevention


def _set_encryption(bucket: Any, key: Any) -> None:
    bucket.default_kms_key_name = None if key == GOOGLE_MANAGED else key


def _set_versioning(bucket: Any, enabled: Any) -> None:
    bucket.versioning_enabled = enabled


def _set_lifecycle(bucket: Any, rules: Any) -> None:
    bucket.lifecycle_rules = rules


def _set_labels(bucket: Any, labels: Any) -> None:
    bucket.labels = labels


# Sets one value (as `bucket_changes` computed it) on a `storage.Bucket`; insert or patch sends it.
Setter = Callable[[Any, Any], None]
# The managed settings, read from a bucket resource (GCS JSON API). Order: the order
# `Update.changed` lists them in.
SETTINGS: FieldTable[Mapping[str, Any], Setter] = FieldTable(
    Setting(
        FIELD_PUBLIC_ACCESS_PREVENTION,
        lambda resource: PREVENTION_INHERITED if resource.bucket.public_access else PREVENTION_ENFORCED,
        public_access_prevention,
        _set_public_access_prevention,
    ),
    Setting(
        FIELD_ENCRYPTION,
        lambda resource: desired_encryption(resource.bucket),
        lambda bucket: (bucket.get("encryption") or {}).get("defaultKmsKeyName") or GOOGLE_MANAGED,
        _set_encryption,
    ),
    Setting(
        FIELD_VERSIONING,
        lambda resource: resource.bucket.versioning,
        lambda bucket: bool((bucket.get("versioning") or {}).get("enabled")),
        _set_versioning,
    ),
    Setting(FIELD_LIFECYCLE, lambda resource: resource.bucket.lifecycle_expire_days, expire_days, _set_lifecycle),
    Setting(
        FIELD_LABELS,
        lambda resource: {**resource.bucket.labels, **ownership_labels(resource.owner)},
        lambda bucket: present_labels(bucket.get("labels")),
        _set_labels,
    ),
)


def desired_settings(resource: ManagedResource) -> dict[str, Any]:
    """The managed settings the spec renders to, keyed by portable field name."""
    return SETTINGS.desired(resource)


def actual_settings(bucket: Mapping[str, Any]) -> dict[str, Any]:
    """The managed settings in the portable vocabulary, from a bucket resource (GCS JSON API)."""
    return SETTINGS.read(bucket)


def bucket_changes(resource: ManagedResource, fields: Sequence[str], current: Mapping[str, Any]) -> dict[str, Any]:
    """The values to write for the given fields. Labels and lifecycle rules are written as a
    whole, so those someone else added to `current` are carried over; a rule list or default key
    that would stay as it is is left out (a new bucket needs neither)."""
    desired = desired_settings(resource)
    changes = {field: desired[field] for field in fields if field in desired}
    if FIELD_LABELS in changes:
        changes[FIELD_LABELS] = {**present_labels(current.get("labels")), **desired[FIELD_LABELS]}
    if FIELD_LIFECYCLE in changes:
        rules = lifecycle_rules(_rules(current), desired[FIELD_LIFECYCLE])
        changes[FIELD_LIFECYCLE] = rules
        if rules == _rules(current):
            del changes[FIELD_LIFECYCLE]
    if changes.get(FIELD_ENCRYPTION) == actual_settings(current)[FIELD_ENCRYPTION] == GOOGLE_MANAGED:
        del changes[FIELD_ENCRYPTION]
    return changes


def configure(bucket: Any, changes: Mapping[str, Any]) -> None:
    """Set the changes on a `storage.Bucket` (no request yet; insert or patch sends them)."""
    for row in SETTINGS.selected(changes):
        row.patch(bucket, changes[row.name])


def connection_details(name: str, bucket: Mapping[str, Any], endpoint_override: str) -> dict[str, str]:
    return {
        "bucket": name,
        "region": str(bucket.get("location", "")).lower(),
        "endpoint": endpoint_override or DEFAULT_ENDPOINT,
        "url": f"gs://{name}",
    }


def bucket_observation(
    resource: ManagedResource, bucket: Mapping[str, Any], project: str, endpoint_override: str
) -> Observation:
    actual = actual_settings(bucket)
    location = str(bucket.get("location", ""))
    return Observation(
        external_name=resource.external_name,
        state=STATE_AVAILABLE,
        ready=True,
        owner=owner_from_labels(actual[FIELD_LABELS]),
        settings=actual,
        drift=SETTINGS.drift(desired_settings(resource), actual),
        connection=connection_details(resource.external_name, bucket, endpoint_override),
        at_provider={
            "externalName": resource.external_name,
            "provider": PROVIDER_NAME,
            "project": project,
            "location": location,
            "region": location.lower(),
            "storageClass": bucket.get("storageClass", ""),
            "selfLink": bucket.get("selfLink", ""),
            "id": bucket.get("id", ""),
        },
    )


def validate_bucket(spec: BucketSpec) -> list[str]:
    """Problems only GCS can judge, each naming its field."""
    problems = option_problems(spec.provider_options, OPTIONS)
    if spec.provider_options.get(OPTION_KMS_KEY) and not spec.encryption:
        problems.append(f"spec.providerOptions.{OPTION_KMS_KEY}: set, but spec.encryption is false")
    if spec.location and not re.fullmatch(LOCATION_PATTERN, spec.location, re.IGNORECASE):
        problems.append(f"spec.location: {spec.location!r} is not a GCS location such as europe-west1, EU or NAM4")
    room = MAX_LABELS - len(OWNERSHIP_LABEL_KEYS)
    if len(spec.labels) > room:
        problems.append(f"spec.labels: GCS allows {room} labels next to kumo's ownership labels")
    return problems


def bucket_name_problems(name: str) -> list[str]:
    """What GCS would refuse in the bucket name kumo is about to use: a "goog" prefix, "google"
    or a close misspelling (https://cloud.google.com/storage/docs/buckets#naming). A derived
    name never carries them (controller/core/resources.py), so this refuses an explicit
    spec.externalName: the CRD keeps out "goog" and "google", not the misspellings."""
    if name.startswith("goog"):
        return [MESSAGE_NAME_REFUSED.format(name=name, reason='starts with "goog"')]
    if GOOGLE_LIKE.search(name):
        return [MESSAGE_NAME_REFUSED.format(name=name, reason='holds "google" or a close misspelling of it')]
    return []


def resource_of(bucket: Any) -> dict[str, Any]:
    """The bucket's GCS JSON API resource. The storage library keeps it in `_properties` and has
    no public accessor; the documented JSON shape keeps the mapping above plain and testable."""
    return dict(bucket._properties)


# ---------------------------------------------------------------------------- pacing


class UpdatePacer:
    """Keeps kumo's metadata writes to one bucket (insert, patch) `interval` seconds apart.

    Shared by every `GCSClient` of a provider, so that rapid spec edits or a create followed by a
    correction never exceed GCS's rate for one bucket's metadata. A write is timed from when its
    answer came back, which is after GCS counted it. One bucket is reconciled by one worker at a
    time (the work queue holds a key while it is processed), so no lock is needed."""

    MAX_TRACKED = 10_000  # beyond this, entries older than the interval are dropped

    def __init__(
        self,
        interval: float = UPDATE_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._done: dict[str, float] = {}

    async def write(self, name: str, send: Callable[[], Awaitable[T]]) -> T:
        """Await `send()` (one metadata write to bucket `name`) once the interval has passed."""
        wait = self._done.get(name, float("-inf")) + self.interval - self._clock()
        if wait > 0:
            await self._sleep(wait)
        try:
            return await send()
        finally:
            self._done[name] = self._clock()
            if len(self._done) > self.MAX_TRACKED:
                horizon = self._clock() - self.interval
                self._done = {key: done for key, done in self._done.items() if done >= horizon}


# ---------------------------------------------------------------------------- the client


class GCSClient:
    """The Bucket client for one provider config (see `ExternalClient` for the contract)."""

    def __init__(
        self,
        storage: ServiceCaller,
        settings: ProviderSettings,
        *,
        page_size: int = BUCKETS_PAGE_SIZE,
        pacer: UpdatePacer | None = None,
    ):
        self._storage = storage
        self._settings = settings
        self._page_size = page_size
        self._pacer = pacer or UpdatePacer()

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        return desired_settings(resource)

    async def observe(self, resource: ManagedResource) -> Observation | None:
        """The bucket, or None when it does not exist in the provider config's project (a bucket
        of that name in another project is none of this object's business: the insert will say so)."""
        bucket = await self._read(resource.external_name)
        if bucket is None or not await self._in_project(resource, bucket):
            return None
        return self._observation(resource, bucket)

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        wanted = {resource.external_name: resource for resource in resources}
        found: dict[str, Observation] = {}
        project = self._storage.project
        pages = PageWalker(
            lambda client: client.list_buckets(
                page_size=self._page_size, projection="full", project=project, retry=None, timeout=CALL_TIMEOUT
            )
        )
        while wanted and pages.more:
            buckets = await self._storage.call(
                "buckets.list", lambda client: [resource_of(b) for b in pages.next_page(client)]
            )
            for bucket in buckets:
                resource = wanted.pop(str(bucket.get("name", "")), None)
                if resource is not None:
                    found[resource.external_name] = self._observation(resource, bucket)
        return found

    async def create(self, resource: ManagedResource, password: str | None = None) -> Creation:
        """One buckets.insert with every setting. On 409 the bucket is ours from an earlier
        attempt (what differs from the spec shows as drift and is patched by `update`), or
        `Terminal`: the name is another project's, or another object's bucket."""
        name = resource.external_name
        checked_options(resource.bucket.provider_options, OPTIONS)
        try:
            bucket = await self._insert(resource)
        except Terminal as error:
            if error.code not in CODES_CONFLICT:
                raise
            bucket = await self._existing(resource)
        return Creation(name, STATE_AVAILABLE, observation=self._observation(resource, bucket))

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        fields = {entry.field for entry in drift}
        changed = tuple(row.name for row in SETTINGS.selected(fields))
        if changed:
            current = await self._read(resource.external_name) or {}
            await self._patch(resource, changed, current)
        return Update(changed=changed)

    async def delete(self, resource: ManagedResource) -> Deletion:
        name = resource.external_name
        if resource.bucket.force_destroy:
            if not await self._empty(name):
                return Deletion(gone=True, state=STATE_DELETED)
        elif not await self._check_empty(name):
            return Deletion(gone=True, state=STATE_DELETED)
        try:
            await self._storage.find(
                "buckets.delete", lambda client: client.bucket(name).delete(retry=None, timeout=CALL_TIMEOUT)
            )
        except Terminal as error:
            if error.code not in CODES_CONFLICT:
                raise
            # Objects arrived since the listing; the next attempt lists (and, forced, empties) again.
            raise Terminal(MESSAGE_NOT_EMPTY.format(name=name), code=CODE_NOT_EMPTY) from None
        return Deletion(gone=True, state=STATE_DELETED)

    # ------------------------------------------------------------------------ reading and writing

    def _observation(self, resource: ManagedResource, bucket: Mapping[str, Any]) -> Observation:
        return bucket_observation(resource, bucket, self._storage.project, self._storage.endpoint_override)

    async def _read(self, name: str) -> dict[str, Any] | None:
        def read(client: Any) -> dict[str, Any]:
            bucket = client.bucket(name)
            bucket.reload(projection="full", retry=None, timeout=CALL_TIMEOUT)
            return resource_of(bucket)

        return await self._storage.find("buckets.get", read)

    async def _in_project(self, resource: ManagedResource, bucket: Mapping[str, Any]) -> bool:
        """Whether a bucket read by name is in the provider config's project. Tagged with this
        object's uid it is (kumo created it there); otherwise the project's listing decides."""
        owner = owner_from_labels(present_labels(bucket.get("labels")))
        if owner is not None and owner.uid == resource.owner.uid:
            return True
        name = resource.external_name
        project = self._storage.project

        def first_listed(client: Any) -> list[str]:
            # Listings are sorted by name: the name itself comes first among those it prefixes.
            listed = client.list_buckets(max_results=1, prefix=name, project=project, retry=None, timeout=CALL_TIMEOUT)
            return [b.name for b in listed]

        return await self._storage.call("buckets.list", first_listed) == [name]

    async def _insert(self, resource: ManagedResource) -> dict[str, Any]:
        """Create the bucket with every setting; returns it as GCS answered."""
        location = bucket_location(resource, self._settings)
        changes = bucket_changes(resource, SETTINGS.names, {})
        project = self._storage.project

        def insert(client: Any) -> dict[str, Any]:
            bucket = client.bucket(resource.external_name)
            configure(bucket, changes)
            client.create_bucket(bucket, project=project, location=location or None, retry=None, timeout=CALL_TIMEOUT)
            return resource_of(bucket)

        return dict(
            await self._pacer.write(resource.external_name, lambda: self._storage.call("buckets.insert", insert))
        )

    async def _patch(
        self, resource: ManagedResource, fields: Sequence[str], current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Send `fields`; returns the whole bucket as GCS answered the patch."""
        changes = bucket_changes(resource, fields, current)

        def patch(client: Any) -> dict[str, Any]:
            bucket = client.bucket(resource.external_name)  # fresh: only `changes` are sent
            configure(bucket, changes)
            bucket.patch(retry=None, timeout=CALL_TIMEOUT)  # answered with projection=full
            return resource_of(bucket)

        name = resource.external_name
        return dict(await self._pacer.write(name, lambda: self._storage.call("buckets.patch", patch)))

    async def _existing(self, resource: ManagedResource) -> dict[str, Any]:
        """After 409 on insert: the bucket, when it is ours to configure; `Terminal` when another
        project has the name or another object owns the bucket."""
        name = resource.external_name
        try:
            bucket = await self._read(name)
        except Terminal as error:
            if error.code not in CODES_FORBIDDEN:
                raise
            bucket = None  # it exists, in a project these credentials cannot read
        if bucket is None or not await self._in_project(resource, bucket):
            project = self._storage.project
            raise Terminal(MESSAGE_NAME_TAKEN.format(name=name, project=project), code=CODE_NAME_TAKEN)
        owner = owner_from_labels(present_labels(bucket.get("labels")))
        if owner is not None and owner.uid != resource.owner.uid:
            raise Terminal(MESSAGE_OWNED_BY_OTHER.format(name=name, owner=owner.object_ref), code=CODE_OWNED_BY_OTHER)
        return bucket

    # ------------------------------------------------------------------------ deleting

    async def _versions(self, name: str, limit: int) -> list[tuple[str, int]] | None:
        """(name, generation) of up to `limit` object versions, noncurrent ones included; None
        when the bucket is gone."""

        def list_versions(client: Any) -> list[tuple[str, int]]:
            blobs = client.list_blobs(
                name, versions=True, max_results=limit, page_size=limit, retry=None, timeout=CALL_TIMEOUT
            )
            return [(blob.name, blob.generation) for blob in blobs]

        return await self._storage.find("objects.list", list_versions)

    async def _check_empty(self, name: str) -> bool:
        """False when the bucket is gone; `Terminal` BucketNotEmpty when it holds anything."""
        versions = await self._versions(name, 1)
        if versions is None:
            return False
        if versions:
            raise Terminal(MESSAGE_NOT_EMPTY.format(name=name), code=CODE_NOT_EMPTY)
        return True

    async def _empty(self, name: str) -> bool:
        """Delete every object version, a listing page at a time; False when the bucket is gone.
        Each round lists from the start again, so an interrupted delete simply continues."""
        while True:
            versions = await self._versions(name, OBJECTS_PAGE_SIZE)
            if versions is None:
                return False
            if not versions:
                return True
            for start in range(0, len(versions), DELETE_BATCH):
                await self._delete_batch(name, versions[start : start + DELETE_BATCH])

    async def _delete_batch(self, name: str, versions: Sequence[tuple[str, int]]) -> None:
        """One GCS batch request deleting up to 100 object versions (one call for the hooks)."""

        def delete_all(client: Any) -> None:
            bucket = client.bucket(name)
            with client.batch():
                for blob_name, generation in versions:
                    bucket.blob(blob_name, generation=generation).delete(retry=None, timeout=CALL_TIMEOUT)

        # 404: another deleter got there first; the next listing shows what is left.
        await self._storage.find("objects.delete", delete_all)
