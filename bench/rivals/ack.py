"""AWS Controllers for Kubernetes (ACK), S3 service controller, as a benchmark rival.

Built from `github.com/aws-controllers-k8s/s3-controller` at the version pinned in
`bench/rivals/ack-s3/go.mod` (its upstream `cmd/controller`, unchanged). The flags are the ACK
runtime's (`pkg/config/config.go` of `github.com/aws-controllers-k8s/runtime`, also listed at
https://aws-controllers-k8s.github.io/community/docs/user-docs/install/): `--aws-endpoint-url`
points it at moto (`--allow-unsafe-aws-endpoint-urls`, because moto speaks plain HTTP), and its
metrics, health and webhook servers get loopback addresses (they default to 0.0.0.0). Credentials
come from the AWS SDK's usual environment variables. Its resources are namespaced; it watches the
benchmark's namespace only (`--watch-namespace`), as kumo does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from kumo.testbed.process import LOOPBACK

from .rival import RIVALS_DIR, Rival, RivalKind, conditions

GROUP = "s3.services.k8s.aws"
# ACK's condition for "the latest spec is what AWS has" (runtime apis/core/v1alpha1/conditions.go).
SYNCED = "ACK.ResourceSynced"


class AckS3(Rival):
    name = "ack-s3"
    module = "github.com/aws-controllers-k8s/s3-controller"
    version = "v1.1.1"
    module_dir = RIVALS_DIR / "ack-s3"
    package = "github.com/aws-controllers-k8s/s3-controller/cmd/controller"
    binary_name = "ack-s3-controller"
    kinds: ClassVar[dict[str, RivalKind]] = {
        "Bucket": RivalKind("Bucket", GROUP, "v1alpha1", "buckets", namespaced=True)
    }

    def crd_dirs(self) -> list[Path]:
        source = self.source_dir() / "config" / "crd"
        # bases: the S3 kinds; common/bases: AdoptedResource and FieldExport, which every ACK
        # controller watches.
        return [source / "bases", source / "common" / "bases"]

    def command(
        self, binary: Path, env: dict[str, Any], namespace: str, ports: dict[str, int], resync_seconds: int | None
    ) -> list[str]:
        aws = env["aws"]
        argv = [
            str(binary),
            f"--aws-region={aws['region']}",
            f"--aws-endpoint-url={aws['endpoint']}",
            f"--aws-identity-endpoint-url={aws['endpoint']}",
            "--allow-unsafe-aws-endpoint-urls",
            f"--watch-namespace={namespace}",
            f"--metrics-addr={LOOPBACK}:{ports['metrics']}",
            f"--healthz-addr={LOOPBACK}:{ports['health']}",
            f"--webhook-server-addr={LOOPBACK}:{ports['webhook']}",
        ]
        if resync_seconds is not None:
            argv.append(f"--reconcile-default-resync-seconds={resync_seconds}")
        return argv

    def process_env(self, env: dict[str, Any]) -> dict[str, str]:
        aws = env["aws"]
        return {
            "AWS_ACCESS_KEY_ID": aws["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
            "AWS_REGION": aws["region"],
            # CARM's ConfigMaps would be read from here; nothing maps accounts on the bed.
            "ACK_SYSTEM_NAMESPACE": "kube-system",
        }

    def ready_url(self, ports: dict[str, int]) -> str:
        return f"http://{LOOPBACK}:{ports['health']}/healthz"

    def manifest(self, kind: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]:
        if kind != "Bucket":
            raise ValueError(f"{self.name} manages no {kind}")
        return {
            "apiVersion": self.kinds[kind].api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "name": name,
                "versioning": {"status": "Enabled"},
                "tagging": {"tagSet": [{"key": "bench", "value": "rivals"}]},
            },
        }

    def ready(self, obj: dict[str, Any]) -> bool:
        return conditions(obj).get(SYNCED) == "True"


ACK_S3 = AckS3()
