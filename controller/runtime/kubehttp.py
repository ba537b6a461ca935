"""A small asynchronous Kubernetes REST client on aiohttp, so the controller never loads the
official `kubernetes` package.

Why: kopf already runs on aiohttp; the official client (with requests, oauthlib, google.auth,
urllib3, pydantic behind it) cost about 30 MB of resident memory for the dozen REST calls the
controller makes itself (issue 16). Those calls are few and simple (get, list, create, replace,
merge and JSON patches, delete), so they are spoken here directly over one pooled session.
Watches (`stream`: the credentials Secrets', controller/runtime/secretwatch.py) hold their
connection for minutes and have a session of their own, so they never wait for or starve the pool.

Authentication is kopf's own: `login` returns the `kopf.ConnectionInfo` the operator's
`@kopf.on.login` handler returns, and its `as_http_headers()` / `as_ssl_context()` give the
Authorization header and the TLS context (https://kopf.readthedocs.io/en/stable/authentication/).
A 401 runs `login` again once, so a rotated ServiceAccount token (bound tokens are refreshed by
the kubelet, https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume)
or a kubeconfig exec plugin's expired token (controller/runtime/login.py) is picked up without a
restart; requests rejected together log in again once. A credential whose `expiration` passed is
replaced before it is sent. A login bringing other TLS material (an exec plugin's renewed client
certificate) gets a new connection pool, and the cluster's `proxy-url` carries every request.

Every refusal leaves as one of the core's errors (controller/core/kubeapi.py), decided by
`translated`: 404 `NotFound`, 409 (and 422 for a JSON patch whose `test` failed) `Conflict`, a
403 with cause NamespaceTerminating `NamespaceTerminating`, anything else `KubeError` with the
server's Status.message. An unreachable or silent server is a `KubeError` too: no aiohttp
exception leaves this module.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Asks for the objects' metadata only (https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-partialobjectmetadata),
# plain JSON from a server that does not offer it.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
DEFAULT_TIMEOUT = 60.0  # seconds for one request, as kopf's settings.networking.request_timeout
# A 429 with Retry-After asks the client to come back (the API server's max-inflight limit, or a
# watch cache "(re)initializing" just after it started): client-go's rest client waits and tries
# again, up to 10 times (k8s.io/client-go/rest/request.go, checkWait); kumo does the same, with a
# cap on each wait so a bad header cannot stall a worker.
THROTTLED_RETRIES = 10
MAX_RETRY_AFTER = 10.0  # seconds


class Credentials(Protocol):
    """What a request needs from `kopf.ConnectionInfo` (so tests can pass a plain stand-in)."""

    server: str

    def as_http_headers(self) -> dict[str, str]: ...

    def as_ssl_context(self) -> ssl.SSLContext: ...


class Refusal(Exception):
    """An API server's answer with a status of 400 or more, before it is translated. It is the
    `__cause__` of the core error raised, for callers that need the status itself (kumo plan)."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.body = body

    def status_object(self) -> dict[str, Any]:
        """The metav1.Status the server sent, or {} when the body is no JSON object."""
        try:
            parsed = json.loads(self.body or "{}")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def message(self) -> str:
        """The API server's own one-line message (its Status.message), not the HTTP dump."""
        message = self.status_object().get("message")
        return f"Kubernetes API {self.status} {self.reason}: {message or self.body or ''}".rstrip(": ")

    def namespace_terminating(self) -> bool:
        """403 with cause NamespaceTerminating: the NamespaceLifecycle admission plugin's answer
        to a create in a namespace being deleted ("unable to create new content in namespace X
        because it is being terminated"). It is final for that namespace: retrying cannot succeed."""
        if self.status != 403:
            return False
        causes = (self.status_object().get("details") or {}).get("causes") or []
        return any(isinstance(cause, dict) and cause.get("reason") == "NamespaceTerminating" for cause in causes)


def translated(refusal: Refusal, *, guarded_patch: bool = False) -> KubeError:
    """The core's error for an API refusal. `guarded_patch`: the request was a JSON patch whose
    `test` operation guards against concurrent changes; the API server answers a failed `test`
    with 422, which means the same as a 409."""
    message = refusal.message()
    if refusal.namespace_terminating():
        return NamespaceTerminating(message)
    if refusal.status == 404:
        return NotFound(message)
    if refusal.status == 409 or (guarded_patch and refusal.status == 422):
        return Conflict(message)
    return KubeError(message)


