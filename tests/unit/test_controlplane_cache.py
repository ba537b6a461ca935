"""The control-plane binaries are built once into the cache, even when two test processes (the
pytest-xdist workers of `make test`) ask for them at the same moment: a build holds a lock on the
cache entry, and whoever gets the lock next looks again before building."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from kumo.testbed import cluster

BINARIES = ("kube-apiserver", "etcd", "kube-controller-manager")


@pytest.fixture
def empty_cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("KUMO_CACHE_DIR", str(tmp_path))
    for name in ("KUBE_APISERVER", "ETCD", "KUBE_CONTROLLER_MANAGER"):
        monkeypatch.delenv(f"KUMO_{name}", raising=False)
    return tmp_path


def _fill(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for binary in BINARIES:
        (target / binary).write_text("")


def test_a_build_holds_the_cache_entrys_lock(monkeypatch, empty_cache):
    held: list[bool] = []

    def build(target: Path, progress: bool) -> None:
        with (target.parent / f"{target.name}.lock").open("w") as other:  # as another worker would
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
        _fill(target)

    monkeypatch.setattr(cluster, "_build", build)
    binaries = cluster.ensure_binaries(progress=False)
    assert held == [True]
    assert binaries.etcd.exists() and str(binaries.etcd).startswith(str(empty_cache))


def test_binaries_built_by_another_while_waiting_for_the_lock_are_not_built_again(monkeypatch, empty_cache):
    looks: list[bool] = []
    builds: list[Path] = []
    real_all_present = cluster._all_present

    def all_present(binaries: cluster.Binaries) -> bool:
        present = real_all_present(binaries)
        if not looks:  # the other worker finishes its build after this first look
            _fill(binaries.etcd.parent)
        looks.append(present)
        return present

    monkeypatch.setattr(cluster, "_all_present", all_present)
    monkeypatch.setattr(cluster, "_build", lambda target, progress: builds.append(target))
    binaries = cluster.ensure_binaries(progress=False)
    assert looks == [False, True]
    assert builds == []
    assert binaries.kube_apiserver.exists()
