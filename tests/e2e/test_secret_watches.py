"""Which Secrets reach the controller, through the real API server.

kopf's Secret watch is label-selected by the API server (kumo's own connection Secrets only), and
each credentials Secret a provider config names has a watch of its own
(controller/runtime/secretwatch.py). So:

- a rotated credentials Secret still requeues its config's users at once, in the objects'
  namespace and in the controller's (which the test controller's kopf watches do not serve: its
  --namespace is `t-*`);
- a Secret of the namespace that is neither kumo's nor named by a config never reaches the
  controller: the controller's DEBUG log names every Secret kopf hands it, and a kumo Secret
  written after the unrelated one is named while the unrelated one never is (one watch delivers
  a namespace's events in order, so the later Secret's arrival means the earlier one's was due);
- a deleted connection Secret still comes back (tests/e2e/test_controller.py,
  test_deleted_secret_is_recreated, runs unchanged).
"""

from __future__ import annotations

from typing import Any

import pytest
from kumo.controller.core.providerconfig import ConfigKey

from kumo import api
from kumo.api import LABEL_MANAGED_BY, MANAGED_BY

from .conftest import Kumo, example, unique
from .test_providerconfig_status import CONTROLLER_NAMESPACE, cluster_config, wait_config_ready  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e

TARGET_CLOUDS = ("aws",)  # moto takes any access key, so a rotated one still works
SEEN_SECONDS = 30.0  # a bound on a broken run's wait only: the requeue line comes within a second


def rotate(kumo: Kumo, namespace: str, name: str) -> None:
    """A new access key in the credentials Secret (what a user's rotation writes)."""
    kumo.core.patch_namespaced_secret(name, namespace, {"stringData": {"aws_access_key_id": unique("AKIAROTATED")}})


def requeue_line(config: ConfigKey, secret: tuple[str, str], users: int) -> str:
    """ProviderConfigs' log line for a changed credentials Secret (providerconfigs.py `_changed`)."""
    kind, namespace, name = config
    described = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    return f"{described} credentials Secret {secret[0]}/{secret[1]} changed: {users} object(s) using it requeued"


def test_a_rotated_credentials_secret_requeues_its_configs_users(kumo: Kumo, provider_config: str) -> None:
    wait_config_ready(kumo, provider_config)
    bucket = unique("bk")
    kumo.create(example("aws", "Bucket", bucket))
    kumo.wait_ready("Bucket", bucket)
    secret = (kumo.namespace, f"{provider_config}-credentials")
    rotate(kumo, *secret)
    line = requeue_line((api.PROVIDER_CONFIG.kind, kumo.namespace, provider_config), secret, 1)
    kumo.wait_for(line, lambda: line in kumo.controller.log_text(), SEEN_SECONDS)
    kumo.wait_ready("Bucket", bucket)


def test_a_rotated_cluster_config_secret_in_an_unwatched_namespace_requeues_its_users(
    kumo: Kumo,
    cluster_config: str,  # noqa: F811 - the fixture imported above
) -> None:
    """The controller's namespace is outside the test controller's `t-*`: this Secret was read
    every 5 s before it had a watch of its own."""
    bucket = example("aws", "Bucket", unique("bk"))
    bucket["spec"]["providerConfigRef"] = {"name": cluster_config}
    kumo.create(bucket)
    kumo.wait_ready("Bucket", bucket["metadata"]["name"])
    secret = (CONTROLLER_NAMESPACE, f"{cluster_config}-credentials")
    rotate(kumo, *secret)
    line = requeue_line((api.CLUSTER_PROVIDER_CONFIG.kind, "", cluster_config), secret, 1)
    kumo.wait_for(line, lambda: line in kumo.controller.log_text(), SEEN_SECONDS)


def secret_manifest(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "stringData": {"token": "not-kumos"}}


def test_a_secret_neither_kumos_nor_named_by_a_config_never_reaches_the_controller(kumo: Kumo) -> None:
    unrelated, later = unique("helm-release"), unique("kumo-marker")
    kumo.core.create_namespaced_secret(kumo.namespace, secret_manifest(unrelated))
    kumo.core.patch_namespaced_secret(unrelated, kumo.namespace, {"stringData": {"token": "changed"}})
    # A Secret kumo's watch does select, written after the unrelated one's create and change.
    kumo.core.create_namespaced_secret(kumo.namespace, secret_manifest(later, {LABEL_MANAGED_BY: MANAGED_BY}))
    seen = f"Secret {kumo.namespace}/{later}: "  # ADDED, or "listed" by a watch started after it
    kumo.wait_for(seen, lambda: seen in kumo.controller.log_text(), SEEN_SECONDS)
    log = kumo.controller.log_text()
    assert f"{kumo.namespace}/{unrelated}" not in log, "an unrelated Secret reached the controller"
    kumo.core.delete_namespaced_secret(later, kumo.namespace)
