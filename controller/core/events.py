"""Events about managed objects: each piece of news once, and counted where the runtime wants.

A reconcile that fails the same way on every retry would post the same Warning every few
seconds; the recorder remembers the last (reason, message) per object and posts only a change.
The runtime passes `on_event` to count some of them (drift detected and corrected, as metrics);
the core itself knows nothing of metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from kumo.controller.core.kubeapi import Kube
from kumo.controller.core.resources import ObjectKey

EventHook = Callable[[ObjectKey, str], None]  # (object, reason) of every event posted


class EventRecorder:
    def __init__(self, kube: Kube, on_event: EventHook | None = None) -> None:
        self.kube = kube
        self.on_event = on_event
        self._last: dict[ObjectKey, tuple[str, str]] = {}

    async def post(self, key: ObjectKey, uid: str, event_type: str, reason: str, message: str) -> None:
        if self._last.get(key) == (reason, message):
            return  # the same news again (a retry): say it once
        self._last[key] = (reason, message)
        if self.on_event is not None:
            self.on_event(key, reason)
        await self.kube.emit_event(key, uid, event_type, reason, message)

    def forget(self, key: ObjectKey) -> None:
        self._last.pop(key, None)