class KubeHTTP:
    """One pooled aiohttp session to the API server, created on first use inside the event loop.

    `pool_size` bounds the connections open at once (requests beyond it wait for one);
    `timeout` bounds each request end to end unless the call gives its own.
    """

    def __init__(
        self,
        login: Callable[[], Credentials | None],
        *,
        user_agent: str,
        pool_size: int = 64,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.login = login
        self.user_agent = user_agent
        self.pool_size = pool_size
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._retired: aiohttp.ClientSession | None = None  # the pool before a TLS change
        self._watches: aiohttp.ClientSession | None = None  # the watches' own: see stream()
        self._credentials: Credentials | None = None
        self._lock = asyncio.Lock()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
        guarded_patch: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One call; the answer's JSON body as a dict. Refusals raise the core's errors."""
        query = {name: str(value) for name, value in (params or {}).items() if value not in (None, "")}
        data = None if body is None else json.dumps(body)
        limit = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.timeout)
        attempt, throttled, pause = 1, 0, 0.0
        rejected: Credentials | None = None  # what drew the 401 of the first attempt
        while attempt <= 2:
            await asyncio.sleep(pause)  # outside the request, whose timeout must not run meanwhile
            session, credentials = await self._connected(rejected=rejected)
            headers = {"Accept": accept, **credentials.as_http_headers()}
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                async with session.request(
                    method,
                    credentials.server.rstrip("/") + path,
                    params=query,
                    data=data,
                    headers=headers,
                    timeout=limit,
                    proxy=getattr(credentials, "proxy_url", None),
                ) as response:
                    text = await response.text()
                    wait = _retry_after(response.status, response.headers.get("Retry-After"))
                    if wait is not None and throttled < THROTTLED_RETRIES:
                        throttled, pause = throttled + 1, wait
                        continue
                    if response.status == 401 and attempt == 1:
                        attempt, rejected = 2, credentials
                        continue  # credentials may have rotated: log in again, once
                    if response.status >= 400:
                        refusal = Refusal(response.status, response.reason or "", text)
                        raise translated(refusal, guarded_patch=guarded_patch) from refusal
            except (aiohttp.ClientError, TimeoutError) as error:
                raise KubeError(_unreachable(credentials.server, method, path, error)) from None
            return _decoded(text)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def stream(
        self, path: str, *, params: Mapping[str, str | int | None], timeout: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A watch: each JSON object the server streams, one a line, until it ends the stream.

        A watch holds its connection for minutes, so watches go over a session of their own with
        no connection limit: taken from the request pool (bounded by --threads), a few of them
        would leave the controller's calls waiting. Login, a 401 and refusals as in `request`;
        `timeout` bounds the whole stream (the server ends it before, at its timeoutSeconds).
        """
        query = {name: str(value) for name, value in params.items() if value not in (None, "")}
        limit = aiohttp.ClientTimeout(total=timeout, sock_connect=self.timeout)
        rejected: Credentials | None = None  # what drew the 401 of the first attempt
        for attempt in (1, 2):
            session, credentials = await self._watch_session(rejected=rejected)
            headers = {"Accept": JSON, **credentials.as_http_headers()}
            try:
                async with session.get(
                    credentials.server.rstrip("/") + path,
                    params=query,
                    headers=headers,
                    timeout=limit,
                    proxy=getattr(credentials, "proxy_url", None),
                ) as response:
                    if response.status == 401 and attempt == 1:
                        rejected = credentials
                        continue  # credentials may have rotated: log in again, once
                    if response.status >= 400:
                        refusal = Refusal(response.status, response.reason or "", await response.text())
                        raise translated(refusal) from refusal
                    async for line in _json_lines(response.content):
                        yield _decoded(line.decode())
                    return
            except (aiohttp.ClientError, TimeoutError) as error:
                raise KubeError(_unreachable(credentials.server, "GET", path, error)) from None

    async def _watch_session(self, rejected: Credentials | None) -> tuple[aiohttp.ClientSession, Credentials]:
        """The watches' session (no connection limit) and the credentials to send with."""
        async with self._lock:
            credentials = await self._current(rejected)
            if self._watches is None:
                self._watches = self._new_session(credentials, limit=0)  # 0: no limit
            return self._watches, credentials

    async def _connected(self, rejected: Credentials | None) -> tuple[aiohttp.ClientSession, Credentials]:
        """The request pool's session and the credentials to send with."""
        async with self._lock:  # one login and one session however many requests start at once
            credentials = await self._current(rejected)
            if self._session is None:
                self._session = self._new_session(credentials, limit=self.pool_size)
            return self._session, credentials

    async def _current(self, rejected: Credentials | None) -> Credentials:
        """The credentials held, after logging in when there are none yet, when they expired, or
        when `rejected` (what drew a 401) is still what is held: requests rejected together renew
        once, and the later ones use what the first one got. A login bringing other TLS material
        (an exec plugin's renewed client certificate) retires both sessions, whose TLS contexts
        hold the old one. Called under the lock."""
        held = self._credentials
        if held is None or held is rejected or _expired(held):
            credentials = await self._login()
            if held is not None and _tls_material(credentials) != _tls_material(held):
                await self._retire_sessions()
            self._credentials = held = credentials
        return held

    def _new_session(self, credentials: Credentials, *, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=limit, ssl=credentials.as_ssl_context())
        return aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.user_agent})

    async def _login(self) -> Credentials:
        try:
            credentials = await asyncio.to_thread(self.login)  # reads files, maybe runs a plugin: off the loop
        except Exception as error:  # the login's own words, which name no secret (login.py)
            raise KubeError(f"cannot log in to the Kubernetes API: {error}") from error
        if credentials is None:
            raise KubeError("no Kubernetes credentials: neither a ServiceAccount nor a kubeconfig was found")
        return credentials

    async def _retire_sessions(self) -> None:
        """The request pool's requests still running finish on it; it is closed at the next change
        (idle long since) or by close(). The watches' streams end with their session and their
        watches connect again, with the new material."""
        if self._retired is not None:
            await self._retired.close()
        self._retired, self._session = self._session, None
        if self._watches is not None:
            await self._watches.close()
            self._watches = None

    async def close(self) -> None:
        for session in (self._session, self._retired, self._watches):
            if session is not None:
                await session.close()
        self._session = self._retired = self._watches = None


