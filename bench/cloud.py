"""The bench's own cloud clients, with no Kubernetes and no kumo controller in the way: the floor
of the create scenario, the per-resource polling baseline of the sweep scenario, out-of-band
drift, and clean-up.

They use the same SDKs, client settings and request bodies as kumo's providers (the bodies come
from the providers' pure mapping functions), so the only difference measured is what kumo adds.
Every SDK call is counted per kind: "rds", "s3", "cloudsql", "gcs".
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import google.cloud.storage as storage
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import sqladmin_v1beta4 as sqladmin
from kumo.controller.core.resources import managed_resource
from kumo.providers.aws import rds as aws_rds
from kumo.providers.aws import s3 as aws_s3
from kumo.providers.aws.session import CLIENT_CONFIG, tags_to_list
from kumo.providers.base import Kind, ManagedResource, ProviderSettings
from kumo.providers.gcp import cloudsql as gcp_sql
from kumo.providers.gcp import gcs as gcp_gcs
from kumo.testbed.bed import CRD_DIR
from kumo.testbed.schemadefaults import apply_defaults, crd_schemas

from kumo.api import VERSION

# The four (cloud, kind) pairs, by the short names the results use.
KINDS = {"rds": ("aws", "Database"), "s3": ("aws", "Bucket"), "cloudsql": ("gcp", "Database"), "gcs": ("gcp", "Bucket")}
CALL_TIMEOUT = 30.0


@functools.cache
def _crd_schemas() -> dict[str, Any]:
    """The CRDs' schemas by kind, for the defaults the API server would write into a manifest."""
    return crd_schemas(CRD_DIR, VERSION)


def kind_key(cloud: str, kind: str) -> str:
    return next(key for key, pair in KINDS.items() if pair == (cloud, kind))


