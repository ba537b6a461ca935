"""The watch of one credentials Secret (controller/runtime/secretwatch.py), against a scripted API:
what it asks the server, what it delivers, and how it recovers (bookmarks, the end of a stream,
410 Gone as an event and as a status, errors with back-off)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from kumo.controller.core.kubeapi import KubeError
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.kubehttp import Refusal
from kumo.controller.runtime.secretwatch import SecretWatch, SecretWatches

from .test_kube_client import ApiServer, answer, served, status
from .test_provider_config_status import World
from .test_provider_config_status import config as pc_config

NS, NAME = "kumo-system", "aws-credentials"
PATH = f"/api/v1/namespaces/{NS}/secrets"
CLUSTER = "ClusterProviderConfig"
SAFETY = 5.0  # seconds: only ends a broken test instead of hanging it, never decides an outcome


def secret(version: str, key: str = "old") -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": NAME, "resourceVersion": version}, "data": {"key": key}}


def listing(version: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version}, "items": list(items)}


def event(event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "object": body}


def bookmark(version: str) -> dict[str, Any]:
    return event("BOOKMARK", {"metadata": {"resourceVersion": version}})


def gone_event() -> dict[str, Any]:
    return event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})


def gone_status() -> KubeError:
    """What KubeHTTP raises for an HTTP 410 answer: the core's error, caused by the Refusal."""
    error = KubeError("Kubernetes API 410 Gone: too old resource version")
    error.__cause__ = Refusal(410, "Gone", "{}")
    return error


