"""Crossplane's native AWS provider (crossplane-contrib/provider-aws), standalone, as a benchmark
rival.

Built from `github.com/crossplane-contrib/provider-aws` at the version pinned in
`bench/rivals/provider-aws/go.mod`, through a `main.go` of kumo's own in that directory: upstream's
`cmd/provider` leaves the metrics server on `:8080` (every interface) with no flag, and every
server on the test bed binds loopback. Everything else is upstream's: all its controllers, its
defaults (`--poll 1m`, `--sync 1h`, `--max-reconcile-rate 10`).

No Crossplane core runs: managed resources need only their own CRDs plus the provider's
ProviderConfig and ProviderConfigUsage CRDs (all in upstream's `package/crds`, all installed,
because the provider starts a controller for every kind and each waits for its informer). The
ProviderConfig `default` (the name managed resources use when they name none) reads credentials
from a Secret in the AWS INI format and sends every call to moto through `spec.endpoint` (
https://github.com/crossplane-contrib/provider-aws/blob/master/AUTHENTICATION.md and the
`EndpointConfig` type in apis/v1beta1/providerconfig_types.go). Its managed resources are
cluster-scoped; `namespace` only holds the Secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.process import LOOPBACK

from .rival import RIVALS_DIR, Rival, RivalKind, conditions

PROVIDER_CONFIG_NAME = "default"
CREDENTIALS_SECRET = "crossplane-aws-credentials"  # noqa: S105 - a Secret's name
CREDENTIALS_KEY = "credentials"
RDS_USERNAME = "benchadmin"


class ProviderAws(Rival):
    name = "crossplane-aws"
    module = "github.com/crossplane-contrib/provider-aws"
    version = "v0.50.0"
    module_dir = RIVALS_DIR / "provider-aws"
    package = "."
    binary_name = "provider-aws"
    kinds: ClassVar[dict[str, RivalKind]] = {
        "Bucket": RivalKind("Bucket", "s3.aws.crossplane.io", "v1beta1", "buckets", namespaced=False),
        "RDSInstance": RivalKind(
            "RDSInstance", "database.aws.crossplane.io", "v1beta1", "rdsinstances", namespaced=False
        ),
    }

    def crd_dirs(self) -> list[Path]:
        return [self.source_dir() / "package" / "crds"]

    def install(self, api_client: Any, env: dict[str, Any], namespace: str) -> list[str]:
        names = super().install(api_client, env, namespace)
        aws = env["aws"]
        credentials = (
            "[default]\n"
            f"aws_access_key_id = {aws['access_key_id']}\n"
            f"aws_secret_access_key = {aws['secret_access_key']}\n"
        )
        secret = {
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "stringData": {CREDENTIALS_KEY: credentials},
        }
        _create(lambda: client.CoreV1Api(api_client).create_namespaced_secret(namespace, secret))
        provider_config = self.provider_config(env, namespace)
        objects = client.CustomObjectsApi(api_client)
        _create(
            lambda: objects.create_cluster_custom_object(
                "aws.crossplane.io", "v1beta1", "providerconfigs", provider_config
            )
        )
        return names

    def provider_config(self, env: dict[str, Any], namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "aws.crossplane.io/v1beta1",
            "kind": "ProviderConfig",
            "metadata": {"name": PROVIDER_CONFIG_NAME},
            "spec": {
                "credentials": {
                    "source": "Secret",
                    "secretRef": {"namespace": namespace, "name": CREDENTIALS_SECRET, "key": CREDENTIALS_KEY},
                },
                "endpoint": {
                    "url": {"type": "Static", "static": env["aws"]["endpoint"]},
                    # moto serves every service on one host: path-style, no per-service hostnames.
                    "hostnameImmutable": True,
                    "signingRegion": env["aws"]["region"],
                },
            },
        }

    def command(
        self, binary: Path, env: dict[str, Any], namespace: str, ports: dict[str, int], resync_seconds: int | None
    ) -> list[str]:
        argv = [str(binary), f"--metrics-bind-address={LOOPBACK}:{ports['metrics']}"]
        if resync_seconds is not None:
            argv += [f"--poll={resync_seconds}s", f"--sync={resync_seconds}s"]
        return argv

    def process_env(self, env: dict[str, Any]) -> dict[str, str]:
        return {}

    def manifest(self, kind: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]:
        region = env["aws"]["region"]
        metadata = {"name": name, "annotations": {"crossplane.io/external-name": name}}
        if kind == "Bucket":
            spec: dict[str, Any] = {
                "forProvider": {
                    "locationConstraint": region,
                    # S3's default for new buckets since April 2023 (ACLs disabled:
                    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html),
                    # and upstream's example. Without it provider-aws sends a PutBucketAcl with no
                    # ACL on every observe, which moto answers with a 500.
                    "objectOwnership": "BucketOwnerEnforced",
                    "versioningConfiguration": {"status": "Enabled"},
                    "tagging": {"tagSet": [{"key": "bench", "value": "rivals"}]},
                },
                "deletionPolicy": "Delete",
            }
        elif kind == "RDSInstance":
            spec = {
                "forProvider": {
                    "region": region,
                    "dbInstanceClass": "db.t3.micro",
                    "engine": "postgres",
                    "allocatedStorage": 20,
                    "backupRetentionPeriod": 7,
                    "masterUsername": RDS_USERNAME,
                    "skipFinalSnapshotBeforeDeletion": True,
                    "applyModificationsImmediately": True,
                },
                "writeConnectionSecretToRef": {"name": f"{name}-connection", "namespace": namespace},
                "deletionPolicy": "Delete",
            }
        else:
            raise ValueError(f"{self.name} manages no {kind}")
        return {"apiVersion": self.kinds[kind].api_version, "kind": kind, "metadata": metadata, "spec": spec}

    def ready(self, obj: dict[str, Any]) -> bool:
        states = conditions(obj)
        return states.get("Ready") == "True" and states.get("Synced") == "True"


def _create(call: Any) -> None:
    """Create, tolerating what a previous run on the same bed left."""
    try:
        call()
    except ApiException as error:
        if error.status != 409:
            raise


PROVIDER_AWS = ProviderAws()
