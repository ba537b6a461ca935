"""The built-in AWS provider: Databases on RDS, Buckets on S3, through boto3.

Registered like any third-party plugin, under the `kumo.providers` entry-point group
(``aws = "kumo.providers.aws:AWSProvider"``). Without boto3 the import raises `Unavailable`, which
the registry logs before carrying on without this provider.

Provider config settings it reads:
- ``region``: the AWS region (else the environment's default region).
- ``credentials``: ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``),
  or ``document`` holding an AWS credentials file; empty for the default chain (environment,
  IRSA web identity, instance role).
- ``endpoints``: ``rds``, ``s3``, ``s3control``, ``sts`` overrides (emulators, LocalStack, VPC
  endpoints); S3 behind an override is addressed path-style, and S3 Control falls back to the
  ``s3`` override. Bucket calls go to each bucket's own region, so one config serves buckets of
  every region.
"""

from __future__ import annotations

from dataclasses import replace

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

from .rds import RDSClient, validate_database
from .s3 import S3Client, validate_bucket
from .session import PROVIDER_NAME, ServiceCaller, client_cache

__all__ = ["AWSProvider", "RDSClient", "S3Client"]

# The AWS service each kind talks to, named as boto3 and `settings.endpoints` name it.
SERVICES = {Kind.DATABASE: "rds", Kind.BUCKET: "s3"}
SERVICE_STS = "sts"


class AWSProvider:
    """Clients for Databases (RDS) and Buckets (S3), sharing boto3 clients per provider config."""

    name = PROVIDER_NAME
    kinds = frozenset({Kind.DATABASE, Kind.BUCKET})

    def __init__(self) -> None:
        self._clients = client_cache()

    def client(self, kind: Kind, settings: ProviderSettings, hooks: CallHooks | None = None) -> ExternalClient:
        """A client for `kind`; cheap, since the boto3 client underneath is cached."""
        service = SERVICES[kind]
        hooks = hooks or CallHooks()
        if kind is Kind.DATABASE:
            return RDSClient(ServiceCaller(self._clients.client(settings, service), service, hooks), settings)

        def regional(service: str, region: str) -> ServiceCaller:
            # A bucket lives in one region and S3 wants each call sent there: CreateBucket sent
            # elsewhere is refused, any other call answered with a redirect.
            in_region = replace(settings, region=region)
            return ServiceCaller(self._clients.client(in_region, service), service, hooks)

        return S3Client(regional, settings)

    def validate(self, resource: ManagedResource) -> list[str]:
        """Problems only AWS can judge (instance classes, providerOptions), each naming its field."""
        if isinstance(resource.spec, DatabaseSpec):
            return validate_database(resource.spec)
        if isinstance(resource.spec, BucketSpec):
            return validate_bucket(resource.spec)
        return [f"kind: aws does not manage {resource.kind}"]

    async def identity(self, settings: ProviderSettings, hooks: CallHooks | None = None) -> str:
        """The ARN the provider config's credentials act as (STS GetCallerIdentity)."""
        return (await self.check(settings, hooks)).account

    async def check(self, settings: ProviderSettings, hooks: CallHooks | None = None) -> Identity:
        """One STS GetCallerIdentity: it needs no permission at all, so it succeeds exactly when
        the credentials are valid and STS is reachable
        (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html). A
        client that cannot be built (a malformed credentials Secret) raises `Terminal`."""
        caller = ServiceCaller(self._clients.client(settings, SERVICE_STS), SERVICE_STS, hooks or CallHooks())
        response = await caller.call("GetCallerIdentity")
        arn = str(response.get("Arn", ""))
        return Identity(arn, f"STS GetCallerIdentity: credentials act as {arn} (account {response.get('Account', '')})")