@dataclass
class CallCounter:
    """SDK calls by kind and operation, safe to bump from many threads."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, operation: str) -> None:
        with self._lock:
            self.calls[(kind, operation)] += 1

    def by_kind(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (kind, _), n in self.calls.items():
            totals[kind] += n
        return dict(totals)

    def by_operation(self, kind: str) -> dict[str, int]:
        return {op: n for (k, op), n in sorted(self.calls.items()) if k == kind}


class Clouds:
    """SDK clients for the test bed's emulators, built like kumo's providers build theirs."""

    def __init__(self, env: dict[str, Any], gcp_options: dict[str, Any], cluster_id: str, workers: int) -> None:
        aws, gcp = env["aws"], env["gcp"]
        config = CLIENT_CONFIG.merge(Config(max_pool_connections=max(32, 2 * workers)))
        common = {
            "region_name": aws["region"],
            "aws_access_key_id": aws["access_key_id"],
            "aws_secret_access_key": aws["secret_access_key"],
            "endpoint_url": aws["endpoint"],
        }
        self.rds = boto3.client("rds", config=config, **common)
        self.s3 = boto3.client("s3", config=config.merge(Config(s3={"addressing_style": "path"})), **common)
        options: dict[str, Any] = {
            "credentials": AnonymousCredentials(),
            "transport": "rest",
            "client_options": {"api_endpoint": gcp["sqladmin_endpoint"]},
        }
        self.instances = sqladmin.SqlInstancesServiceClient(**options)
        self.users = sqladmin.SqlUsersServiceClient(**options)
        self.databases = sqladmin.SqlDatabasesServiceClient(**options)
        self.operations = sqladmin.SqlOperationsServiceClient(**options)
        self.gcs = storage.Client(
            project=gcp["project"],
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": gcp["storage_endpoint"]},
        )
        self.project = gcp["project"]
        self.gcp_settings = ProviderSettings(
            "gcp", region=gcp["region"], project=gcp["project"], provider_options=gcp_options
        )
        self.aws_region = aws["region"]
        self.cluster_id = cluster_id
        self.counter = CallCounter()

    # ------------------------------------------------------------------ request bodies

    def resource(self, kind: str, manifest: dict[str, Any], namespace: str) -> ManagedResource:
        """kumo's view of a manifest, as if it had been applied (a made-up uid for the tags)."""
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace, "uid": str(uuid.uuid4())}}
        body = apply_defaults(_crd_schemas()[KINDS[kind][1]], body)  # what the API server stores
        defaults = self.gcp_settings.provider_options.get("databases") if kind == "cloudsql" else None
        return managed_resource(Kind(KINDS[kind][1]), body, self.cluster_id, defaults)

    def _aws(self, kind: str, operation: str, call: Callable[..., Any], **params: Any) -> Any:
        """One AWS call, counted, tried again on a 5xx answer like any careful client (moto
        answers 500 with an HTML page when concurrent requests race inside it: see
        docs/performance.md). Every attempt is a call and is counted."""
        for attempt in range(5):
            self.counter.add(kind, operation)
            try:
                return call(**params)
            except ClientError as error:
                if int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) < 500 or attempt == 4:
                    raise
            except ResponseParserError:
                if attempt == 4:
                    raise
            time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def _sql(self, kind: str, method: str, call: Callable[..., Any], **request: Any) -> Any:
        self.counter.add(kind, method)
        return call(request={"project": self.project, **request}, retry=None, timeout=CALL_TIMEOUT)

    # ------------------------------------------------------------------ the floor: create until usable

    def create(self, kind: str, resource: ManagedResource) -> None:
        """The fewest calls that leave the resource configured as the spec says and usable."""
        {"rds": self._create_rds, "s3": self._create_s3, "cloudsql": self._create_cloudsql, "gcs": self._create_gcs}[
            kind
        ](resource)

    def _create_rds(self, resource: ManagedResource) -> None:
        spec, desired = resource.database, aws_rds.desired_settings(resource)
        params = {
            "DBInstanceIdentifier": resource.external_name,
            "Engine": spec.engine,
            "MasterUsername": spec.master_username,
            "MasterUserPassword": secrets.token_urlsafe(24),
            "StorageEncrypted": True,
            "CopyTagsToSnapshot": True,
            "Tags": tags_to_list(desired[aws_rds.FIELD_TAGS]),
            **aws_rds.setting_parameters(desired),
        }
        if spec.database_name:
            params["DBName"] = spec.database_name
        self._aws("rds", "CreateDBInstance", self.rds.create_db_instance, **params)
        while True:  # until usable (moto: at once)
            found = self._aws(
                "rds",
                "DescribeDBInstances",
                self.rds.describe_db_instances,
                DBInstanceIdentifier=resource.external_name,
            )["DBInstances"][0]
            if aws_rds.is_ready(str(found["DBInstanceStatus"])):
                return

    def _create_s3(self, resource: ManagedResource) -> None:
        name, spec = resource.external_name, resource.bucket
        desired = aws_s3.desired_settings(resource)
        # What a new bucket does not already have (S3's defaults), decided as kumo's create does.
        needed = {row.name for row in aws_s3.SETTINGS.written_on_create(desired)}
        calls: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [("CreateBucket", self.s3.create_bucket, {})]
        if desired[aws_s3.FIELD_PUBLIC_ACCESS_BLOCK] and aws_s3.FIELD_PUBLIC_ACCESS_BLOCK in needed:
            config = dict.fromkeys(aws_s3.PUBLIC_ACCESS_BLOCK_SWITCHES, True)
            calls.append(
                ("PutPublicAccessBlock", self.s3.put_public_access_block, {"PublicAccessBlockConfiguration": config})
            )
        if desired[aws_s3.FIELD_ENCRYPTION] and aws_s3.FIELD_ENCRYPTION in needed:
            config = aws_s3.encryption_configuration(spec)
            calls.append(
                ("PutBucketEncryption", self.s3.put_bucket_encryption, {"ServerSideEncryptionConfiguration": config})
            )
        if spec.versioning:
            status = {"Status": "Enabled"}
            calls.append(("PutBucketVersioning", self.s3.put_bucket_versioning, {"VersioningConfiguration": status}))
        if spec.lifecycle_expire_days is not None:
            rules = {"Rules": aws_s3.lifecycle_rules([], spec.lifecycle_expire_days)}
            calls.append(
                (
                    "PutBucketLifecycleConfiguration",
                    self.s3.put_bucket_lifecycle_configuration,
                    {"LifecycleConfiguration": rules},
                )
            )
        tags = {"TagSet": tags_to_list(desired[aws_s3.FIELD_TAGS])}
        calls.append(("PutBucketTagging", self.s3.put_bucket_tagging, {"Tagging": tags}))
        for operation, call, params in calls:
            self._aws("s3", operation, call, Bucket=name, **params)

    def _create_cloudsql(self, resource: ManagedResource) -> None:
        name, spec = resource.external_name, resource.database
        body = gcp_sql.instance_body(resource, self.gcp_settings, secrets.token_urlsafe(24))
        self._sql("cloudsql", "instances.insert", self.instances.insert, body=body)
        while True:  # the emulator counts reads to RUNNABLE, as kumo's polls see it
            found = self._sql("cloudsql", "instances.get", self.instances.get, instance=name)
            if gcp_sql.enum_name(found.state) == gcp_sql.STATE_RUNNABLE:
                break
        if spec.database_name:
            operation = self._sql(
                "cloudsql", "databases.insert", self.databases.insert, instance=name, body={"name": spec.database_name}
            )
            self._until_done(operation)
        user = {"name": spec.master_username, "password": secrets.token_urlsafe(24)}
        if gcp_sql.USER_HOSTS.get(spec.engine):
            user["host"] = gcp_sql.USER_HOSTS[spec.engine]
        self._until_done(self._sql("cloudsql", "users.insert", self.users.insert, instance=name, body=user))

    def _until_done(self, operation: Any) -> None:
        while gcp_sql.enum_name(operation.status) != gcp_sql.OPERATION_DONE:
            operation = self._sql("cloudsql", "operations.get", self.operations.get, operation=operation.name)

    def _create_gcs(self, resource: ManagedResource) -> None:
        # One insert carrying every setting, as GCS keeps them (kumo's provider does the same,
        # see providers/gcp/gcs.py; a patch right after it would meet GCS's one update per second).
        changes = gcp_gcs.bucket_changes(resource, gcp_gcs.SETTINGS.names, {})
        bucket = self.gcs.bucket(resource.external_name)
        gcp_gcs.configure(bucket, changes)
        self.counter.add("gcs", "buckets.insert")
        location = gcp_gcs.bucket_location(resource, self.gcp_settings) or None
        self.gcs.create_bucket(bucket, location=location, retry=None, timeout=CALL_TIMEOUT)

    # ------------------------------------------------------------------ the baseline: one poll

    def poll(self, kind: str, name: str) -> None:
        """What a per-resource poller reads each interval to know the managed settings."""
        if kind == "rds":
            self._aws(kind, "DescribeDBInstances", self.rds.describe_db_instances, DBInstanceIdentifier=name)
        elif kind == "cloudsql":
            self._sql(kind, "instances.get", self.instances.get, instance=name)
        elif kind == "gcs":
            self.counter.add(kind, "buckets.get")
            self.gcs.bucket(name).reload(projection="full", retry=None, timeout=CALL_TIMEOUT)
        else:
            # S3 has no single read of a bucket's settings: existence, then one read per setting.
            reads: list[tuple[str, Callable[..., Any]]] = [
                ("HeadBucket", self.s3.head_bucket),
                ("GetBucketVersioning", self.s3.get_bucket_versioning),
                ("GetPublicAccessBlock", self.s3.get_public_access_block),
                ("GetBucketEncryption", self.s3.get_bucket_encryption),
                ("GetBucketLifecycleConfiguration", self.s3.get_bucket_lifecycle_configuration),
                ("GetBucketTagging", self.s3.get_bucket_tagging),
            ]
            for operation, read in reads:
                with contextlib.suppress(ClientError):  # "not configured" is an answer, and a call
                    self._aws(kind, operation, read, Bucket=name)

    # ------------------------------------------------------------------ out-of-band changes

    def drift(self, kind: str, name: str) -> str:
        """Change one managed setting behind kumo's back; returns what was changed."""
        if kind == "rds":
            self.rds.modify_db_instance(DBInstanceIdentifier=name, BackupRetentionPeriod=1, ApplyImmediately=True)
            return "backupRetentionDays 7 -> 1"
        if kind == "s3":
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
            return "versioning Enabled -> Suspended"
        if kind == "cloudsql":
            body = {"settings": {"backup_configuration": {"enabled": False}}}
            self.instances.patch(
                request={"project": self.project, "instance": name, "body": body}, retry=None, timeout=CALL_TIMEOUT
            )
            return "automated backups on -> off"
        bucket = self.gcs.bucket(name)
        bucket.versioning_enabled = False
        for _ in range(20):  # GCS takes one metadata update per bucket per second: wait a turn
            with contextlib.suppress(google_errors.TooManyRequests):
                bucket.patch(retry=None, timeout=CALL_TIMEOUT)
                break
            time.sleep(0.25)
        return "versioning on -> off"

    def drift_put_back(self, kind: str, name: str) -> bool:
        """Whether the setting `drift` changed no longer has the value it wrote (one read): a
        controller put it back, whether or not it ever reported the object out of sync."""
        if kind == "rds":
            found = self._aws(kind, "DescribeDBInstances", self.rds.describe_db_instances, DBInstanceIdentifier=name)
            return bool(found["DBInstances"][0]["BackupRetentionPeriod"] != 1)
        if kind == "s3":
            return bool(
                self._aws(kind, "GetBucketVersioning", self.s3.get_bucket_versioning, Bucket=name).get("Status")
                != "Suspended"
            )
        if kind == "cloudsql":
            instance = self._sql(kind, "instances.get", self.instances.get, instance=name)
            return bool(instance.settings.backup_configuration.enabled)
        self.counter.add(kind, "buckets.get")
        bucket = self.gcs.bucket(name)
        bucket.reload(retry=None, timeout=CALL_TIMEOUT)
        return bool(bucket.versioning_enabled)

    # ------------------------------------------------------------------ clean-up

    def delete(self, kind: str, name: str) -> bool:
        """Best effort, a few tries (moto answers 500 now and then under load); True when gone."""
        for attempt in range(4):
            try:
                self._delete(kind, name)
                return True
            except Exception:  # any failure: try again, then leave it
                time.sleep(0.5 * (attempt + 1))
        return False

    def _delete(self, kind: str, name: str) -> None:
        try:
            if kind == "rds":
                self.rds.delete_db_instance(
                    DBInstanceIdentifier=name, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
                )
            elif kind == "s3":
                self.s3.delete_bucket(Bucket=name)
            elif kind == "cloudsql":
                self.instances.delete(
                    request={"project": self.project, "instance": name}, retry=None, timeout=CALL_TIMEOUT
                )
            else:
                self.gcs.bucket(name).delete(retry=None, timeout=CALL_TIMEOUT)
        except (ClientError, google_errors.NotFound):
            pass

    def warm_up(self) -> None:
        """One read per service, so neither the floor nor kumo pays an emulator's first-call cost."""
        self.rds.describe_db_instances(MaxRecords=20)
        self.s3.list_buckets()
        self.instances.list(request={"project": self.project, "max_results": 1}, retry=None, timeout=CALL_TIMEOUT)
        list(self.gcs.list_buckets(max_results=1))


def run_all(jobs: Iterable[Callable[[], Any]], workers: int) -> tuple[float, list[Any]]:
    """Run the jobs on `workers` threads; the first failure is raised. Returns the seconds taken
    and the jobs' results."""
    started = time.monotonic()
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-cloud") as pool:
        results = [future.result() for future in [pool.submit(job) for job in jobs]]
    return time.monotonic() - started, results
