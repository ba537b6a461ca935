"""The built-in GCP provider: Databases on Cloud SQL, Buckets on Cloud Storage.

Registered like any third-party plugin, under the `kumo.providers` entry-point group
(``gcp = "kumo.providers.gcp:GCPProvider"``). Without google-cloud-sql or google-cloud-storage the
import raises `Unavailable`, which the registry logs before carrying on without this provider.

Provider config settings it reads:
- ``project``: the GCP project that owns the instances and buckets (else the ``project_id`` of
  the service-account key).
- ``region``: where Cloud SQL instances are created, and buckets without ``spec.location``.
- ``credentials``: ``document`` (or ``credentials.json``) holding a service-account key JSON;
  empty for Application Default Credentials (Workload Identity on GKE), or, for a service whose
  endpoint is overridden, anonymous access (the emulators).
- ``endpoints``: ``sqladmin`` and ``storage`` overrides (emulators, private endpoints).

Ownership is written as the labels ``kumo-owner-uid``, ``kumo-owner-namespace``,
``kumo-owner-name`` and ``kumo-cluster-id`` (values lowercased, other characters as "_").
"""

from __future__ import annotations

from collections.abc import Sequence

from kumo.providers.base import (
    BucketSpec,
    CallHooks,
    DatabaseSpec,
    ExternalClient,
    Identity,
    Kind,
    ManagedResource,
    ProviderSettings,
)

from .cloudsql import INSTANCES_PAGE_SIZE, OPERATION_POLL_DELAYS, CloudSQLClient, validate_database
from .gcs import BUCKETS_PAGE_SIZE, GCSClient, UpdatePacer, bucket_name_problems, validate_bucket
from .identity import check_identity
from .session import PROVIDER_NAME, SERVICE_SQLADMIN, SERVICE_STORAGE, ServiceCaller, client_cache

__all__ = ["CloudSQLClient", "GCPProvider", "GCSClient"]

# The Google service each kind talks to, named as `settings.endpoints` and `CloudCall` name it.
SERVICES = {Kind.DATABASE: SERVICE_SQLADMIN, Kind.BUCKET: SERVICE_STORAGE}


class GCPProvider:
    """Clients for Databases (Cloud SQL) and Buckets (GCS), sharing SDK clients per provider
    config. The page sizes and operation polling are parameters for tests and benchmarks."""

    name = PROVIDER_NAME
    kinds = frozenset({Kind.DATABASE, Kind.BUCKET})

    def __init__(
        self,
        *,
        instances_page_size: int = INSTANCES_PAGE_SIZE,
        buckets_page_size: int = BUCKETS_PAGE_SIZE,
        operation_poll_delays: Sequence[float] = OPERATION_POLL_DELAYS,
    ) -> None:
        self._clients = client_cache()
        self._bucket_writes = UpdatePacer()  # one per provider: GCS limits each bucket, not each client
        self._instances_page_size = instances_page_size
        self._buckets_page_size = buckets_page_size
        self._poll_delays = tuple(operation_poll_delays)

    def client(self, kind: Kind, settings: ProviderSettings, hooks: CallHooks | None = None) -> ExternalClient:
        """A client for `kind`; cheap, since the SDK clients underneath are cached (and built
        on the first call)."""
        caller = ServiceCaller(self._clients, settings, SERVICES[kind], hooks or CallHooks())
        if kind is Kind.DATABASE:
            return CloudSQLClient(caller, settings, page_size=self._instances_page_size, poll_delays=self._poll_delays)
        return GCSClient(caller, settings, page_size=self._buckets_page_size, pacer=self._bucket_writes)

    async def check(self, settings: ProviderSettings, hooks: CallHooks | None = None) -> Identity:
        """A read the credentials must be allowed to make: see `identity.check_identity`."""
        return await check_identity(self._clients, settings, hooks)

    def validate(self, resource: ManagedResource) -> list[str]:
        """Problems only GCP can judge (tiers, versions, providerOptions), each naming its field."""
        if isinstance(resource.spec, DatabaseSpec):
            return validate_database(resource.spec)
        if isinstance(resource.spec, BucketSpec):
            return validate_bucket(resource.spec) + bucket_name_problems(resource.external_name)
        return [f"kind: gcp does not manage {resource.kind}"]
