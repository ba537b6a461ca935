"""A reverse proxy that makes an emulated cloud unreliable, for the fault-injection e2e tests.

`FaultProxy` sits between kumo and one emulator (moto, the GCS emulator, the Cloud SQL
emulator). It forwards every request faithfully (method, path and query, headers with the Host
rewritten, body) and the answer back (status, headers, body), except for a random
`failure_rate` share of requests, which it answers itself with a fault instead, taking turns:

- 503 with the body the SDK parses (AWS query APIs: `ServiceUnavailable`; S3: `SlowDown`;
  Google JSON: `UNAVAILABLE`),
- 500 (`InternalFailure` / `InternalError` / `INTERNAL`),
- throttling (AWS query APIs: 400 `Throttling`; S3: 503 `SlowDown`; Google: 429 `RESOURCE_EXHAUSTED`),
- a dropped connection: the socket is closed without an answer.

A faulted request never reaches the emulator, so a fault never half-applies a change; what it
tests is kumo's handling of errors it is told about, or not told about (the drop).

    with FaultProxy("http://127.0.0.1:5000", failure_rate=0.2, seed=7) as proxy:
        boto3.client("s3", endpoint_url=proxy.endpoint, ...)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from .serving import ServerThread

LOOPBACK = "127.0.0.1"
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded; the
# proxy re-frames bodies with Content-Length itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class Fault(Enum):
    UNAVAILABLE = "503"
    INTERNAL = "500"
    THROTTLED = "throttled"
    DROPPED = "dropped"


FAULT_ORDER = (Fault.UNAVAILABLE, Fault.INTERNAL, Fault.THROTTLED, Fault.DROPPED)


class Dialect(Enum):
    """How the client expects an error to look."""

    AWS_QUERY = "aws-query"  # RDS, STS: form-encoded POST, <ErrorResponse> XML
    S3 = "s3"  # REST XML, <Error> at the top
    GOOGLE = "google"  # JSON {"error": {...}}


@dataclass(frozen=True)
class FaultAnswer:
    status: int
    content_type: str
    body: bytes


def dialect_of(headers: Any) -> Dialect:
    """AWS requests carry a SigV4 Authorization or x-amz headers; the query APIs post forms."""
    authorization = str(headers.get("Authorization") or "")
    is_aws = authorization.startswith("AWS") or any(k.lower().startswith("x-amz-") for k in headers)
    if not is_aws:
        return Dialect.GOOGLE
    if str(headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        return Dialect.AWS_QUERY
    return Dialect.S3


def fault_answer(fault: Fault, dialect: Dialect) -> FaultAnswer:
    """The error response a real endpoint of that dialect sends for `fault` (not DROPPED)."""
    status, aws_code, s3_code, google_status, message = {
        Fault.UNAVAILABLE: (503, "ServiceUnavailable", "SlowDown", "UNAVAILABLE", "backend error"),
        Fault.INTERNAL: (500, "InternalFailure", "InternalError", "INTERNAL", "internal error"),
        Fault.THROTTLED: (400, "Throttling", "SlowDown", "RESOURCE_EXHAUSTED", "Rate exceeded"),
    }[fault]
    if dialect is Dialect.GOOGLE:
        status = 429 if fault is Fault.THROTTLED else status
        body = {"error": {"code": status, "message": message, "status": google_status}}
        return FaultAnswer(status, "application/json; charset=UTF-8", json.dumps(body).encode())
    if dialect is Dialect.S3:
        # S3 throttles with 503 SlowDown, never a 400: a HEAD answer has no body to say why,
        # and a bare 400 rightly reads as a bad request.
        status = 503 if fault is Fault.THROTTLED else status
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{s3_code}</Code><Message>{message}</Message>"
            "<RequestId>faultproxy</RequestId></Error>"
        )
    else:
        kind = "Sender" if fault is Fault.THROTTLED else "Receiver"
        xml = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{aws_code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>faultproxy</RequestId></ErrorResponse>"
        )
    return FaultAnswer(status, "text/xml", xml.encode())


class FaultProxy:
    """A threaded HTTP reverse proxy on loopback in front of `upstream_url`.

    Deterministic for a given `seed` in which requests fail, as far as the order in which
    concurrent requests arrive allows. `requests` counts every request received, `forwarded`
    those passed on, `faults` those answered with each kind of fault.
    """

    def __init__(
        self,
        upstream_url: str,
        failure_rate: float = 0.2,
        seed: int | None = None,
        on_request: Callable[[str, str, Any, bytes], None] | None = None,
        on_answered: Callable[[int], None] | None = None,
    ) -> None:
        """`on_request(method, path_and_query, headers, body)` sees every request before it is
        forwarded or faulted: with `failure_rate=0` the proxy is a faithful request counter.
        `on_answered(status)` runs once the answer is sent (status 0: dropped), on the same thread
        as that request's `on_request`, so a recorder can pair the two (threading.local)."""
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within [0, 1], not {failure_rate}")
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the upstream must be a plain http:// URL, not {upstream_url!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_netloc = parts.netloc
        self.failure_rate = failure_rate
        self.on_request = on_request
        self.on_answered = on_answered
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._turn = 0
        self.requests = 0
        self.forwarded = 0
        self.faults: Counter[Fault] = Counter()
        self._serving = ServerThread(lambda: _Server((LOOPBACK, 0), self), "proxy")

    # ---------------------------------------------------------------- lifecycle

    @property
    def endpoint(self) -> str:
        return self._serving.endpoint

    def start(self) -> Self:
        self._serving.start()
        return self

    def stop(self) -> None:
        self._serving.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- figures

    @property
    def fault_count(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{fault.value}: {self.faults[fault]}" for fault in FAULT_ORDER)
        return f"{self.requests} requests, {self.forwarded} forwarded, {self.fault_count} faults ({kinds})"

    # ---------------------------------------------------------------- internals

    def _choose(self) -> Fault | None:
        """Count one request and decide whether it fails, and how."""
        with self._lock:
            self.requests += 1
            if self.failure_rate <= 0 or self._random.random() >= self.failure_rate:
                self.forwarded += 1
                return None
            fault = FAULT_ORDER[self._turn % len(FAULT_ORDER)]
            self._turn += 1
            self.faults[fault] += 1
            return fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up stop()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # the names http.server dispatches to
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _handle(self) -> None:
        # Read the whole body first, whatever happens next, or the keep-alive stream desynchronises.
        body = self._read_body()
        proxy = self.server.proxy
        if proxy.on_request is not None:
            proxy.on_request(self.command, self.path, self.headers, body)
        fault = proxy._choose()
        status = 0
        if fault is Fault.DROPPED:
            self._drop()
        elif fault is not None:
            answer = fault_answer(fault, dialect_of(self.headers))
            status = self._answer(answer.status, [("Content-Type", answer.content_type)], answer.body)
        else:
            status = self._forward(proxy, body)
        if proxy.on_answered is not None:
            proxy.on_answered(status)

    def _read_body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, proxy: FaultProxy, body: bytes) -> int:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        headers["Host"] = proxy.upstream_netloc
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            status, reason, answer_headers = response.status, response.reason, response.getheaders()
        except (OSError, http.client.HTTPException) as error:
            message = json.dumps({"error": {"code": 502, "message": f"faultproxy: upstream failed: {error}"}})
            return self._answer(502, [("Content-Type", "application/json")], message.encode())
        finally:
            upstream.close()
        kept = [(k, v) for k, v in answer_headers if k.lower() not in HOP_BY_HOP]
        if self.command != "HEAD":  # a HEAD answer keeps the Content-Length of the GET it describes
            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            kept.append(("Content-Length", str(len(data))))
        return self._answer(status, kept, data, reason)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None) -> int:
        self.log_request(status)
        self.send_response_only(status, reason)  # no Server/Date of the proxy's own: upstream's pass
        names = {k.lower() for k, _ in headers}
        for name, value in headers:
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        return status

    def _drop(self) -> None:
        """Close the connection without a byte of answer, as a crashed load balancer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counters are the record; bodies (passwords) never reach a log
