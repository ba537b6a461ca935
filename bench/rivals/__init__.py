"""Rival controllers for the benchmark: AWS Controllers for Kubernetes (S3) and Crossplane's
provider-aws, built from their pinned Go modules and run against the same local test bed as kumo.

Only the benchmark uses this package; `make test` and `make demo` never build a rival. Each rival
is a `Rival` (bench/rivals/rival.py) with one Go module directory under bench/rivals/ pinning
every module it builds from (ack-s3/, provider-aws/). `python -m bench.rivals smoke` builds what is
missing, starts a test bed, and runs each rival through one bucket (and one RDS instance where it
has them) to Ready; bench/README.md has the versions and what the module proxy refused.

The API, for the measurement harness:

    from bench.rivals import RIVALS, by_name

    rival = by_name("ack-s3")                     # or "crossplane-aws"; RIVALS holds both
    rival.build()                                 # -> Path of the binary; builds once (~5 min,
                                                  #    progress on stderr), cached under
                                                  #    testbed.cluster.cache_dir()/rivals/
                                                  #    (BENCH_RIVAL_ACK_S3 or _CROSSPLANE_AWS:
                                                  #    use that binary instead)
    rival.install(api_client, bed.env, namespace) # CRDs (waits for Established), plus what the
                                                  # rival needs first (provider-aws: credentials
                                                  # Secret in `namespace`, ProviderConfig default)
    proc = rival.start(bed.env, log_path, namespace=namespace, resync_seconds=None)
                                                  # -> RivalProcess, once its server answers.
                                                  #    AWS calls go to bed.env["aws"]["endpoint"]
                                                  #    (put a counting proxy's URL there);
                                                  #    resync_seconds=60 sets every poll/resync
    proc.pid, proc.log_path, proc.metrics_url     # process group leader; its log; Prometheus
    proc.stop()                                   # SIGTERM, then SIGKILL; returns once gone

    rival.kinds                                   # {"Bucket": RivalKind(...), "RDSInstance": ...}
                                                  #    kind, group, version, plural, namespaced,
                                                  #    api_version
    rival.manifest("Bucket", name, namespace, bed.env)
                                                  # -> dict to create: versioning Enabled, one
                                                  #    tag; RDSInstance: 7 days backup retention.
                                                  #    ACK objects are namespaced, provider-aws's
                                                  #    cluster-scoped (see kinds[...].namespaced)
    rival.ready(obj)                              # -> bool: ACK.ResourceSynced=True (ACK);
                                                  #    Ready=True and Synced=True (Crossplane)

Every server a rival opens binds 127.0.0.1 (ACK by its flags, provider-aws through the `main.go`
of kumo's own in bench/rivals/provider-aws/, whose only change is a metrics address flag).
"""

from __future__ import annotations

from .ack import ACK_S3
from .crossplane import PROVIDER_AWS
from .rival import Rival, RivalKind, RivalProcess

RIVALS: tuple[Rival, ...] = (ACK_S3, PROVIDER_AWS)

__all__ = ["RIVALS", "Rival", "RivalKind", "RivalProcess", "by_name"]


def by_name(name: str) -> Rival:
    for rival in RIVALS:
        if rival.name == name:
            return rival
    raise KeyError(f"no rival named {name!r}: {', '.join(rival.name for rival in RIVALS)}")
