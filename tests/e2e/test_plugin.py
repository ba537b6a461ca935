"""A third-party provider plugin, installed as a separate package, drives the real controller:
the example in examples/provider-plugin registers `localdir` through the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kumo.providers.registry import ProviderRegistry

from .conftest import condition, unique

pytestmark = pytest.mark.e2e


def test_example_plugin_is_discovered_like_the_builtin_ones():
    """`pip install examples/provider-plugin` is all it takes: the registry finds it."""
    registry = ProviderRegistry.discover()
    assert {"aws", "gcp", "localdir"} <= set(registry.providers) and not registry.unavailable


@pytest.fixture
def local_config(kumo, tmp_path: Path) -> Path:
    root = tmp_path / "buckets"
    kumo.create(
        {
            "apiVersion": "kumo.dev/v1alpha1",
            "kind": "ProviderConfig",
            "metadata": {"name": "local"},
            "spec": {"provider": "localdir", "providerOptions": {"buckets": {"root": str(root)}}},
        }
    )
    return root


def _bucket(name: str, **spec) -> dict:
    return {
        "apiVersion": "kumo.dev/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name},
        "spec": {"providerConfigRef": {"kind": "ProviderConfig", "name": "local"}, **spec},
    }


def test_plugin_bucket_lives_a_full_life_through_the_controller(kumo, local_config):
    """Apply -> Ready with a Secret; a spec edit reaches the plugin; a non-empty bucket is
    refused deletion until forceDestroy; then the directory is gone."""
    name = unique("lb")
    kumo.create(_bucket(name, versioning=True, labels={"team": "a"}))
    obj = kumo.wait_ready("Bucket", name)
    directory = local_config / obj["status"]["atProvider"]["externalName"]
    assert json.loads((directory / ".kumo.json").read_text())["versioning"] is True
    assert kumo.connection_secret("Bucket", name)["url"] == f"file://{directory}"
    kumo.patch("Bucket", name, {"spec": {"versioning": False}})
    kumo.wait_for("edit applied", lambda: json.loads((directory / ".kumo.json").read_text())["versioning"] is False)
    (directory / "data.txt").write_text("keep me")
    kumo.delete("Bucket", name)
    refused = kumo.wait_condition("Bucket", name, "Synced", "False")
    assert "spec.forceDestroy" in condition(refused, "Synced")["message"] and directory.exists()
    kumo.patch("Bucket", name, {"spec": {"forceDestroy": True}})
    kumo.wait_gone("Bucket", name)
    assert not directory.exists()


def test_plugin_validation_names_the_field(kumo, local_config):
    """The plugin's own validation reaches the Synced condition, and nothing is created."""
    name = unique("lb")
    kumo.create(_bucket(name, providerOptions={"root": "relative/path"}))
    obj = kumo.wait_condition("Bucket", name, "Synced", "False")
    assert condition(obj, "Synced")["reason"] == "InvalidSpec"
    assert "spec.providerOptions.root" in condition(obj, "Synced")["message"]
    assert not local_config.exists()
