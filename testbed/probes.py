"""Looking at the emulated clouds directly, the way an operator would with the cloud's own SDK:
to check what kumo did, and to change things behind its back. Used by the e2e tests and the demo.

One probe per cloud with the same methods, so e2e scenarios run unchanged over every cloud.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.exceptions import ClientError
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import sqladmin_v1beta4 as sqladmin
from google.cloud import storage

from .providerconfigs import aws_provider_config, example_provider_config, gcp_provider_config

CLOUDS = ["aws", "gcp"]
# A second AWS region for the scenarios where the region matters (a ProviderConfig there, its
# buckets and databases): the bed's own is us-east-1, which S3 treats unlike every other region.
AWS_OTHER_REGION = "eu-west-1"


class CloudProbe:
    cloud: str

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env

    def provider_config(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def database(self, external_name: str) -> dict[str, Any] | None:
        """Portable view: {storageGB, instanceClass, host, port, tags} or None when absent."""
        raise NotImplementedError

    def bucket(self, external_name: str) -> dict[str, Any] | None:
        """Portable view: {versioning, labels} or None when absent."""
        raise NotImplementedError

    def count_databases(self) -> int:
        raise NotImplementedError

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        raise NotImplementedError

    def get_object(self, bucket: str, key: str) -> bytes:
        raise NotImplementedError

    def delete_object(self, bucket: str, key: str) -> None:
        raise NotImplementedError


class AWSProbe(CloudProbe):
    """Clients in `region` (the bed's own by default), as an operator working there would use;
    S3 calls on a bucket of another region follow S3's redirect, as the SDK does."""

    cloud = "aws"

    def __init__(self, env: dict[str, Any], region: str = "") -> None:
        self.env = env["aws"]
        self.region = region or self.env["region"]
        self.common = {
            "endpoint_url": self.env["endpoint"],
            "region_name": self.region,
            "aws_access_key_id": self.env["access_key_id"],
            "aws_secret_access_key": self.env["secret_access_key"],
        }
        self.rds = boto3.client("rds", **self.common)
        self.s3 = boto3.client("s3", **self.common)

    def provider_config(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return aws_provider_config(self.env, name, self.region)

    def database(self, external_name: str) -> dict[str, Any] | None:
        try:
            found = self.rds.describe_db_instances(DBInstanceIdentifier=external_name)["DBInstances"][0]
        except ClientError as error:
            if "NotFound" in error.response["Error"]["Code"]:
                return None
            raise
        endpoint = found.get("Endpoint") or {}  # none while the instance is still creating
        return {
            "storageGB": found["AllocatedStorage"],
            "instanceClass": found["DBInstanceClass"],
            "host": endpoint.get("Address", ""),
            "port": str(endpoint.get("Port", "")),
            "tags": {t["Key"]: t["Value"] for t in found.get("TagList", [])},
            "status": found["DBInstanceStatus"],
        }

    def wait_database_available(self, external_name: str, timeout: float = 60.0) -> None:
        """Until the instance is `available`, as a person waits before changing it: RDS (and the
        strict bed) refuses a modification while it is creating, backing up or modifying."""
        deadline = time.monotonic() + timeout
        while (self.database(external_name) or {}).get("status") != "available":
            if time.monotonic() > deadline:
                raise AssertionError(f"{external_name} not available after {timeout:.0f}s")
            time.sleep(0.2)

    def bucket(self, external_name: str) -> dict[str, Any] | None:
        try:
            self.s3.head_bucket(Bucket=external_name)
            versioning = self.s3.get_bucket_versioning(Bucket=external_name).get("Status") == "Enabled"
        except ClientError:
            # Absent, or deleted between the two reads (a controller deleting it meanwhile).
            return None
        try:
            tags = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=external_name)["TagSet"]}
        except ClientError:
            tags = {}
        return {"versioning": versioning, "labels": tags}

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)

    def get_object(self, bucket: str, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def delete_object(self, bucket: str, key: str) -> None:
        self.s3.delete_object(Bucket=bucket, Key=key)

    def count_databases(self) -> int:
        return len(self.rds.describe_db_instances()["DBInstances"])


class GCPProbe(CloudProbe):
    """Cloud SQL through the sqladmin REST client, GCS through google-cloud-storage. Note that
    every instance read advances the Cloud SQL emulator's life cycle, as a real poll would."""

    cloud = "gcp"

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env["gcp"]
        self.project = self.env["project"]
        self.instances = sqladmin.SqlInstancesServiceClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=self.env["sqladmin_endpoint"]),
        )
        self.gcs = storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.env["storage_endpoint"]),
        )

    def provider_config(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The config (credentials from the environment: the emulators take anonymous calls) and
        an unused Secret of the example's shape, for callers that create both."""
        secret, _ = example_provider_config("gcp", name)
        secret["stringData"] = {"credentials.json": "{}"}
        return secret, gcp_provider_config(self.env, name)

    def database(self, external_name: str) -> dict[str, Any] | None:
        request = sqladmin.SqlInstancesGetRequest(project=self.project, instance=external_name)
        try:
            found = self.instances.get(request=request)
        except google_errors.NotFound:
            return None
        addresses = {a.type_.name: a.ip_address for a in found.ip_addresses}
        host = addresses.get("PRIMARY") or addresses.get("PRIVATE", "")
        return {
            "storageGB": int(found.settings.data_disk_size_gb),
            "instanceClass": found.settings.tier,
            "host": host,
            "port": "3306" if found.database_version.name.startswith("MYSQL") else "5432",
            "tags": dict(found.settings.user_labels),
            "status": found.state.name,
        }

    def bucket(self, external_name: str) -> dict[str, Any] | None:
        try:
            found = self.gcs.get_bucket(external_name)
        except google_errors.NotFound:
            return None
        return {"versioning": bool(found.versioning_enabled), "labels": dict(found.labels or {})}

    def patch_bucket(self, bucket: Any) -> None:
        """Send a `storage.Bucket`'s changed metadata as a person would: GCS takes one metadata
        update per bucket per second and refuses the next with 429 rateLimitExceeded
        (https://cloud.google.com/storage/quotas), so a refused patch is sent again a moment later."""
        deadline = time.monotonic() + 10
        while True:
            try:
                bucket.patch()
                return
            except google_errors.TooManyRequests:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.gcs.bucket(bucket).blob(key).upload_from_string(body)

    def get_object(self, bucket: str, key: str) -> bytes:
        return bytes(self.gcs.bucket(bucket).blob(key).download_as_bytes())

    def delete_object(self, bucket: str, key: str) -> None:
        self.gcs.bucket(bucket).blob(key).delete()

    def count_databases(self) -> int:
        request = sqladmin.SqlInstancesListRequest(project=self.project)
        return sum(len(page.items) for page in self.instances.list(request=request).pages)


def probe_for(cloud: str, env: dict[str, Any], region: str = "") -> CloudProbe:
    """The probe for `cloud`; for AWS, working in `region` (default: the bed's)."""
    if cloud == "aws":
        return AWSProbe(env, region)
    return GCPProbe(env)
