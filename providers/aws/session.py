"""Shared plumbing of the AWS provider: sessions and clients per provider config, the one call
wrapper every SDK call goes through, the translation of AWS errors into kumo's two kinds, the
ownership tags, and the checking of `spec.providerOptions` against each kind's allow-list.

`client_cache()` is the shared `ClientCache` (kumo.providers.plumbing) set up for boto3: one
Session per distinct `ProviderSettings` and its clients per service. `ServiceCaller` is the only
place that touches a client: it calls operations by their AWS names through the shared
`InstrumentedCaller` (pacing, metrics, redaction), which raises `Retryable` or `Terminal` carrying
AWS's own message and code as `translate` reads them. `rds.py` and `s3.py` use nothing else from
boto3.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kumo.providers import options as checks
from kumo.providers.base import (
    CallHooks,
    Ownership,
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
    Unavailable,
)
from kumo.providers.options import ProviderOption, text_matching
from kumo.providers.plumbing import ClientCache, InstrumentedCaller, SdkErrors, user_agent_suffix

try:
    import boto3
    import botocore.exceptions as boto_errors
    from botocore import xform_name
    from botocore.config import Config
    from botocore.parsers import ResponseParserError
except ImportError as missing_sdk:  # the registry logs this and skips the provider
    raise Unavailable("the aws provider needs boto3 (pip install boto3)") from missing_sdk

PROVIDER_NAME = "aws"

# ---------------------------------------------------------------------------- ownership tags

TAG_OWNER_UID = "kumo.dev/owner-uid"
TAG_OWNER_NAMESPACE = "kumo.dev/owner-namespace"
TAG_OWNER_NAME = "kumo.dev/owner-name"
TAG_CLUSTER_ID = "kumo.dev/cluster-id"
OWNERSHIP_TAG_KEYS = (TAG_OWNER_UID, TAG_OWNER_NAMESPACE, TAG_OWNER_NAME, TAG_CLUSTER_ID)


def ownership_tags(owner: Ownership) -> dict[str, str]:
    """The tags written on everything kumo creates, naming the object that owns it."""
    return {
        TAG_OWNER_UID: owner.uid,
        TAG_OWNER_NAMESPACE: owner.namespace,
        TAG_OWNER_NAME: owner.name,
        TAG_CLUSTER_ID: owner.cluster_id,
    }


def owner_from_tags(tags: Mapping[str, str]) -> Ownership | None:
    """The owner the tags name; None when the uid tag is absent (not created by kumo)."""
    uid = tags.get(TAG_OWNER_UID)
    if not uid:
        return None
    return Ownership(
        uid=uid,
        namespace=tags.get(TAG_OWNER_NAMESPACE, ""),
        name=tags.get(TAG_OWNER_NAME, ""),
        cluster_id=tags.get(TAG_CLUSTER_ID, ""),
    )


def tags_to_dict(tag_list: Collection[Mapping[str, str]] | None) -> dict[str, str]:
    """AWS's `[{"Key": k, "Value": v}]` shape as a plain mapping."""
    return {tag["Key"]: tag.get("Value", "") for tag in tag_list or ()}


def tags_to_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """A plain mapping in AWS's `[{"Key": k, "Value": v}]` shape, sorted for stable requests."""
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


# ---------------------------------------------------------------------------- provider options


def option_problems(options: Mapping[str, Any], allowed: Collection[ProviderOption]) -> list[str]:
    """What is wrong with the options, each message naming its `spec.providerOptions.<key>`."""
    return checks.option_problems(options, allowed, PROVIDER_NAME)


def option_parameters(options: Mapping[str, Any], allowed: Collection[ProviderOption]) -> dict[str, Any]:
    """The API parameters the options map to; `Terminal` when any option is invalid."""
    valid = checks.checked_options(options, allowed, PROVIDER_NAME)
    by_name = {option.name: option for option in allowed}
    return {by_name[key].parameter: value for key, value in valid.items()}


