"""Shared plumbing of the GCP provider: credentials and SDK clients per provider config, the one
call wrapper every SDK call goes through, the translation of Google errors into kumo's two kinds,
the ownership labels, and the checking of `spec.providerOptions` against each kind's allow-list.

`client_cache()` is the shared `ClientCache` (kumo.providers.plumbing) set up for the Cloud SQL
Admin clients (`google.cloud.sqladmin_v1beta4`, REST transport) and the Cloud Storage client, once
per distinct `ProviderSettings`; each service's SDK is imported when its first client is built.
`ServiceCaller` takes each client from it lazily, inside the worker thread of the first call,
because finding Application Default Credentials may probe the metadata server. `ServiceCaller`
is the only place that touches a client: it runs each request through the shared
`InstrumentedCaller` (pacing, metrics, redaction), which raises `Retryable` or `Terminal` carrying
Google's own message as `translate` reads it. `cloudsql.py` and `gcs.py` use nothing else
from the SDKs' error or auth modules.

SDK-level retries are switched off (every call passes ``retry=None``): a failed call comes back as
`Retryable` and the controller retries it later through the token bucket, so every request the
cloud sees is paced and counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module
from importlib.util import find_spec
from typing import Any, TypeVar

from kumo.providers import options as checks
from kumo.providers.base import (
    CallHooks,
    NotReady,
    Ownership,
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
    Unavailable,
)
from kumo.providers.options import ProviderOption, text_matching
from kumo.providers.plumbing import ClientCache, InstrumentedCaller, SdkErrors, user_agent_suffix

MISSING_SDK = (
    "the gcp provider needs google-cloud-sql and google-cloud-storage "
    "(pip install google-cloud-sql google-cloud-storage)"
)
SQLADMIN_MODULE = "google.cloud.sqladmin_v1beta4"
STORAGE_MODULE = "google.cloud.storage"

try:
    import google.api_core.exceptions as google_errors
    import google.auth
    import google.auth.exceptions as auth_errors
    import requests
    from google.api_core.gapic_v1.client_info import ClientInfo
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account
except ImportError as missing_sdk:  # the registry logs this and skips the provider
    raise Unavailable(MISSING_SDK) from missing_sdk

# The two service SDKs are imported by the factory that builds their first client, not here: the
# Cloud SQL one alone holds ~12 MiB of proto-plus message classes and its gRPC transports, which a
# replica without Databases on GCP never uses (issue 17). Their presence is still checked now, so
# a missing SDK keeps the whole provider out at start as before.


def _installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it."""
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google.cloud) is missing too
        return False


if not (_installed(SQLADMIN_MODULE) and _installed(STORAGE_MODULE)):
    raise Unavailable(MISSING_SDK)

T = TypeVar("T")
R = TypeVar("R")

PROVIDER_NAME = "gcp"
SERVICE_SQLADMIN = "sqladmin"
SERVICE_STORAGE = "storage"
ENDPOINT_SERVICES = (SERVICE_SQLADMIN, SERVICE_STORAGE)
CALL_TIMEOUT = 30.0  # seconds per HTTP request; the generated Cloud SQL clients default to none
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

# ---------------------------------------------------------------------------- ownership labels

# GCP labels: keys and values of lowercase letters, digits, "_" and "-", at most 63 characters.
LABEL_OWNER_UID = "kumo-owner-uid"
LABEL_OWNER_NAMESPACE = "kumo-owner-namespace"
LABEL_OWNER_NAME = "kumo-owner-name"
LABEL_CLUSTER_ID = "kumo-cluster-id"
OWNERSHIP_LABEL_KEYS = (LABEL_OWNER_UID, LABEL_OWNER_NAMESPACE, LABEL_OWNER_NAME, LABEL_CLUSTER_ID)
MAX_LABEL_LENGTH = 63
_NOT_LABEL_CHARACTER = re.compile(r"[^a-z0-9_-]")


def label_value(text: str) -> str:
    """`text` as a valid label value: lowercased, any other character (the "." of Kubernetes
    names) as "_", cut to 63 characters. The owner UID is the identity and always fits as is;
    namespace, name and cluster id are for people reading the console."""
    return _NOT_LABEL_CHARACTER.sub("_", text.lower())[:MAX_LABEL_LENGTH]


def ownership_labels(owner: Ownership) -> dict[str, str]:
    """The labels written on everything kumo creates, naming the object that owns it."""
    return {
        LABEL_OWNER_UID: label_value(owner.uid),
        LABEL_OWNER_NAMESPACE: label_value(owner.namespace),
        LABEL_OWNER_NAME: label_value(owner.name),
        LABEL_CLUSTER_ID: label_value(owner.cluster_id),
    }


