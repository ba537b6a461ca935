"""The controller's Kubernetes client (controller/runtime/kube.py over kubehttp.py) against a small
aiohttp server playing the API server: the requests it sends (paths, verbs, content types,
paging, headers) and the refusals as the reconcile core receives them: its own error classes,
never an aiohttp exception, and plain dicts for Secrets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.kube import PAGE, KubeClient
from kumo.controller.runtime.kubehttp import JSON_PATCH, MERGE_PATCH, KubeHTTP, Refusal, translated
from kumo.controller.runtime.leader import KubeLeaseStore, LeaseConflict, LeaseRecord
from kumo.providers.base import Kind

AGENT = "kumo-controller/test"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status(code: int, message: str = "", causes: list[dict[str, str]] | None = None) -> web.Response:
    """A metav1.Status refusal as the API server sends it."""
    body = {
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "code": code,
        "details": {"causes": causes or []},
    }
    return web.json_response(body, status=code)


def refusal(code: int, message: str = "", causes: list[dict[str, str]] | None = None) -> Refusal:
    reason = {403: "Forbidden", 404: "Not Found", 409: "Conflict"}.get(code, "x")
    return Refusal(
        code, reason, json.dumps({"kind": "Status", "message": message, "details": {"causes": causes or []}})
    )


@pytest.mark.parametrize(
    ("error", "guarded", "expected"),
    [
        (refusal(404, 'secrets "db" not found'), False, NotFound),
        (refusal(409, "the object has been modified"), False, Conflict),
        (refusal(422, "the test operation failed"), True, Conflict),
        (refusal(422, "spec.x: Invalid value"), False, KubeError),
        (refusal(403, "exceeded quota: secrets"), False, KubeError),
        (refusal(403, "being terminated", [{"reason": "NamespaceTerminating"}]), False, NamespaceTerminating),
    ],
    ids=[
        "404-not-found",
        "409-conflict",
        "failed-patch-test-is-a-conflict",
        "422-otherwise-a-refusal",
        "quota-refusal",
        "terminating-namespace",
    ],
)
def test_refusals_become_the_cores_errors_with_the_servers_message(error, guarded, expected):
    """Each status maps to one class; the message is the server's one line, not the HTTP dump."""
    mapped = translated(error, guarded_patch=guarded)
    assert type(mapped) is expected
    assert json.loads(error.body)["message"] in str(mapped) and str(error.status) in str(mapped)


