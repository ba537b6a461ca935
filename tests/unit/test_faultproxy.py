"""FaultProxy on its own: it forwards faithfully, fails the configured share of requests, and
produces each kind of fault in the shape the SDKs parse. An echo server in a thread stands in for
the emulator; one scenario runs boto3 S3 through the proxy against moto's in-process server."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from kumo.testbed.faultproxy import Fault, FaultProxy


class _Echo(BaseHTTPRequestHandler):
    """Answers with a JSON description of the request it received, and a header of its own."""

    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "echo")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _echo

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call(
    endpoint: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_at_rate_zero_requests_and_answers_pass_unchanged_but_for_host(upstream: str) -> None:
    """Rate 0: method, path+query, headers, body go up, status, headers, body come back."""
    with FaultProxy(upstream, failure_rate=0.0, seed=1) as proxy:
        body = b'{"name": "x"}'
        status, headers, data = _call(
            proxy.endpoint, "POST", "/a/b?c=1&d=%2F", body, {"X-Custom": "yes", "Content-Type": "application/json"}
        )
        seen = json.loads(data)
        assert status == 201
        assert headers["x-upstream"] == "echo" and headers["content-type"] == "application/json"
        assert seen["method"] == "POST" and seen["path"] == "/a/b?c=1&d=%2F" and seen["body"] == body.decode()
        assert seen["headers"]["x-custom"] == "yes"
        assert seen["headers"]["host"] == upstream.removeprefix("http://")
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            status, _, data = _call(proxy.endpoint, method, "/thing", b"payload" if method == "PUT" else b"")
            assert status == 200 and json.loads(data)["method"] == method
        status, headers, data = _call(proxy.endpoint, "HEAD", "/thing")
        assert status == 200 and data == b"" and int(headers["content-length"]) > 0
        assert proxy.requests == 6 and proxy.forwarded == 6 and proxy.fault_count == 0


def test_rate_point_two_fails_about_a_fifth_of_many_requests(upstream: str) -> None:
    """Over 1000 requests with a fixed seed, 20 % ± 3 % fail, and the count is reproducible."""
    counts = []
    for _ in range(2):
        with FaultProxy(upstream, failure_rate=0.2, seed=42) as proxy:
            for i in range(1000):
                with contextlib.suppress(ConnectionError, http.client.HTTPException):  # dropped
                    _call(proxy.endpoint, "GET", f"/n/{i}")
            assert proxy.requests == 1000
            assert proxy.forwarded + proxy.fault_count == 1000
            counts.append(proxy.fault_count)
    assert 170 <= counts[0] <= 230, counts
    assert counts[0] == counts[1], "the same seed fails the same requests"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"Authorization": "AWS4-HMAC-SHA256 Credential=x", "Content-Type": "application/x-www-form-urlencoded"},
            {Fault.UNAVAILABLE: (503, b"<Code>ServiceUnavailable</Code>"), Fault.INTERNAL: (500, b"InternalFailure"),
             Fault.THROTTLED: (400, b"<Code>Throttling</Code>")},
            id="aws-query",
        ),
        pytest.param(
            {"Authorization": "AWS4-HMAC-SHA256 Credential=x"},
            {Fault.UNAVAILABLE: (503, b"<Error><Code>SlowDown</Code>"), Fault.INTERNAL: (500, b"InternalError"),
             Fault.THROTTLED: (503, b"<Code>SlowDown</Code>")},
            id="s3",
        ),
        pytest.param(
            {"Content-Type": "application/json"},
            {Fault.UNAVAILABLE: (503, b'"status": "UNAVAILABLE"'), Fault.INTERNAL: (500, b'"status": "INTERNAL"'),
             Fault.THROTTLED: (429, b'"status": "RESOURCE_EXHAUSTED"')},
            id="google",
        ),
    ],
)  # fmt: skip
def test_each_fault_kind_is_produced_in_the_dialect_of_the_caller(
    upstream: str, headers: dict[str, str], expected: dict[Fault, tuple[int, bytes]]
) -> None:
    """Rate 1: 503, 500, throttling, dropped in turn, each body in the caller's error format."""
    with FaultProxy(upstream, failure_rate=1.0, seed=3) as proxy:
        for fault in (Fault.UNAVAILABLE, Fault.INTERNAL, Fault.THROTTLED):
            status, _, body = _call(proxy.endpoint, "POST", "/x", b"Action=Describe", headers)
            assert status == expected[fault][0], (fault, status)
            assert expected[fault][1] in body, body
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _call(proxy.endpoint, "POST", "/x", b"Action=Describe", headers)
        assert proxy.forwarded == 0
        assert dict(proxy.faults) == dict.fromkeys(Fault, 1)


def test_boto3_s3_path_style_works_through_the_proxy() -> None:
    """A real SDK against moto through the proxy: create, put, get, tag and list a bucket."""
    server_module = pytest.importorskip("moto.server")
    moto = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        with FaultProxy(f"http://{host}:{port}", failure_rate=0.0) as proxy:
            s3 = boto3.client(
                "s3",
                endpoint_url=proxy.endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.create_bucket(Bucket="through-proxy")
            s3.put_object(Bucket="through-proxy", Key="k", Body=b"hello")
            s3.put_bucket_tagging(Bucket="through-proxy", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
            assert s3.get_object(Bucket="through-proxy", Key="k")["Body"].read() == b"hello"
            assert s3.get_bucket_tagging(Bucket="through-proxy")["TagSet"] == [{"Key": "a", "Value": "b"}]
            assert "through-proxy" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
            s3.head_bucket(Bucket="through-proxy")
            assert proxy.forwarded == proxy.requests >= 7
    finally:
        moto.stop()