# A KMS key as AWS accepts it: key id, multi-Region key id, alias name, or either as an ARN.
_KMS_ARN = r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:"
_KMS_KEY_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
_KMS_ALIAS = r"alias/[A-Za-z0-9/_-]+"
KMS_KEY_PATTERN = rf"(?:{_KMS_ARN}key/)?(?:{_KMS_KEY_ID})|(?:{_KMS_ARN})?{_KMS_ALIAS}"
KMS_KEY_SHAPE = "a KMS key id, alias/<name>, or a KMS key or alias ARN"
is_kms_key = text_matching(KMS_KEY_PATTERN, KMS_KEY_SHAPE)


# ---------------------------------------------------------------------------- error translation

# Codes AWS uses for "slow down"; botocore already retried them (standard mode) before we see them.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)
# Conditions that clear by themselves: the instance is busy (creating, modifying, rebooting), or
# AWS had an internal hiccup that it reported with a 4xx-looking code.
TRANSIENT_CODES = frozenset(
    {
        "InvalidDBInstanceState",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAborted",  # S3: a conflicting operation on the same bucket is in progress
    }
)
# Network-level failures: the request may never have reached AWS.
TRANSIENT_SDK_ERRORS: tuple[type[Exception], ...] = (
    boto_errors.EndpointConnectionError,
    boto_errors.ConnectTimeoutError,
    boto_errors.ReadTimeoutError,
    boto_errors.ConnectionClosedError,
    boto_errors.ConnectionError,
    boto_errors.HTTPClientError,
    boto_errors.CredentialRetrievalError,  # IRSA / instance role: STS or IMDS briefly unreachable
    boto_errors.MetadataRetrievalError,
    # An answer botocore cannot parse: typically a 5xx whose body is an HTML page (a proxy, a load
    # balancer, moto's own error page). Nothing the user can fix; the next attempt usually parses.
    ResponseParserError,
)
CODE_PARAMETER_VALIDATION = "ParamValidation"
CODE_NO_CREDENTIALS = "NoCredentials"
# botocore's "Unable to locate credentials" only ever comes from the default chain: a provider
# config with a credentials Secret hands boto3 its keys. Where that chain looks:
# https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html#configuring-credentials
NO_CREDENTIALS_HINT = (
    "The provider config's credentials.source is Environment, so the AWS SDK searched the kumo "
    "controller's own environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE of the "
    "controller process, IRSA or EKS Pod Identity on its service account, the node's instance role) "
    "and found none. Set spec.credentials {source: Secret, secretRef: {name: <a Secret with "
    "aws_access_key_id and aws_secret_access_key>}} on the provider config, or give the controller "
    "an IAM role"
)


def error_code(error: Exception) -> str:
    """AWS's error code for a ClientError (the HTTP status when a HEAD had no body), else the
    botocore exception's class name."""
    if isinstance(error, boto_errors.ClientError):
        code = str(error.response.get("Error", {}).get("Code") or "")
        return code or str(http_status(error))
    return type(error).__name__


