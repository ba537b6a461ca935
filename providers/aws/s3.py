"""Buckets on Amazon S3: the `ExternalClient` for Bucket objects under provider "aws".

The bucket name is the external name. Managed settings are versioning, the public access block
(all four switches), default encryption, one lifecycle rule (`kumo-expire`) and tags. Settings
that kumo does not manage are left alone: foreign tags and foreign lifecycle rules are read and
written back whenever kumo has to rewrite the whole tag set or rule list.

S3 has no batch read of bucket settings, so observing one bucket costs five reads. A sweep
(`observe_many`) makes fewer: one ListBuckets tells which buckets exist (no HeadBucket), and the
Resource Groups Tagging API's GetResources reads the tags of up to 100 buckets of one region in
one call, so each bucket costs four reads plus a hundredth of one. Where that API is refused or
absent (no `tag:GetResources` permission, an S3-compatible endpoint without it), the sweep reads
each bucket's tags with GetBucketTagging as before. GetResources is eventually consistent with
tag writes (https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/API_GetResources.html):
a tag changed out of band just before a sweep may be seen one sweep later, and a tag kumo just
wrote may still read as before, which at worst rewrites the same tags once.

A bucket lives in one region (`spec.location`, else the provider config's) and every call on it
goes to that region's endpoint: S3 refuses a CreateBucket whose LocationConstraint is not the
endpoint's region and redirects other calls sent elsewhere. ListBuckets, which answers for every
region, goes to the config's region.

`publicAccess: true` removes the bucket's own Block Public Access; an account-level setting (S3
Control) still keeps the bucket private. kumo reads that setting for public buckets and reports
it as drift it cannot correct, instead of calling the bucket public.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.providers.base import (
    BucketSpec,
    Creation,
    Deletion,
    FieldDrift,
    ManagedResource,
    Observation,
    ProviderSettings,
    Retryable,
    Terminal,
    Update,
)
from kumo.providers.fields import FieldTable, Setting
from kumo.providers.options import ProviderOption

from .session import (
    OWNERSHIP_TAG_KEYS,
    PROVIDER_NAME,
    ServiceCaller,
    classify,
    is_kms_key,
    option_problems,
    owner_from_tags,
    ownership_tags,
    tags_to_dict,
    tags_to_list,
)

FIELD_VERSIONING = "versioning"
FIELD_PUBLIC_ACCESS_BLOCK = "publicAccessBlock"
FIELD_ENCRYPTION = "encryption"
FIELD_LIFECYCLE = "lifecycleExpireDays"
FIELD_TAGS = "tags"

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
OPTION_KMS_KEY = "kmsKeyId"
OPTIONS = (ProviderOption(OPTION_KMS_KEY, parameter="KMSMasterKeyID", check=is_kms_key),)
LIFECYCLE_RULE_ID = "kumo-expire"
PUBLIC_ACCESS_BLOCK_SWITCHES = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
US_EAST_1 = "us-east-1"  # the one region CreateBucket takes without a LocationConstraint
STATE_AVAILABLE = "available"
STATE_DELETED = "deleted"
MAX_DELETE_BATCH = 1000  # the DeleteObjects maximum
MAX_CONCURRENT_BUCKETS = 8  # buckets observe_many reads at once (4 or 5 calls each)
TAGGING_SERVICE = "resourcegroupstaggingapi"
S3_ARN_PREFIX = "arn:aws:s3:::"
MAX_TAGGING_ARNS = 100  # GetResources takes at most 100 ARNs in ResourceARNList
MAX_TAGS = 50
REGION_PATTERN = r"[a-z]{2}(-[a-z]+)+-\d"

CODES_NO_BUCKET = ("NoSuchBucket", "404", "NotFound")
CODES_FORBIDDEN = ("403", "Forbidden", "AccessDenied")
CODES_NO_PUBLIC_ACCESS_BLOCK = ("NoSuchPublicAccessBlockConfiguration",)
CODES_NO_ENCRYPTION = ("ServerSideEncryptionConfigurationNotFoundError",)
CODES_NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)
CODES_NO_TAG_SET = ("NoSuchTagSet",)
CODES_NO_ACCOUNT_BLOCK = ("NoSuchPublicAccessBlockConfiguration",)
CODE_ALREADY_OWNED = "BucketAlreadyOwnedByYou"
CODE_NAME_TAKEN = "BucketAlreadyExists"
CODE_NOT_EMPTY = "BucketNotEmpty"
CODE_OWNED_BY_OTHER = "OwnedByAnotherObject"

log = logging.getLogger(__name__)

MESSAGE_NAME_TAKEN = (
    "bucket name {name!r} is taken by another AWS account (bucket names are global); "
    "choose another with spec.externalName"
)
MESSAGE_FORBIDDEN = (
    "bucket {name!r} exists but belongs to another account "
    "(or these credentials may not read it: HeadBucket answered 403); bucket names are global: "
    "choose another with spec.externalName"
)
MESSAGE_NOT_EMPTY = (
    "bucket {name!r} still holds objects; empty it, or set spec.forceDestroy: true "
    "to let kumo delete every object version with the bucket"
)
MESSAGE_OWNED_BY_OTHER = "bucket {name!r} already exists and belongs to {owner}"
MESSAGE_ACCOUNT_BLOCKS_PUBLIC = (
    "the account-level S3 Block Public Access setting overrides spec.publicAccess: S3 keeps the "
    "bucket private until that setting is turned off for the account"
)


# ---------------------------------------------------------------------------- pure mapping


def bucket_region(resource: ManagedResource, settings: ProviderSettings) -> str:
    return resource.bucket.location or settings.region or US_EAST_1


def create_bucket_params(name: str, region: str) -> dict[str, Any]:
    """CreateBucket as S3 takes it when sent to `region`'s endpoint: a LocationConstraint naming
    that region, or none at all for us-east-1 (which refuses its own name)."""
    params: dict[str, Any] = {"Bucket": name}
    if region != US_EAST_1:
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return params


def account_blocks_public(block: Mapping[str, Any] | None) -> bool:
    """Whether an account-level Block Public Access answer keeps public buckets private."""
    config = (block or {}).get("PublicAccessBlockConfiguration") or {}
    return any(config.get(switch) for switch in PUBLIC_ACCESS_BLOCK_SWITCHES)


def desired_encryption(spec: BucketSpec) -> str | None:
    if not spec.encryption:
        return None
    return SSE_KMS if spec.provider_options.get(OPTION_KMS_KEY) else SSE_S3


def desired_settings(resource: ManagedResource) -> dict[str, Any]:
    """The managed settings the spec renders to, keyed by portable field name."""
    return SETTINGS.desired(resource)


@dataclass(frozen=True)
class BucketReads:
    """The five setting reads of one bucket, as S3 answered them (None: not configured)."""

    versioning: Mapping[str, Any]
    public_access_block: Mapping[str, Any] | None
    encryption: Mapping[str, Any] | None
    lifecycle: Mapping[str, Any] | None
    tagging: Mapping[str, Any] | None

    @property
    def tags(self) -> dict[str, str]:
        return tags_to_dict((self.tagging or {}).get("TagSet"))

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list((self.lifecycle or {}).get("Rules") or [])

    @property
    def blocks_public_access(self) -> bool:
        block = (self.public_access_block or {}).get("PublicAccessBlockConfiguration") or {}
        return all(block.get(switch) for switch in PUBLIC_ACCESS_BLOCK_SWITCHES)

    def settings(self) -> dict[str, Any]:
        """The managed settings in the portable vocabulary."""
        return SETTINGS.read(self)


def _encryption_algorithm(encryption: Mapping[str, Any] | None) -> str | None:
    rules = ((encryption or {}).get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []
    for rule in rules:
        algorithm = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
        if algorithm:
            return str(algorithm)
    return None


def _expire_days(rules: list[dict[str, Any]]) -> int | None:
    for rule in rules:
        if rule.get("ID") == LIFECYCLE_RULE_ID and rule.get("Status") == "Enabled":
            days = (rule.get("Expiration") or {}).get("Days")
            return int(days) if days is not None else None
    return None


def bucket_drift(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> tuple[FieldDrift, ...]:
    """Drift of one bucket (see `SETTINGS`)."""
    return SETTINGS.drift(desired, actual)


def encryption_matches(desired: str | None, actual: str | None) -> bool:
    """Since January 2023 S3 encrypts every bucket with SSE-S3 and that cannot be switched off, so
    "no encryption" is satisfied by AES256 (real S3 answers AES256 after DeleteBucketEncryption;
    emulators answer "not configured")."""
    return desired == actual or (desired is None and actual == SSE_S3)


def lifecycle_rules(current: list[dict[str, Any]], expire_days: int | None) -> list[dict[str, Any]]:
    """The bucket's rule list with kumo's rule replaced (or removed); other rules are kept."""
    rules = [rule for rule in current if rule.get("ID") != LIFECYCLE_RULE_ID]
    if expire_days is not None:
        rules.append(
            {
                "ID": LIFECYCLE_RULE_ID,
                "Status": "Enabled",
                "Filter": {},  # the whole bucket
                "Expiration": {"Days": expire_days},
            }
        )
    return rules


def encryption_configuration(spec: BucketSpec) -> dict[str, Any]:
    algorithm = desired_encryption(spec)
    default: dict[str, Any] = {"SSEAlgorithm": algorithm}
    if algorithm == SSE_KMS:
        default["KMSMasterKeyID"] = spec.provider_options[OPTION_KMS_KEY]
    # Bucket keys cut KMS request costs by orders of magnitude; SSE-S3 ignores the flag.
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": algorithm == SSE_KMS}]}


def connection_details(name: str, region: str, endpoint_override: str) -> dict[str, str]:
    return {
        "bucket": name,
        "region": region,
        "endpoint": endpoint_override or f"https://s3.{region}.amazonaws.com",
        "url": f"s3://{name}",
    }


def validate_bucket(spec: BucketSpec) -> list[str]:
    """Problems only S3 can judge, each naming its field."""
    problems = option_problems(spec.provider_options, OPTIONS)
    if spec.provider_options.get(OPTION_KMS_KEY) and not spec.encryption:
        problems.append(f"spec.providerOptions.{OPTION_KMS_KEY}: set, but spec.encryption is false")
    if spec.location and not re.fullmatch(REGION_PATTERN, spec.location):
        problems.append(f"spec.location: {spec.location!r} is not an AWS region such as eu-west-1")
    if spec.lifecycle_expire_days is not None and spec.lifecycle_expire_days < 1:
        problems.append("spec.lifecycle.expireAfterDays: S3 expires objects after 1 day at the soonest")
    return problems + _label_problems(spec.labels)


def _label_problems(labels: Mapping[str, str]) -> list[str]:
    problems = []
    room = MAX_TAGS - len(OWNERSHIP_TAG_KEYS)
    if len(labels) > room:
        problems.append(f"spec.labels: S3 allows {room} labels next to kumo's ownership tags")
    for key, value in labels.items():
        if key.startswith(("kumo.dev/", "aws:")):
            problems.append(f"spec.labels.{key}: the kumo.dev/ and aws: prefixes are reserved")
        elif not 1 <= len(key) <= 128 or len(str(value)) > 256:
            problems.append(f"spec.labels.{key}: S3 tag keys hold 1-128 characters, values 256")
    return problems


# ---------------------------------------------------------------------------- managed settings


# Writes one managed setting through the bucket region's caller; `creating`: the bucket is brand
# new, so it holds nothing foreign (tags, lifecycle rules) to read first and keep.
Writer = Callable[[ServiceCaller, ManagedResource, Any, bool], Awaitable[None]]


async def current_tags(s3: ServiceCaller, name: str) -> dict[str, str]:
    tagging = await s3.find("GetBucketTagging", missing=CODES_NO_TAG_SET, Bucket=name)
    return tags_to_dict((tagging or {}).get("TagSet"))


async def write_public_access_block(s3: ServiceCaller, resource: ManagedResource, block: Any, creating: bool) -> None:
    name = resource.external_name
    if block:
        config = dict.fromkeys(PUBLIC_ACCESS_BLOCK_SWITCHES, True)
        await s3.call("PutPublicAccessBlock", Bucket=name, PublicAccessBlockConfiguration=config)
    else:
        await s3.call("DeletePublicAccessBlock", Bucket=name)


async def write_encryption(s3: ServiceCaller, resource: ManagedResource, algorithm: Any, creating: bool) -> None:
    name = resource.external_name
    if algorithm is None:
        await s3.call("DeleteBucketEncryption", Bucket=name)
        return
    config = encryption_configuration(resource.bucket)
    await s3.call("PutBucketEncryption", Bucket=name, ServerSideEncryptionConfiguration=config)


async def write_versioning(s3: ServiceCaller, resource: ManagedResource, enabled: Any, creating: bool) -> None:
    status = "Enabled" if enabled else "Suspended"
    await s3.call("PutBucketVersioning", Bucket=resource.external_name, VersioningConfiguration={"Status": status})


async def write_lifecycle(s3: ServiceCaller, resource: ManagedResource, days: Any, creating: bool) -> None:
    name = resource.external_name
    current: list[dict[str, Any]] = []
    if not creating:  # keep rules someone else added
        found = await s3.find("GetBucketLifecycleConfiguration", missing=CODES_NO_LIFECYCLE, Bucket=name)
        current = list((found or {}).get("Rules") or [])
    rules = lifecycle_rules(current, days)
    if rules:
        await s3.call("PutBucketLifecycleConfiguration", Bucket=name, LifecycleConfiguration={"Rules": rules})
    else:
        await s3.call("DeleteBucketLifecycle", Bucket=name)


async def write_tags(s3: ServiceCaller, resource: ManagedResource, tags: Any, creating: bool) -> None:
    # PutBucketTagging replaces the whole set: merge into what is there so foreign tags stay.
    name = resource.external_name
    current = {} if creating else await current_tags(s3, name)
    merged = {**current, **tags}
    await s3.call("PutBucketTagging", Bucket=name, Tagging={"TagSet": tags_to_list(merged)})


# The managed settings, read from a bucket's five reads and each written by its own call, in the
# order `Update.changed` lists them. `initial` is what Amazon S3 gives every new bucket, so a create
# writes only what the spec wants otherwise: since 5 January 2023 SSE-S3 default encryption
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-encryption-faq.html), since April
# 2023 all four Block Public Access switches on
# (https://aws.amazon.com/about-aws/whats-new/2022/12/amazon-s3-automatically-enable-block-public-access-disable-access-control-lists-buckets-april-2023/,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/create-bucket-overview.html), no
# versioning, no lifecycle rule. A new bucket is therefore never open, even for the moment before
# kumo's first write. An S3-compatible store with other defaults shows them as drift at the first
# sweep, which puts them right.
SETTINGS: FieldTable[BucketReads, Writer] = FieldTable(
    Setting(
        FIELD_PUBLIC_ACCESS_BLOCK,
        lambda resource: not resource.bucket.public_access,
        lambda reads: reads.blocks_public_access,
        write_public_access_block,
        initial=True,
    ),
    Setting(
        FIELD_ENCRYPTION,
        lambda resource: desired_encryption(resource.bucket),
        lambda reads: _encryption_algorithm(reads.encryption),
        write_encryption,
        matches=encryption_matches,
        initial=SSE_S3,
    ),
    Setting(
        FIELD_VERSIONING,
        lambda resource: resource.bucket.versioning,
        lambda reads: reads.versioning.get("Status") == "Enabled",
        write_versioning,
        initial=False,  # GetBucketVersioning answers no Status until versioning is first set
    ),
    Setting(
        FIELD_LIFECYCLE,
        lambda resource: resource.bucket.lifecycle_expire_days,
        lambda reads: _expire_days(reads.rules),
        write_lifecycle,
        initial=None,
    ),
    Setting(
        FIELD_TAGS,
        lambda resource: {**resource.bucket.labels, **ownership_tags(resource.owner)},
        lambda reads: reads.tags,
        write_tags,
    ),
)


async def _known(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """An answer already in hand, in place of a call."""
    return answer


async def _tagged_buckets(tagging: ServiceCaller, names: list[str]) -> dict[str, list[dict[str, str]]]:
    """Bucket name -> tag list of those of `names` that have tags, from GetResources with their
    ARNs (at most 100). AWS answers an ARN list in one page; an emulator may page it anyway, and
    a page token is then sent alone, as the API requires."""
    found: dict[str, list[dict[str, str]]] = {}
    params: dict[str, Any] = {"ResourceARNList": [f"{S3_ARN_PREFIX}{name}" for name in names]}
    while True:
        page = await tagging.call("GetResources", **params)
        for mapping in page.get("ResourceTagMappingList") or []:
            arn = str(mapping.get("ResourceARN", ""))
            if arn.startswith(S3_ARN_PREFIX):
                found[arn[len(S3_ARN_PREFIX) :]] = list(mapping.get("Tags") or [])
        token = page.get("PaginationToken") or ""
        if not token:
            return found
        params = {"PaginationToken": token}


# ---------------------------------------------------------------------------- the client

# A caller for (AWS service, region), sharing the provider config's credentials and endpoints.
RegionalCallers = Callable[[str, str], ServiceCaller]


class S3Client:
    """The Bucket client for one provider config (see `ExternalClient` for the contract)."""

    def __init__(self, callers: RegionalCallers, settings: ProviderSettings) -> None:
        self._callers = callers
        self.settings = settings
        self.home_region = settings.region or US_EAST_1
        # The account-level Block Public Access, read at most once per client (one sweep).
        self._account_block: asyncio.Task[bool] | None = None

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        return desired_settings(resource)

    def s3(self, region: str) -> ServiceCaller:
        """The S3 caller for one region's endpoint."""
        return self._callers("s3", region)

    async def observe(self, resource: ManagedResource) -> Observation | None:
        name = resource.external_name
        try:
            s3 = self.s3(bucket_region(resource, self.settings))
            head = await s3.find("HeadBucket", missing=CODES_NO_BUCKET, Bucket=name)
        except Terminal as error:
            if error.code in CODES_FORBIDDEN:
                raise Terminal(MESSAGE_FORBIDDEN.format(name=name), code=error.code) from None
            raise
        if head is None:
            return None
        return await self._observe_existing(resource, str(head.get("BucketRegion") or ""))

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        # S3 has no batch read of bucket settings: one listing says which buckets exist, one
        # GetResources per 100 buckets reads their tags, then each existing bucket costs its
        # other four setting reads (bounded concurrency).
        existing = await self._list_buckets()
        managed = [r for r in resources if r.external_name in existing]
        tags = await self._batch_tags({r.external_name: existing[r.external_name] for r in managed})
        limit = asyncio.Semaphore(MAX_CONCURRENT_BUCKETS)

        async def observe_one(resource: ManagedResource) -> Observation | None:
            name = resource.external_name
            async with limit:
                return await self._observe_existing(resource, existing[name], tagging=tags.get(name))

        observed = await asyncio.gather(*(observe_one(r) for r in managed))
        return {obs.external_name: obs for obs in observed if obs is not None}

    async def create(self, resource: ManagedResource, password: str | None = None) -> Creation:
        name = resource.external_name
        region = bucket_region(resource, self.settings)
        s3 = self.s3(region)
        desired = self.desired(resource)
        new = await self._create_bucket(s3, resource, region)
        # A new bucket has S3's defaults (SETTINGS' `initial`): only what the spec wants otherwise
        # is written. One an earlier attempt created may hold some settings of that attempt
        # (perhaps of an older spec): every one is set, as on any existing bucket.
        fields = tuple(row.name for row in SETTINGS.written_on_create(desired)) if new else tuple(desired)
        try:
            await self._apply(s3, resource, fields, creating=new)
        except Terminal as error:
            if error.code in CODES_NO_BUCKET:
                # A just-created bucket may take a moment to be visible to every endpoint.
                raise Retryable(str(error), code=error.code) from None
            raise
        # Every managed setting is now as desired (written, or a new bucket's default) and S3 reads
        # are consistent after writes: the bucket is known without the six reads an observe would
        # make (the next sweep reads it).
        withheld = await self._public_access_withheld(desired)
        described = self._described(resource, desired, region, public_withheld=withheld)
        return Creation(name, STATE_AVAILABLE, observation=described)

    async def _create_bucket(self, s3: ServiceCaller, resource: ManagedResource, region: str) -> bool:
        """CreateBucket: True when it made the bucket, False when the bucket was ours already (an
        earlier attempt made it)."""
        name = resource.external_name
        try:
            await s3.call("CreateBucket", **create_bucket_params(name, region))
        except Terminal as error:
            if error.code == CODE_NAME_TAKEN:
                raise Terminal(MESSAGE_NAME_TAKEN.format(name=name), code=error.code) from None
            if error.code != CODE_ALREADY_OWNED:
                raise
            await self._refuse_foreign(s3, resource)
            return False
        return True

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        fields = {entry.field for entry in drift}
        changed = tuple(row.name for row in SETTINGS.selected(fields))
        await self._apply(self.s3(bucket_region(resource, self.settings)), resource, changed, creating=False)
        return Update(changed=changed)

    async def delete(self, resource: ManagedResource) -> Deletion:
        name = resource.external_name
        s3 = self.s3(bucket_region(resource, self.settings))
        clear = self._empty if resource.bucket.force_destroy else self._refuse_if_not_empty
        if not await clear(s3, name):
            return Deletion(gone=True, state=STATE_DELETED)  # gone before we got to it
        try:
            await s3.find("DeleteBucket", missing=CODES_NO_BUCKET, Bucket=name)
        except Terminal as error:
            if error.code != CODE_NOT_EMPTY:
                raise
            # Objects arrived since the listing: with forceDestroy, the next attempt empties again.
            message = MESSAGE_NOT_EMPTY.format(name=name)
            kind = Retryable if resource.bucket.force_destroy else Terminal
            raise kind(message, code=CODE_NOT_EMPTY) from None
        return Deletion(gone=True, state=STATE_DELETED)

    # ------------------------------------------------------------------------ reading

    async def _list_buckets(self) -> dict[str, str]:
        """Bucket name -> region ("" when the listing does not say) of every bucket we see."""
        buckets: dict[str, str] = {}
        token = ""
        s3 = self.s3(self.home_region)  # ListBuckets answers for every region from any of them
        while True:
            page = await s3.call("ListBuckets", **({"ContinuationToken": token} if token else {}))
            for bucket in page.get("Buckets", []):
                buckets[bucket["Name"]] = str(bucket.get("BucketRegion") or "")
            token = page.get("ContinuationToken") or ""
            if not token:
                return buckets

    async def _batch_tags(self, regions: Mapping[str, str]) -> dict[str, Mapping[str, Any]]:
        """The tags of the named buckets (name -> region), as GetBucketTagging's answer
        ({"TagSet": [...]}), read with GetResources, one call per 100 buckets of a region (the
        API answers for its own region only). A bucket without tags is absent from GetResources'
        answer and gets an empty set. Empty when the API cannot be used: then every bucket's
        tags are read on their own."""
        by_region: dict[str, list[str]] = {}
        for name, region in regions.items():
            by_region.setdefault(region or self.home_region, []).append(name)
        tags: dict[str, Mapping[str, Any]] = {}
        try:
            for region, names in by_region.items():
                tagging = self._callers(TAGGING_SERVICE, region)
                for start in range(0, len(names), MAX_TAGGING_ARNS):
                    chunk = names[start : start + MAX_TAGGING_ARNS]
                    found = await _tagged_buckets(tagging, chunk)
                    tags.update({name: {"TagSet": found.get(name, [])} for name in chunk})
        except (Retryable, Terminal) as error:
            log.info("GetResources unavailable (%s): reading each bucket's tags instead", error)
            return {}
        return tags

    async def _observe_existing(
        self, resource: ManagedResource, region: str, *, tagging: Mapping[str, Any] | None = None
    ) -> Observation | None:
        # The region S3 named (HeadBucket, ListBuckets) wins: a bucket created before the config's
        # region changed stays where it is.
        region = region or bucket_region(resource, self.settings)
        reads = await self._read(self.s3(region), resource.external_name, tagging=tagging)
        if reads is None:
            return None  # deleted between the listing and the reads
        settings = reads.settings()
        withheld = await self._public_access_withheld(settings)
        return self._described(resource, settings, region, public_withheld=withheld)

    async def _read(
        self, s3: ServiceCaller, name: str, *, tagging: Mapping[str, Any] | None = None
    ) -> BucketReads | None:
        """The bucket's setting reads; `tagging`, when a batch read already has its tags, saves
        the GetBucketTagging."""
        tags_read = (
            _known(tagging)
            if tagging is not None
            else s3.find("GetBucketTagging", missing=CODES_NO_TAG_SET, Bucket=name)
        )
        try:
            versioning, block, encryption, lifecycle, tagging = await asyncio.gather(
                s3.call("GetBucketVersioning", Bucket=name),
                s3.find("GetPublicAccessBlock", missing=CODES_NO_PUBLIC_ACCESS_BLOCK, Bucket=name),
                s3.find("GetBucketEncryption", missing=CODES_NO_ENCRYPTION, Bucket=name),
                s3.find("GetBucketLifecycleConfiguration", missing=CODES_NO_LIFECYCLE, Bucket=name),
                tags_read,
            )
        except Terminal as error:
            if error.code in CODES_NO_BUCKET:
                return None
            raise
        return BucketReads(versioning, block, encryption, lifecycle, tagging)

    async def _public_access_withheld(self, settings: Mapping[str, Any]) -> bool:
        """Whether a bucket without its own Block Public Access is still blocked by the
        account-level setting (read only for such buckets: public ones are rare)."""
        if settings[FIELD_PUBLIC_ACCESS_BLOCK]:
            return False
        if self._account_block is None:
            self._account_block = asyncio.ensure_future(self._account_blocks_public())
        return await asyncio.shield(self._account_block)

    async def _account_blocks_public(self) -> bool:
        try:
            identity = await self._callers("sts", self.home_region).call("GetCallerIdentity")
            account = str(identity.get("Account") or "")
            s3control = self._callers("s3control", self.home_region)
            block = await s3control.find("GetPublicAccessBlock", missing=CODES_NO_ACCOUNT_BLOCK, AccountId=account)
        except Terminal as error:
            if error.code in CODES_FORBIDDEN:
                return False  # not allowed to read it (s3:GetAccountPublicAccessBlock): assume off
            raise
        return account_blocks_public(block)

    def _described(
        self, resource: ManagedResource, actual: Mapping[str, Any], region: str, *, public_withheld: bool = False
    ) -> Observation:
        """An existing bucket with these managed settings (its tags among them). With
        `public_withheld`, public access is in effect blocked: reported as drift kumo cannot
        correct (nothing on the bucket to change), saying why."""
        name = resource.external_name
        drift = bucket_drift(self.desired(resource), actual)
        if public_withheld:
            actual = {**actual, FIELD_PUBLIC_ACCESS_BLOCK: True}
            withheld = FieldDrift(FIELD_PUBLIC_ACCESS_BLOCK, False, True, False, MESSAGE_ACCOUNT_BLOCKS_PUBLIC)
            drift = (*drift, withheld)
        return Observation(
            external_name=name,
            state=STATE_AVAILABLE,
            ready=True,
            owner=owner_from_tags(actual[FIELD_TAGS]),
            settings=actual,
            drift=drift,
            connection=connection_details(name, region, self.settings.endpoints.get("s3", "")),
            at_provider={
                "externalName": name,
                "provider": PROVIDER_NAME,
                "region": region,
                "arn": f"{S3_ARN_PREFIX}{name}",
            },
        )

    async def _refuse_foreign(self, s3: ServiceCaller, resource: ManagedResource) -> None:
        """Stop a create from re-tagging a bucket of ours that another object owns."""
        owner = owner_from_tags(await current_tags(s3, resource.external_name))
        if owner is not None and owner.uid != resource.owner.uid:
            message = MESSAGE_OWNED_BY_OTHER.format(name=resource.external_name, owner=owner.object_ref)
            raise Terminal(message, code=CODE_OWNED_BY_OTHER)

    # ------------------------------------------------------------------------ writing

    async def _apply(
        self, s3: ServiceCaller, resource: ManagedResource, fields: tuple[str, ...], *, creating: bool
    ) -> None:
        # One call after another: S3 answers OperationAborted to concurrent changes of a bucket.
        desired = self.desired(resource)
        for row in SETTINGS.selected(fields):
            await row.patch(s3, resource, desired[row.name], creating)

    # ------------------------------------------------------------------------ deleting

    async def _refuse_if_not_empty(self, s3: ServiceCaller, name: str) -> bool:
        """`Terminal` BucketNotEmpty when the bucket holds anything; False when it is gone."""
        page = await s3.find("ListObjectVersions", missing=CODES_NO_BUCKET, Bucket=name, MaxKeys=1)
        if page is None:
            return False
        if page.get("Versions") or page.get("DeleteMarkers"):
            raise Terminal(MESSAGE_NOT_EMPTY.format(name=name), code=CODE_NOT_EMPTY)
        return True

    async def _empty(self, s3: ServiceCaller, name: str) -> bool:
        """Delete every object version and delete marker, a page at a time; False when the
        bucket is gone. Each round lists from the start again, so an interrupted delete simply
        continues where it stopped."""
        while True:
            page = await s3.find("ListObjectVersions", missing=CODES_NO_BUCKET, Bucket=name, MaxKeys=MAX_DELETE_BATCH)
            if page is None:
                return False
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            if not entries:
                return True
            for start in range(0, len(entries), MAX_DELETE_BATCH):
                await self._delete_batch(s3, name, entries[start : start + MAX_DELETE_BATCH])

    async def _delete_batch(self, s3: ServiceCaller, name: str, entries: list[dict[str, Any]]) -> None:
        objects = [{"Key": entry["Key"], "VersionId": entry["VersionId"]} for entry in entries]
        response = await s3.call("DeleteObjects", Bucket=name, Delete={"Objects": objects, "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            message = (
                f"DeleteObjects failed for {len(errors)} object version(s), "
                f"e.g. {first.get('Key')!r}: {first.get('Message')}"
            )
            raise classify(str(first.get("Code", "")), message)