def owner_from_labels(labels: Mapping[str, str]) -> Ownership | None:
    """The owner the labels name (as sanitized when written); None without the uid label."""
    uid = labels.get(LABEL_OWNER_UID)
    if not uid:
        return None
    return Ownership(
        uid=uid,
        namespace=labels.get(LABEL_OWNER_NAMESPACE, ""),
        name=labels.get(LABEL_OWNER_NAME, ""),
        cluster_id=labels.get(LABEL_CLUSTER_ID, ""),
    )


def present_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels with values; the GCS emulator keeps a removed label as null instead of dropping it."""
    return {key: str(value) for key, value in (labels or {}).items() if value is not None}


# ---------------------------------------------------------------------------- provider options


def option_problems(options: Mapping[str, Any], allowed: Collection[ProviderOption]) -> list[str]:
    """What is wrong with the options, each message naming its `spec.providerOptions.<key>`."""
    return checks.option_problems(options, allowed, PROVIDER_NAME)


def checked_options(options: Mapping[str, Any], allowed: Collection[ProviderOption]) -> Mapping[str, Any]:
    """The options, or `Terminal` when any is invalid."""
    return checks.checked_options(options, allowed, PROVIDER_NAME)


# A customer-managed Cloud KMS key as Cloud SQL and GCS take it.
KMS_KEY_PATTERN = r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+"
is_kms_key = text_matching(KMS_KEY_PATTERN, "projects/P/locations/L/keyRings/R/cryptoKeys/K")


# ---------------------------------------------------------------------------- error translation

# Temporary by type: throttling, 5xx, timeouts, and api_core's own retry giving up.
RETRYABLE_API_ERRORS: tuple[type[Exception], ...] = (
    google_errors.TooManyRequests,
    google_errors.ResourceExhausted,
    google_errors.ServiceUnavailable,
    google_errors.InternalServerError,
    google_errors.BadGateway,
    google_errors.GatewayTimeout,
    google_errors.DeadlineExceeded,
)
# Temporary by reason, whatever the status: Cloud SQL runs one operation per instance at a time
# (409 operationInProgress), refuses changes while the instance is not RUNNABLE (409 invalidState)
# and rejects a patch based on an older settingsVersion (412 staleData).
TRANSIENT_REASONS = frozenset(
    {
        "operationInProgress",
        "invalidState",
        "staleData",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "backendError",
    }
)
# Network-level failures: the request may never have reached Google.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    google_errors.RetryError,
    requests.ConnectionError,
    requests.Timeout,
    auth_errors.TransportError,  # token endpoint or metadata server briefly unreachable
)
# What the wrapper catches; anything else is a bug and propagates as it is.
SDK_ERRORS: tuple[type[Exception], ...] = (
    google_errors.GoogleAPIError,
    requests.RequestException,
    auth_errors.GoogleAuthError,
)
CODE_NO_CREDENTIALS = "NoCredentials"
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")  # api_core prefixes "GET https://...: "
_UNKNOWN_ERROR = "unknown error"  # api_core's text when the body carried no message


def error_reason(error: Exception) -> str:
    """Google's error reason (``instanceAlreadyExists``, ``notFound``, ...) when it sent one."""
    for detail in getattr(error, "errors", None) or ():
        if isinstance(detail, Mapping) and detail.get("reason"):
            return str(detail["reason"])
    return str(getattr(error, "reason", "") or "")


def google_message(error: google_errors.GoogleAPICallError, operation: str) -> str:
    """Google's own message, without the method and URL api_core puts in front of it."""
    for detail in error.errors or ():
        if isinstance(detail, Mapping) and detail.get("message"):
            return str(detail["message"])
    message = _REQUEST_PREFIX.sub("", str(error.message or ""))
    if not message or message == _UNKNOWN_ERROR:
        return f"{operation} answered HTTP {error.code} ({type(error).__name__})"
    return message


def outcome_of(error: Exception) -> str:
    """What `CloudCall.outcome` reports: the HTTP status when Google answered, else the class."""
    code = getattr(error, "code", None)
    return str(code) if isinstance(code, int) else type(error).__name__