class ApiServer:
    """Routes of a fake API server; every request it gets is kept for the test to inspect."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.requests: list[web.Request] = []
        self.bodies: list[Any] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.bodies.append(json.loads(await request.text()) if request.can_read_body else None)
        handler = self.routes.get((request.method, request.path))
        return await handler(request) if handler else status(404, f"{request.path} not found")


def served(
    routes: dict[tuple[str, str], Handler],
    scenario: Callable[[KubeClient, ApiServer], Awaitable[None]],
    tokens: list[str] | None = None,
) -> ApiServer:
    """Run `scenario` with a KubeClient logged in (token after token from `tokens`) to the routes."""
    server = ApiServer(routes)
    logins = iter(tokens or ["t0"])

    async def run() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        async with TestServer(app) as test_server:
            url = str(test_server.make_url(""))
            http = KubeHTTP(lambda: kopf.ConnectionInfo(server=url, token=next(logins)), user_agent=AGENT, pool_size=2)
            try:
                await scenario(KubeClient(http), server)
            finally:
                await http.close()

    asyncio.run(run())
    return server


def answer(body: dict[str, Any]) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body)

    return handler


def refuse(code: int, message: str, causes: list[dict[str, str]] | None = None) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return status(code, message, causes)

    return handler


SECRET = "/api/v1/namespaces/team-a/secrets/db-connection"


def test_a_secret_is_read_as_a_dict_and_a_missing_one_as_none():
    async def scenario(kube: KubeClient, _: ApiServer) -> None:
        secret = await kube.read_secret("team-a", "db-connection")
        assert secret is not None and secret["metadata"]["resourceVersion"] == "7"
        assert await kube.read_secret("team-a", "other") is None

    served({("GET", SECRET): answer({"metadata": {"name": "db-connection", "resourceVersion": "7"}})}, scenario)


def test_a_stale_replace_raises_conflict_and_a_write_returns_the_new_version():
    async def scenario(kube: KubeClient, _: ApiServer) -> None:
        with pytest.raises(Conflict, match="please apply your changes"):
            await kube.replace_secret("team-a", "db-connection", {"metadata": {"resourceVersion": "1"}})
        assert await kube.create_secret("team-a", {"metadata": {"name": "new"}}) == "9"

    routes = {
        ("PUT", SECRET): refuse(409, "the object has been modified; please apply your changes to the latest version"),
        ("POST", "/api/v1/namespaces/team-a/secrets"): answer({"metadata": {"resourceVersion": "9"}}),
    }
    served(routes, scenario)


def test_a_finalizer_patch_is_a_guarded_json_patch_and_its_failed_test_a_conflict():
    key = ObjectKey(Kind.DATABASE, "team-a", "orders")
    path = "/apis/kumo.dev/v1alpha1/namespaces/team-a/databases/orders"

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        with pytest.raises(Conflict):
            await kube.add_finalizer(key, ["other"], "kumo.dev/finalizer")
        gone = ObjectKey(Kind.DATABASE, "team-a", "gone")
        await kube.remove_finalizer(gone, ["kumo.dev/finalizer"], "kumo.dev/finalizer")  # 404: nothing to hold
        await kube.patch_status(key, {"phase": "Ready"}, resource_version="5")
        patch, _, merge = server.requests
        assert patch.content_type == JSON_PATCH and server.bodies[0][0] == {
            "op": "test",
            "path": "/metadata/finalizers",
            "value": ["other"],
        }
        assert merge.path == f"{path}/status" and merge.content_type == MERGE_PATCH
        assert server.bodies[2] == {"status": {"phase": "Ready"}, "metadata": {"resourceVersion": "5"}}

    routes = {
        ("PATCH", path): refuse(422, "the server rejected our request due to an error in our request"),
        ("PATCH", f"{path}/status"): answer({}),
    }
    served(routes, scenario)


def test_lists_follow_continue_tokens_and_secrets_come_as_metadata_only():
    pages = {"": {"items": [{"n": 1}], "metadata": {"continue": "p2"}}, "p2": {"items": [{"n": 2}], "metadata": {}}}

    async def objects(request: web.Request) -> web.Response:
        return web.json_response(pages[request.query.get("continue", "")])

    async def secrets(_: web.Request) -> web.Response:
        return web.json_response({"items": [{"metadata": {"name": "s"}}], "metadata": {}})

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        assert [item["n"] async for item in kube.list_objects(Kind.BUCKET, None)] == [1, 2]
        listed = [meta async for meta in kube.list_secret_metadata("team-a", "app.kubernetes.io/managed-by=kumo")]
        assert listed == [{"name": "s"}]
        first, second, secret_list = server.requests
        assert first.query == {"limit": str(PAGE)} and second.query == {"limit": str(PAGE), "continue": "p2"}
        assert secret_list.query["labelSelector"] == "app.kubernetes.io/managed-by=kumo"
        assert "as=PartialObjectMetadataList" in secret_list.headers["Accept"]

    routes = {
        ("GET", "/apis/kumo.dev/v1alpha1/buckets"): objects,
        ("GET", "/api/v1/namespaces/team-a/secrets"): secrets,
    }
    served(routes, scenario)


def test_requests_carry_the_user_agent_and_a_401_logs_in_again_once():
    """The bench's audit log attributes writes by User-Agent; a rotated token is picked up."""

    async def namespace(request: web.Request) -> web.Response:
        if request.headers["Authorization"] != "Bearer fresh":
            return status(401, "Unauthorized")
        return web.json_response({"metadata": {"uid": "cluster-uid"}})

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        assert await kube.namespace_uid("kube-system") == "cluster-uid"
        assert [r.headers["Authorization"] for r in server.requests] == ["Bearer stale", "Bearer fresh"]
        assert {r.headers["User-Agent"] for r in server.requests} == {AGENT}

    served({("GET", "/api/v1/namespaces/kube-system"): namespace}, scenario, tokens=["stale", "fresh"])