def http_status(error: boto_errors.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate(error: Exception, operation: str) -> ProviderError:
    """`Retryable` for throttling, 5xx, busy instances and network failures; `Terminal` for
    everything else (bad values, denied access, quotas, names taken), with AWS's own message."""
    if isinstance(error, boto_errors.ClientError):
        return _translate_client_error(error, operation)
    if isinstance(error, TRANSIENT_SDK_ERRORS):
        return Retryable(f"{operation}: {error}", code=type(error).__name__)
    if isinstance(error, boto_errors.ParamValidationError):
        # botocore's report quotes the offending values, which may include a password.
        return Terminal(
            f"{operation}: the request parameters failed botocore's validation",
            code=CODE_PARAMETER_VALIDATION,
        )
    if isinstance(error, boto_errors.NoCredentialsError):
        return Terminal(f"{operation}: {error}. {NO_CREDENTIALS_HINT}", code=CODE_NO_CREDENTIALS)
    if isinstance(error, boto_errors.PartialCredentialsError):
        return Terminal(f"{operation}: {error}", code=CODE_NO_CREDENTIALS)
    return Terminal(f"{operation}: {error}", code=type(error).__name__)


def _translate_client_error(error: boto_errors.ClientError, operation: str) -> ProviderError:
    status = http_status(error)
    message = str(error.response.get("Error", {}).get("Message") or "")
    return classify(error_code(error), message or f"{operation} answered HTTP {status}", status)


def classify(code: str, message: str, status: int = 0) -> ProviderError:
    """The error an AWS error code (and HTTP status, when known) stands for."""
    if code in THROTTLING_CODES or code in TRANSIENT_CODES or status >= 500:
        return Retryable(message, code=code)
    return Terminal(message, code=code)


# The instrumented call reads boto3's exceptions this way; anything else raised is a bug.
AWS_ERRORS = SdkErrors(
    answers=(boto_errors.ClientError, boto_errors.BotoCoreError),
    translate=translate,
    outcome=error_code,
)


# ---------------------------------------------------------------------------- the call wrapper


@dataclass(frozen=True)
class ServiceCaller:
    """Every call to one AWS service for one provider config goes through here.

    Operations are named as AWS names them (``DescribeDBInstances``), which is also what
    `CloudCall.operation` reports. Callers that expect "not found"-style answers pass those codes
    as `missing` and get None back instead of an exception.
    """

    client: Any  # a botocore client; thread-safe, shared between callers
    service: str
    hooks: CallHooks = field(default_factory=CallHooks)

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name or "")

    @property
    def _calls(self) -> InstrumentedCaller:
        return InstrumentedCaller(PROVIDER_NAME, self.service, AWS_ERRORS, self.hooks)

    async def call(self, operation: str, *, secrets: Collection[str] = (), **params: Any) -> dict[str, Any]:
        """Run one operation; raise `Retryable` / `Terminal` on any AWS error."""
        return await self._calls.call(operation, self._request(operation, params), secrets=secrets)

    async def find(self, operation: str, *, missing: Collection[str], **params: Any) -> dict[str, Any] | None:
        """Run one operation; None when AWS answers with one of the `missing` codes."""
        return await self._calls.find(
            operation, self._request(operation, params), missing=lambda error: error_code(error) in missing
        )

    def _request(self, operation: str, params: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return partial(getattr(self.client, xform_name(operation)), **params)


# ---------------------------------------------------------------------------- sessions and clients

CLIENT_CONFIG = Config(
    # Three attempts in all, as "max_attempts 3" means in the AWS SDKs' standard mode; botocore's
    # own `max_attempts` key counts retries only and would make four.
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,  # observe_many runs many reads at once from worker threads
    user_agent_extra="kumo",
)
# Keys a credentials Secret may hold.
KEY_ACCESS_KEY_ID = "aws_access_key_id"
KEY_SECRET_ACCESS_KEY = "aws_secret_access_key"  # noqa: S105 - a key name, not a secret
KEY_SESSION_TOKEN = "aws_session_token"  # noqa: S105 - a key name, not a secret
KEY_CREDENTIALS_DOCUMENT = "document"
CREDENTIALS_PROFILE = "default"
# Services whose endpoint a provider config may override (emulators, LocalStack, VPC endpoints).
ENDPOINT_SERVICES = ("rds", "s3", "s3control", "resourcegroupstaggingapi", "sts")
# S3 Control (the account-level Block Public Access read) and the Resource Groups Tagging API
# (a sweep's batch read of bucket tags) are served next to S3 by emulators.
ENDPOINT_FALLBACK = {"s3control": "s3", "resourcegroupstaggingapi": "s3"}
# Hosts that cannot take the `<account id>.` prefix S3 Control's endpoint rules put in front.
_UNPREFIXABLE_HOST = re.compile(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost)(:\d+)?")


def session_credentials(credentials: Mapping[str, str]) -> dict[str, str]:
    """boto3 Session keyword arguments from a credentials Secret's keys.

    Either the three ``aws_*`` keys, or ``document`` holding an AWS credentials file (its
    ``[default]`` profile, else the first one). Empty credentials mean the default chain
    (environment, IRSA web identity, instance role): no keywords at all.
    """
    if not credentials:
        return {}
    keys = dict(credentials)
    if KEY_CREDENTIALS_DOCUMENT in keys:
        keys = _profile_from_document(keys[KEY_CREDENTIALS_DOCUMENT])
    if not keys.get(KEY_ACCESS_KEY_ID) or not keys.get(KEY_SECRET_ACCESS_KEY):
        raise Terminal(
            f"credentials: need {KEY_ACCESS_KEY_ID} and {KEY_SECRET_ACCESS_KEY}, "
            f"or {KEY_CREDENTIALS_DOCUMENT} holding an AWS credentials file",
            code=CODE_NO_CREDENTIALS,
        )
    wanted = (KEY_ACCESS_KEY_ID, KEY_SECRET_ACCESS_KEY, KEY_SESSION_TOKEN)
    return {key: keys[key].strip() for key in wanted if keys.get(key)}


def _profile_from_document(document: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(document)
    except configparser.Error:
        # configparser quotes the offending line, which may hold a key: say only where it is.
        raise Terminal(
            f"credentials.{KEY_CREDENTIALS_DOCUMENT}: not an AWS credentials file (INI)",
            code=CODE_NO_CREDENTIALS,
        ) from None
    sections = parser.sections()
    if not sections:
        return {}
    profile = CREDENTIALS_PROFILE if CREDENTIALS_PROFILE in sections else sections[0]
    return dict(parser[profile])


def client_cache() -> ClientCache:
    """boto3 clients per provider config and service. Their Session, one per provider config, is
    not thread-safe but the clients it makes are; the cache uses it under its lock only."""
    return ClientCache(_make_client, make_shared=_make_session)


def _make_session(settings: ProviderSettings) -> Any:
    return boto3.Session(region_name=settings.region or None, **session_credentials(settings.credentials))


def service_endpoint(settings: ProviderSettings, service: str) -> str | None:
    """The endpoint override for `service`, or None for AWS's own endpoint."""
    fallback = ENDPOINT_FALLBACK.get(service, "")
    return settings.endpoints.get(service) or settings.endpoints.get(fallback) or None


def _make_client(session: Any, settings: ProviderSettings, service: str) -> Any:
    endpoint = service_endpoint(settings, service)
    config = CLIENT_CONFIG
    if user_agent_suffix(settings):
        # botocore's user_agent_extra is one string: kumo's own token stays first.
        config = config.merge(
            Config(user_agent_extra=f"{CLIENT_CONFIG.user_agent_extra} {user_agent_suffix(settings)}")
        )
    if service == "s3" and endpoint:
        # Emulators and most S3-compatible endpoints have no wildcard DNS for bucket hosts.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    try:
        client = session.client(service, endpoint_url=endpoint, config=config)
    except boto_errors.BotoCoreError as error:  # e.g. no region anywhere in the chain
        raise translate(error, f"{service} client") from None
    if service == "s3control" and endpoint and _UNPREFIXABLE_HOST.fullmatch(urlsplit(endpoint).netloc):
        client.meta.events.register_first("before-sign.s3-control", drop_account_host_prefix)
    return client


def drop_account_host_prefix(request: Any, **_: Any) -> None:
    """`http://123456789012.127.0.0.1:5000/...` back to `http://127.0.0.1:5000/...`: an address
    or `localhost` cannot carry the account-id label S3 Control's endpoint rules prepend."""
    parts = urlsplit(request.url)
    label, _, rest = parts.netloc.partition(".")
    if label.isdigit() and _UNPREFIXABLE_HOST.fullmatch(rest):
        request.url = urlunsplit(parts._replace(netloc=rest))