def translate(error: Exception, operation: str) -> ProviderError:
    """`Retryable` for throttling, 5xx, busy instances and network failures; `Terminal` for
    everything else (bad values, denied access, unknown methods, names taken), with Google's
    own message and its reason (or the exception's name) as the code."""
    if isinstance(error, google_errors.GoogleAPICallError):
        reason = error_reason(error)
        message = google_message(error, operation)
        code = reason or type(error).__name__
        status = error.code if isinstance(error.code, int) else 0
        if isinstance(error, google_errors.MethodNotImplemented):  # a 5xx that retrying never fixes
            return Terminal(message, code=code)
        if isinstance(error, RETRYABLE_API_ERRORS) or reason in TRANSIENT_REASONS or status >= 500:
            return Retryable(message, code=code)
        return Terminal(message, code=code)
    if isinstance(error, RETRYABLE_TRANSPORT_ERRORS):
        return Retryable(f"{operation}: {error}", code=type(error).__name__)
    if isinstance(error, auth_errors.RefreshError):
        kind = Retryable if getattr(error, "retryable", False) else Terminal
        return kind(f"{operation}: could not get an access token: {error}", code=CODE_NO_CREDENTIALS)
    if isinstance(error, auth_errors.DefaultCredentialsError):
        return Terminal(f"{operation}: {error}", code=CODE_NO_CREDENTIALS)
    return Terminal(f"{operation}: {error}", code=type(error).__name__)


def is_not_found(error: Exception) -> bool:
    """Whether Google answered 404, which `ServiceCaller.find` reports as None."""
    return isinstance(error, google_errors.NotFound)


# The instrumented call reads the Google SDKs' exceptions this way; anything else raised is a bug.
GOOGLE_ERRORS = SdkErrors(answers=SDK_ERRORS, translate=translate, outcome=outcome_of)


# ---------------------------------------------------------------------------- credentials

# Keys a credentials Secret may hold the service-account key JSON under.
KEY_DOCUMENT = "document"
KEY_CREDENTIALS_JSON = "credentials.json"
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


def _key_document(settings: ProviderSettings) -> tuple[str, str]:
    """(secret key, JSON text) of the service-account key, or ("", "") for no credentials."""
    for key in (KEY_DOCUMENT, KEY_CREDENTIALS_JSON):
        if settings.credentials.get(key):
            return key, settings.credentials[key]
    if settings.credentials:
        raise Terminal(
            f"credentials: need {KEY_DOCUMENT} or {KEY_CREDENTIALS_JSON} holding a service-account key JSON, "
            f"or no credentials Secret for Workload Identity",
            code=CODE_NO_CREDENTIALS,
        )
    return "", ""


def _key_info(key: str, document: str) -> dict[str, Any]:
    try:
        info = json.loads(document)
    except ValueError:
        # json's error quotes the document around the fault, which may be the private key.
        raise Terminal(f"credentials.{key}: not valid JSON", code=CODE_NO_CREDENTIALS) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise Terminal(f"credentials.{key}: not a service-account key (type service_account)", code=CODE_NO_CREDENTIALS)
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not info.get(name)]
    if missing:
        raise Terminal(f"credentials.{key}: service-account key lacks {', '.join(missing)}", code=CODE_NO_CREDENTIALS)
    return info


def project_of(settings: ProviderSettings) -> str:
    """The provider config's project, else the project of its service-account key."""
    if settings.project:
        return settings.project
    key, document = _key_document(settings)
    project = str(_key_info(key, document).get("project_id", "")) if document else ""
    if not project:
        raise Terminal("project: the provider config names no GCP project", code="NoProject")
    return project


def credentials_for(settings: ProviderSettings, service: str) -> Any:
    """The key in the credentials Secret; anonymous for an overridden endpoint without one (the
    emulators); else Application Default Credentials (Workload Identity on GKE)."""
    key, document = _key_document(settings)
    if document:
        try:
            return service_account.Credentials.from_service_account_info(_key_info(key, document), scopes=SCOPES)
        except ValueError:  # the private key does not load; its text stays out of the message
            raise Terminal(
                f"credentials.{key}: the private key could not be loaded", code=CODE_NO_CREDENTIALS
            ) from None
    if settings.endpoints.get(service):
        return AnonymousCredentials()
    credentials, _ = google.auth.default(scopes=SCOPES)
    return credentials


# ---------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class SqlAdmin:
    """The Cloud SQL Admin API services kumo uses, sharing one set of credentials."""

    instances: Any  # sqladmin.SqlInstancesServiceClient
    users: Any  # sqladmin.SqlUsersServiceClient
    databases: Any  # sqladmin.SqlDatabasesServiceClient
    operations: Any  # sqladmin.SqlOperationsServiceClient


def _make_sqladmin(settings: ProviderSettings) -> SqlAdmin:
    sqladmin = import_module(SQLADMIN_MODULE)  # on the first Database on GCP: see the imports
    endpoint = settings.endpoints.get(SERVICE_SQLADMIN)
    options: dict[str, Any] = {
        "credentials": credentials_for(settings, SERVICE_SQLADMIN),
        "transport": "rest",  # no gRPC channel to manage; the emulator speaks REST only
        "client_options": {"api_endpoint": endpoint} if endpoint else None,
    }
    if _client_info(settings) is not None:  # None would replace the generated clients' default
        options["client_info"] = _client_info(settings)
    return SqlAdmin(
        instances=sqladmin.SqlInstancesServiceClient(**options),
        users=sqladmin.SqlUsersServiceClient(**options),
        databases=sqladmin.SqlDatabasesServiceClient(**options),
        operations=sqladmin.SqlOperationsServiceClient(**options),
    )


