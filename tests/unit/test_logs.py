"""What `kumo run` writes at INFO: no kopf per-event chatter, no Python function names."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.logs import KopfChatter, configure_logging
from kumo.controller.runtime.operator import build_registry
from kumo.providers.registry import ProviderRegistry

from .test_reconciler import EXTERNAL, NAME, NS, SECRET, World, _mark_deleted


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


@pytest.mark.parametrize(
    "message",
    [
        "Handler 'watch-databases' succeeded.",
        "Handler 'watch-secrets' succeeded.",
        "Activity 'start-controller' succeeded.",
        "Timer 'refresh' succeeded.",
    ],
)
def test_kopf_success_lines_are_debug(message: str) -> None:
    record = _record("kopf.objects", logging.INFO, message)
    assert KopfChatter(logging.INFO).filter(record) is False
    record = _record("kopf.objects", logging.INFO, message)
    assert KopfChatter(logging.DEBUG).filter(record) is True
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")


@pytest.mark.parametrize(
    ("name", "level", "message"),
    [
        ("kopf.objects", logging.ERROR, "Handler 'watch-databases' failed with an exception. Will ignore."),
        ("kopf._core.reactor.running", logging.INFO, "Signal SIGTERM is received. Operator is stopping."),
        ("kumo.controller.core.reconciler", logging.INFO, "Handler 'x' succeeded."),  # not kopf's: kept
    ],
)
def test_other_lines_are_kept_as_they_are(name: str, level: int, message: str) -> None:
    record = _record(name, level, message)
    assert KopfChatter(logging.INFO).filter(record) is True
    assert record.levelno == level


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_log_drops_kopf_success_at_info(restored_root: None) -> None:
    configure_logging("text", "INFO")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("kopf.objects").info("Handler 'watch-databases' succeeded.")
    logging.getLogger("kumo.controller.core.reconciler").info("created Database ns/db: kumo-db-1")
    written = stream.getvalue()
    assert "succeeded" not in written
    assert "created Database ns/db: kumo-db-1" in written


def test_every_kopf_handler_has_an_explicit_id() -> None:
    """Without one kopf names a handler by its qualified name (`build_registry.<locals>.startup`),
    which it then writes into log lines."""
    registry = build_registry(ControllerConfig(), ProviderRegistry())
    handlers = [
        handler
        for part in (registry._activities, registry._watching, registry._spawning, registry._changing)
        for handler in part.get_all_handlers()
    ]
    assert len(handlers) >= 6  # login, start-up, clean-up, Secrets, ProviderConfigs and each kind
    for handler in handlers:
        assert "<" not in handler.id and "." not in handler.id, handler.id


def _changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kumo.controller.core.reconciler" and r.levelno == logging.INFO
    ]


def test_each_cloud_change_is_one_info_line_naming_the_object_and_the_resource(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kumo.controller.core.reconciler")
    world = World(slow_delete=True)
    world.reconcile()
    world.body["spec"]["storageGB"] = 40
    world.body["metadata"]["generation"] = 2
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50  # drift, put back under Correct
    world.reconcile()
    world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/password-state"] = "pending"
    world.reconcile()
    password = world.kube.secret_value(NS, SECRET, "password")
    _mark_deleted(world)
    world.reconcile()  # the delete starts
    world.reconcile()  # still deleting: polled, not news
    world.reconcile()  # gone at the delete call
    where = f"Database {NS}/{NAME}: {EXTERNAL}"
    assert _changes(caplog) == [
        f"created {where} (cloud state: available)",
        f"updated {where} (storageGB)",
        f"updated {where} (storageGB; drift put back)",
        f"set the master password of {where}",
        f"deleting {where} (cloud state: deleting)",
        f"deleted {where}",
    ]
    assert not [r for r in caplog.records if password in r.getMessage()]


def test_a_slow_delete_is_one_line_when_asked_and_quiet_after(caplog: pytest.LogCaptureFixture) -> None:
    """RDS and Cloud SQL take minutes: the delete call is the one line; the polls that follow and
    the resource vanishing are not news (a pass that ran on a stale copy would say it twice)."""
    caplog.set_level(logging.INFO, logger="kumo.controller.core.reconciler")
    world = World(slow_delete=True)
    world.reconcile()
    _mark_deleted(world)
    world.reconcile()
    world.cloud.records.pop(EXTERNAL)  # the cloud finished deleting it
    world.reconcile()
    assert _changes(caplog)[1:] == [f"deleting Database {NS}/{NAME}: {EXTERNAL} (cloud state: deleting)"]
