"""The Kubernetes client's refusals as the reconcile core receives them: its own error classes,
never the client library's `ApiException`, and plain dicts for Secrets."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes.client.rest import ApiException
from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.runtime.kube import KubeClient, translated


def refusal(status: int, message: str = "", causes: list[dict[str, str]] | None = None) -> ApiException:
    error = ApiException(status=status, reason={403: "Forbidden", 404: "Not Found", 409: "Conflict"}.get(status, "x"))
    error.body = json.dumps({"kind": "Status", "message": message, "details": {"causes": causes or []}})
    return error


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


class Response:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body).encode()


class SecretsApi:
    """CoreV1Api's Secret reads: one Secret, a 404 for any other name."""

    def read_namespaced_secret(self, name, namespace, _preload_content=True):
        if name != "db-connection":
            raise refusal(404, f'secrets "{name}" not found')
        return Response({"metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"}, "data": {}})

    def replace_namespaced_secret(self, name, namespace, body):
        raise refusal(409, "the object has been modified; please apply your changes to the latest version")


def client_over(core: object) -> KubeClient:
    kube = KubeClient.__new__(KubeClient)
    kube.core = core  # type: ignore[assignment]
    return kube


def test_a_secret_is_read_as_a_dict_and_a_missing_one_as_none():
    kube = client_over(SecretsApi())
    secret = asyncio.run(kube.read_secret("team-a", "db-connection"))
    assert secret is not None and secret["metadata"]["resourceVersion"] == "7"
    assert asyncio.run(kube.read_secret("team-a", "other")) is None


def test_a_stale_replace_raises_conflict_not_apiexception():
    """Before, a 409 escaped as the client library's ApiException."""
    kube = client_over(SecretsApi())
    with pytest.raises(Conflict):
        asyncio.run(kube.replace_secret("team-a", "db-connection", {"metadata": {"resourceVersion": "1"}}))