class ScriptedAPI:
    """Answers lists and watches from a script; once it runs out, the next call waits for the
    test to cancel the watch (and tells the test so through `exhausted`)."""

    def __init__(self, lists: list[Any], streams: list[tuple[list[dict[str, Any]], Exception | None]]) -> None:
        self.lists, self.streams = lists, streams
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.exhausted = asyncio.Event()

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str | int | None] | None = None
    ) -> dict[str, Any]:
        assert (method, path) == ("GET", PATH)
        self.calls.append(("list", dict(params or {})))
        if not self.lists:
            await self._end_of_script()
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def stream(
        self, path: str, *, params: Mapping[str, str | int | None], timeout: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        assert path == PATH and timeout > float(params["timeoutSeconds"] or 0)
        self.calls.append(("watch", dict(params)))
        if not self.streams:
            await self._end_of_script()
        events, end = self.streams.pop(0)
        for each in events:
            yield each
        if end is not None:
            raise end

    async def _end_of_script(self) -> None:
        self.exhausted.set()
        await asyncio.Event().wait()  # until cancelled


def run_watch(api: ScriptedAPI) -> tuple[list[tuple[str | None, dict[str, Any]]], list[int]]:
    """Run one SecretWatch through the script; the events it delivered and the back-offs it took."""
    delivered: list[tuple[str | None, dict[str, Any]]] = []
    waits: list[int] = []

    def no_wait(failures: int) -> float:
        waits.append(failures)
        return 0.0

    async def scenario() -> None:
        watch = SecretWatch(api, (NS, NAME), lambda t, body: delivered.append((t, dict(body))), backoff=no_wait)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(api.exhausted.wait(), SAFETY)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    return delivered, waits


def watched_from(api: ScriptedAPI) -> list[str | int | None]:
    return [params["resourceVersion"] for kind, params in api.calls if kind == "watch"]


def test_it_lists_then_watches_by_name_and_delivers_what_the_server_sends() -> None:
    """The first listing is delivered as kopf delivered its own (type None: what there is, no
    news); the watch asks for this one Secret from the listing's version, with bookmarks and a
    server-side timeout; its events follow in order."""
    api = ScriptedAPI(
        [listing("10", secret("9"))],
        [([event("MODIFIED", secret("11", "rotated")), event("DELETED", secret("12", "rotated"))], None)],
    )
    delivered, waits = run_watch(api)
    assert [(t, body["data"]["key"]) for t, body in delivered] == [
        (None, "old"),
        ("MODIFIED", "rotated"),
        ("DELETED", "rotated"),
    ]
    kind, params = api.calls[1]
    assert kind == "watch" and params == {
        "fieldSelector": f"metadata.name={NAME}",
        "watch": "1",
        "allowWatchBookmarks": "true",
        "resourceVersion": "10",
        "timeoutSeconds": 300,
    }
    assert api.calls[0] == ("list", {"fieldSelector": f"metadata.name={NAME}"})
    assert waits == []


def test_a_stream_the_server_ended_continues_from_the_last_version_bookmarks_included() -> None:
    api = ScriptedAPI(
        [listing("10", secret("9"))],
        [([event("MODIFIED", secret("11"))], None), ([bookmark("40")], None), ([], None)],
    )
    delivered, waits = run_watch(api)
    assert watched_from(api) == ["10", "11", "40", "40"]
    assert [t for t, _ in delivered] == [None, "MODIFIED"], "a bookmark is no event of the Secret"
    assert [kind for kind, _ in api.calls].count("list") == 1, "no listing again after a stream ends"
    assert waits == []


@pytest.mark.parametrize("gone", [gone_event(), gone_status()], ids=["error-event", "http-status"])
def test_a_version_too_old_lists_again_at_once_and_delivers_what_changed_meanwhile(gone: Any) -> None:
    """410 Gone (the version was compacted away while the watch was reconnecting): list again
    without waiting; the Secret rotated during the gap arrives as MODIFIED."""
    first_stream: tuple[list[dict[str, Any]], Exception | None] = (
        ([gone], None) if isinstance(gone, dict) else ([], gone)
    )
    api = ScriptedAPI(
        [listing("10", secret("9")), listing("90", secret("85", "rotated"))],
        [first_stream],
    )
    delivered, waits = run_watch(api)
    assert [(t, body["data"]["key"]) for t, body in delivered] == [(None, "old"), ("MODIFIED", "rotated")]
    assert watched_from(api) == ["10", "90"]
    assert waits == [], "the first 410 is answered by a listing at once"


def test_a_secret_created_or_deleted_while_unwatched_is_told_by_the_next_listing() -> None:
    """Absent at first (nothing to tell), created during a gap (ADDED), deleted during the next
    (DELETED, with a stand-in body naming it: nothing of it is left to send)."""
    api = ScriptedAPI(
        [listing("10"), listing("20", secret("15")), listing("30")],
        [([gone_event()], None), ([bookmark("21")], gone_status())],
    )
    delivered, _ = run_watch(api)
    assert [(t, body["metadata"]) for t, body in delivered] == [
        ("ADDED", secret("15")["metadata"]),
        ("DELETED", {"namespace": NS, "name": NAME}),
    ]


def test_failures_back_off_longer_each_time_until_the_server_answers_again() -> None:
    """A refused list and a broken stream are retried after a back-off that grows with each
    failure in a row; an event from the server resets the count."""
    refused = KubeError("Kubernetes API 403 Forbidden: secrets is forbidden")
    api = ScriptedAPI(
        [refused, refused, listing("10", secret("9"))],
        [([], KubeError("connection reset")), ([event("MODIFIED", secret("11"))], KubeError("connection reset"))],
    )
    delivered, waits = run_watch(api)
    assert waits == [1, 2, 3, 1]
    assert [t for t, _ in delivered] == [None, "MODIFIED"]
    assert watched_from(api) == ["10", "10", "11"], "the same version again after a failed stream"


def test_a_410_right_after_a_listing_backs_off_rather_than_spin() -> None:
    api = ScriptedAPI(
        [listing("10", secret("9")), listing("11", secret("9"))], [([gone_event()], None), ([gone_event()], None)]
    )
    _, waits = run_watch(api)
    assert waits == [2], "the first 410 lists at once, the second in a row waits"


def test_a_failing_consumer_does_not_end_the_watch() -> None:
    api = ScriptedAPI(
        [listing("10", secret("9"))], [([event("MODIFIED", secret("11")), event("DELETED", secret("12"))], None)]
    )
    seen: list[str | None] = []

    def consumer(event_type: str | None, body: Mapping[str, Any]) -> None:
        seen.append(event_type)
        if event_type == "MODIFIED":
            raise RuntimeError("a bug")

    async def scenario() -> None:
        task = asyncio.create_task(SecretWatch(api, (NS, NAME), consumer).run())
        await asyncio.wait_for(api.exhausted.wait(), SAFETY)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert seen == [None, "MODIFIED", "DELETED"]


def test_one_watch_per_followed_secret_until_unfollowed_or_stopped() -> None:
    async def scenario() -> None:
        api = ScriptedAPI([], [])
        watches = SecretWatches(api, lambda *_: None)
        watches.follow((NS, NAME))
        watches.follow((NS, NAME))
        watches.follow(("shop", "gcp"))
        assert watches.followed == {(NS, NAME), ("shop", "gcp")}
        first = watches._tasks[(NS, NAME)]
        watches.unfollow((NS, NAME))
        await asyncio.gather(first, return_exceptions=True)
        assert first.cancelled() and watches.followed == {("shop", "gcp")}
        await watches.stop()
        watches.follow((NS, NAME))
        assert watches.followed == set(), "a stopped controller starts no watch"

    asyncio.run(scenario())


def test_a_config_follows_its_credentials_secret_and_a_rotation_requeues_its_users() -> None:
    """A ClusterProviderConfig's Secret lives in the controller's namespace, which --namespace
    may leave out of kopf's watches: its own watch delivers the rotation all the same. Two configs
    naming one Secret share one watch, which ends when neither names it any more."""
    rotated = secret("12", "rotated")
    api = ScriptedAPI([listing("10", secret("9"))], [([event("MODIFIED", rotated)], None)])

    async def scenario() -> None:
        world = World()
        configs = replace(world.configs, watch_api=api)
        user = world.use("orders", {"name": "aws"})
        for name in ("aws", "aws-copy"):
            configs.on_config_event(CLUSTER, None, pc_config(CLUSTER, name, secret=NAME))
        assert configs._watches is not None and configs._watches.followed == {(NS, NAME)}
        await asyncio.wait_for(api.exhausted.wait(), SAFETY)
        assert await world.drain() == [user], "the listing only records; the rotation requeues"
        configs.on_config_event(CLUSTER, "DELETED", pc_config(CLUSTER, "aws"))
        assert configs._watches.followed == {(NS, NAME)}, "still named by aws-copy"
        configs.on_config_event(CLUSTER, "DELETED", pc_config(CLUSTER, "aws-copy"))
        assert configs._watches.followed == set()

    asyncio.run(scenario())
    assert [kind for kind, _ in api.calls] == ["list", "watch", "watch"], "one watch for both configs"


# ---------------------------------------------------------------------- the stream itself (KubeHTTP)


def test_kubehttp_streams_one_object_per_line_however_the_chunks_fall() -> None:
    """A line may arrive in pieces and a chunk may hold several; blank lines (keep-alives) are
    skipped; the stream ends when the server ends it."""
    lines = [json.dumps(event("MODIFIED", secret(str(n)))) for n in range(3)]
    wire = ("\n".join(lines) + "\n\n").encode()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(wire), 7):  # 7-byte pieces: every line split somewhere
            await response.write(wire[start : start + 7])
        await response.write_eof()
        return response

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        got = [each async for each in kube.http.stream(PATH, params={"watch": "1", "empty": None}, timeout=30)]
        assert [each["object"]["metadata"]["resourceVersion"] for each in got] == ["0", "1", "2"]
        assert dict(server.requests[0].query) == {"watch": "1"}

    served({("GET", PATH): watch}, scenario)


