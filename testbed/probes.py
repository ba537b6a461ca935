"""Looking at the emulated clouds directly, the way an operator would with the cloud's own SDK:
to check what kumo did, and to change things behind its back. Used by the e2e tests and the demo.

One probe per cloud with the same methods, so e2e scenarios run unchanged over every cloud.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

CLOUDS = ["aws"]


class CloudProbe:
    cloud: str

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
    cloud = "aws"

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env["aws"]
        common = {
            "endpoint_url": self.env["endpoint"],
            "region_name": self.env["region"],
            "aws_access_key_id": self.env["access_key_id"],
            "aws_secret_access_key": self.env["secret_access_key"],
        }
        self.rds = boto3.client("rds", **common)
        self.s3 = boto3.client("s3", **common)

    def provider_config(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        secret = {
            "metadata": {"name": f"{name}-credentials"},
            "stringData": {
                "aws_access_key_id": self.env["access_key_id"],
                "aws_secret_access_key": self.env["secret_access_key"],
            },
        }
        endpoint = self.env["endpoint"]
        config = {
            "apiVersion": "kumo.dev/v1alpha1",
            "kind": "ProviderConfig",
            "metadata": {"name": name},
            "spec": {
                "provider": "aws",
                "region": self.env["region"],
                "credentials": {"source": "Secret", "secretRef": {"name": f"{name}-credentials"}},
                "endpoints": {"rds": endpoint, "s3": endpoint, "sts": endpoint},
            },
        }
        return secret, config

    def database(self, external_name: str) -> dict[str, Any] | None:
        try:
            found = self.rds.describe_db_instances(DBInstanceIdentifier=external_name)["DBInstances"][0]
        except ClientError as error:
            if "NotFound" in error.response["Error"]["Code"]:
                return None
            raise
        return {
            "storageGB": found["AllocatedStorage"],
            "instanceClass": found["DBInstanceClass"],
            "host": found["Endpoint"]["Address"],
            "port": str(found["Endpoint"]["Port"]),
            "tags": {t["Key"]: t["Value"] for t in found.get("TagList", [])},
            "status": found["DBInstanceStatus"],
        }

    def bucket(self, external_name: str) -> dict[str, Any] | None:
        try:
            self.s3.head_bucket(Bucket=external_name)
        except ClientError:
            return None
        versioning = self.s3.get_bucket_versioning(Bucket=external_name).get("Status") == "Enabled"
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


def probe_for(cloud: str, env: dict[str, Any]) -> CloudProbe:
    return {"aws": AWSProbe}[cloud](env)