def test_a_refused_event_is_logged_not_raised():
    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        key = ObjectKey(Kind.BUCKET, "gone", "b")
        await kube.emit_event(key, "uid", "Normal", "Created", "created")
        assert server.bodies[0]["involvedObject"]["name"] == "b"

    causes = [{"reason": "NamespaceTerminating"}]
    served({("POST", "/api/v1/namespaces/gone/events"): refuse(403, "being terminated", causes)}, scenario)


def test_the_lease_store_reads_a_missing_lease_as_none_and_a_lost_race_as_lease_conflict():
    leases = "/apis/coordination.k8s.io/v1/namespaces/kumo-system/leases"

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        store = KubeLeaseStore(kube.http, "kumo-system", "kumo-controller", request_timeout=2.0)
        assert await store.get() is None
        with pytest.raises(LeaseConflict):
            await store.create(LeaseRecord(holder="me"))
        updated = await store.update(LeaseRecord(holder="me", resource_version="41"))
        assert updated.resource_version == "42" and updated.holder == "me"
        assert server.bodies[2]["metadata"]["resourceVersion"] == "41"

    routes = {
        ("POST", leases): refuse(409, 'leases.coordination.k8s.io "kumo-controller" already exists'),
        ("PUT", f"{leases}/kumo-controller"): answer(
            {"metadata": {"resourceVersion": "42"}, "spec": {"holderIdentity": "me"}}
        ),
    }
    served(routes, scenario)


def test_an_unreachable_api_server_is_a_kube_error_in_one_line():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        http = KubeHTTP(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), user_agent=AGENT)
        try:
            with pytest.raises(KubeError, match=f"cannot reach the Kubernetes API server at 127.0.0.1:{port}"):
                await KubeClient(http).namespace_uid("kube-system")
        finally:
            await http.close()

    asyncio.run(scenario())


def test_a_429_with_retry_after_is_asked_again_as_client_go_does():
    """The API server's "come back later" (a watch cache still initializing, the in-flight limit)
    is waited out: the call succeeds on a later try instead of failing a start-up listing."""
    answers = [status(429, "storage is (re)initializing"), web.json_response({"metadata": {"uid": "cluster-uid"}})]

    async def namespace(_: web.Request) -> web.Response:
        reply = answers.pop(0)
        if reply.status == 429:
            reply.headers["Retry-After"] = "0"
        return reply

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        assert await kube.namespace_uid("kube-system") == "cluster-uid"
        assert len(server.requests) == 2

    served({("GET", "/api/v1/namespaces/kube-system"): namespace}, scenario)


def test_a_429_without_retry_after_is_an_error_at_once():
    """Without Retry-After the server did not ask to come back: the refusal is the caller's."""

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        with pytest.raises(KubeError, match="429"):
            await kube.namespace_uid("kube-system")
        assert len(server.requests) == 1

    served({("GET", "/api/v1/namespaces/kube-system"): refuse(429, "slow down")}, scenario)


def test_the_kubeconfig_flag_reaches_the_login(tmp_path, monkeypatch):
    """`kumo run --kubeconfig F` logs in with F (checked before kopf starts), and the watches and
    kumo's own calls share that login; the process environment is left as it was."""
    from kumo.controller.runtime import operator
    from kumo.controller.runtime.config import ControllerConfig
    from kumo.controller.runtime.login import ClusterLogin

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.delenv("KUBECONFIG", raising=False)
    started: list[dict[str, Any]] = []

    async def operator_stub(**options: Any) -> None:
        started.append(options)

    logins: list[ClusterLogin] = []
    build_registry = operator.build_registry

    def recording(config: ControllerConfig, providers: Any, cluster_login: ClusterLogin) -> Any:
        logins.append(cluster_login)
        return build_registry(config, providers, cluster_login)

    monkeypatch.setattr(operator.kopf, "operator", operator_stub)
    monkeypatch.setattr(operator, "build_registry", recording)
    monkeypatch.setattr(operator.kopf, "login_with_service_account", lambda **_: None)  # as outside a Pod
    asyncio.run(operator.run(ControllerConfig(kubeconfig=str(kubeconfig))))
    credentials = logins[0].consumer()(settings=kopf.OperatorSettings())
    assert started and credentials is not None and "KUBECONFIG" not in os.environ
    assert (
        credentials.server == "https://127.0.0.1:6443" and credentials.as_http_headers()["Authorization"] == "Bearer t"
    )