def test_a_watch_never_takes_a_connection_from_the_request_pool() -> None:
    """Open watches, as many as the pool has connections, leave the pool free for the controller's
    calls (watches taking them would leave this call waiting until the safety bound)."""
    release = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write((json.dumps(bookmark("5")) + "\n").encode())
        await release.wait()  # the server holds the watch open
        return response

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        streams = [kube.http.stream(PATH, params={"watch": "1"}, timeout=30) for _ in range(kube.http.pool_size)]
        for stream in streams:
            assert (await anext(stream))["type"] == "BOOKMARK"
        assert await asyncio.wait_for(kube.namespace_uid("kube-system"), SAFETY) == "cluster-uid"
        release.set()
        for stream in streams:
            await stream.aclose()

    uid = answer({"metadata": {"uid": "cluster-uid"}})
    served({("GET", PATH): watch, ("GET", "/api/v1/namespaces/kube-system"): uid}, scenario)


def test_a_watch_refused_with_410_lists_again_and_a_401_logs_in_again_once() -> None:
    answers = [status(401, "Unauthorized"), status(410, "too old resource version")]

    async def watch(_: web.Request) -> web.Response:
        return answers.pop(0)

    async def scenario(kube: KubeClient, server: ApiServer) -> None:
        with pytest.raises(KubeError) as refused:
            async for _ in kube.http.stream(PATH, params={"watch": "1"}, timeout=30):
                pass
        assert isinstance(refused.value.__cause__, Refusal) and refused.value.__cause__.status == 410
        assert [r.headers["Authorization"] for r in server.requests] == ["Bearer stale", "Bearer fresh"]

    served({("GET", PATH): watch}, scenario, tokens=["stale", "fresh"])