def _expired(credentials: Credentials) -> bool:
    """Past the credential's `expiration` (kopf.ConnectionInfo's, naive meaning UTC, as kopf reads it)."""
    expiration = getattr(credentials, "expiration", None)
    if expiration is None:
        return False
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=datetime.UTC)
    return bool(datetime.datetime.now(datetime.UTC) >= expiration)


def _tls_material(credentials: Credentials) -> tuple[Any, ...]:
    """What the pool's TLS context is made of (kopf.ConnectionInfo's fields; none on a stand-in)."""
    names = (
        "ca_path",
        "ca_data",
        "insecure",
        "certificate_path",
        "certificate_data",
        "private_key_path",
        "private_key_data",
    )
    return tuple(getattr(credentials, name, None) for name in names)


async def _json_lines(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """The lines of a watch stream, each one JSON object; read by chunk, since a line holds a
    whole object (a Secret up to 1 MiB) and aiohttp's readline stops at its buffer's limit."""
    pending = b""
    async for chunk in content.iter_any():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _retry_after(status: int, header: str | None) -> float | None:
    """Seconds to wait before asking again, when the answer is a 429 that says (None otherwise)."""
    if status != 429 or header is None:
        return None
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER)
    except ValueError:  # an HTTP date: the API server sends seconds, so this is not it
        return None


def _decoded(text: str) -> dict[str, Any]:
    """The JSON object of a successful answer ({} for an empty one, e.g. some deletes)."""
    if not text:
        return {}
    try:
        answer = json.loads(text)
    except ValueError:
        raise KubeError(f"Kubernetes API answered with no JSON: {text[:200]!r}") from None
    return answer if isinstance(answer, dict) else {}


def _unreachable(server: str, method: str, path: str, error: BaseException) -> str:
    """One line for a request that got no answer (the same words `kumo plan` has always used)."""
    if isinstance(error, TimeoutError):
        return f"the Kubernetes API server at {server} did not answer {method} {path} in time"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot reach the Kubernetes API server at {error.host}:{error.port}: {error.os_error}"
    return f"Kubernetes API {method} {path} failed: {error or type(error).__name__}"