def _make_storage(settings: ProviderSettings) -> Any:
    storage = import_module(STORAGE_MODULE)  # on the first Bucket or identity check on GCP
    endpoint = settings.endpoints.get(SERVICE_STORAGE)
    return storage.Client(
        project=project_of(settings),
        credentials=credentials_for(settings, SERVICE_STORAGE),
        client_options={"api_endpoint": endpoint} if endpoint else None,
        client_info=_client_info(settings),
    )


def _client_info(settings: ProviderSettings) -> Any:
    """The User-Agent the Google clients send: their own, plus the calling replica's name when
    there is one (None: the client's default)."""
    suffix = user_agent_suffix(settings)
    return ClientInfo(user_agent=suffix) if suffix else None


CLIENT_FACTORIES: dict[str, Callable[[ProviderSettings], Any]] = {
    SERVICE_SQLADMIN: _make_sqladmin,
    SERVICE_STORAGE: _make_storage,
}


def client_cache() -> ClientCache:
    """SDK clients per provider config and service; they are thread-safe (calls run in worker
    threads) and share nothing but the settings they are built from."""
    return ClientCache(_make_client)


def _make_client(_: None, settings: ProviderSettings, service: str) -> Any:
    return CLIENT_FACTORIES[service](settings)


# ---------------------------------------------------------------------------- the call wrapper


READ_ATTEMPTS = 3  # like boto3's standard retry mode, for idempotent reads only


@dataclass(frozen=True)
class ServiceCaller:
    """Every call to one Google service for one provider config goes through here.

    A call is a function of the SDK client (`SqlAdmin` or `storage.Client`) making exactly one
    HTTP request; it is named as the API names the method (``instances.list``), which is also what
    `CloudCall.operation` reports. `find` turns "not found" into None for callers that expect it.
    """

    clients: ClientCache
    settings: ProviderSettings
    service: str
    hooks: CallHooks = field(default_factory=CallHooks)

    @property
    def project(self) -> str:
        return project_of(self.settings)

    @property
    def endpoint_override(self) -> str:
        return self.settings.endpoints.get(self.service, "")

    @property
    def _calls(self) -> InstrumentedCaller:
        return InstrumentedCaller(PROVIDER_NAME, self.service, GOOGLE_ERRORS, self.hooks)

    async def call(self, operation: str, request: Callable[[Any], T], *, secrets: Collection[str] = ()) -> T:
        """Run one request; raise `Retryable` / `Terminal` on any Google error."""
        blocking = partial(self._request, request)
        return await self._read_retried(operation, lambda: self._calls.call(operation, blocking, secrets=secrets))

    async def find(self, operation: str, request: Callable[[Any], T]) -> T | None:
        """Run one request; None when Google answers 404."""
        blocking = partial(self._request, request)
        return await self._read_retried(operation, lambda: self._calls.find(operation, blocking, missing=is_not_found))

    async def _read_retried(self, operation: str, attempt: Callable[[], Awaitable[R]]) -> R:
        """One request, and for reads up to READ_ATTEMPTS in all on a transient error: the
        clients are built with retry=None, and one 503 should not cost a whole reconcile pass.
        Writes are never repeated here (an insert that failed ambiguously is the reconciler's
        call, which observes first). Each attempt is paced and counted through the hooks."""
        attempts = READ_ATTEMPTS if operation.endswith((".get", ".list")) else 1
        for number in range(1, attempts + 1):
            try:
                return await attempt()
            except NotReady:
                raise
            except Retryable:
                if number == attempts:
                    raise
                await asyncio.sleep(0.1 * 2**number * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

    def _request(self, request: Callable[[Any], T]) -> T:
        return request(self.clients.client(self.settings, self.service))


class PageWalker:
    """Walks a `google.api_core` page iterator one HTTP request at a time, so that each page
    fetch can go through `ServiceCaller` (the iterator itself would fetch them all in one go).

    `next_page` is the request function: its first use creates the iterator with `start`."""

    def __init__(self, start: Callable[[Any], Any]) -> None:
        self._start = start
        self._iterator: Any = None
        self._pages: Iterator[Any] | None = None

    @property
    def more(self) -> bool:
        """Whether another page is to be fetched (always before the first)."""
        return self._iterator is None or bool(self._iterator.next_page_token)

    def next_page(self, client: Any) -> list[Any]:
        if self._pages is None:
            self._iterator = self._start(client)
            self._pages = self._iterator.pages
        page = next(self._pages, None)  # StopIteration must not cross into asyncio
        return list(page) if page is not None else []
