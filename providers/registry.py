"""Discovery of provider plugins through the `kumo.providers` entry-point group.

The built-in aws and gcp providers register through the same group as third-party packages, so
`pip install` is all a new provider needs. A plugin that fails to load (its SDK missing or
broken) is logged and skipped, never fatal: the rest of the controller keeps working and objects
that reference the missing provider report it in their Synced condition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from .base import Provider, Unavailable

ENTRY_POINT_GROUP = "kumo.providers"
log = logging.getLogger(__name__)


@dataclass
class ProviderRegistry:
    """Loaded providers by name, plus the reason each unavailable one could not load."""

    providers: dict[str, Provider] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def discover(cls, points: Iterable[EntryPoint] | None = None) -> ProviderRegistry:
        registry = cls()
        for point in points if points is not None else entry_points(group=ENTRY_POINT_GROUP):
            registry._load(point)
        return registry

    def _load(self, point: EntryPoint) -> None:
        try:
            loaded = point.load()
            provider: Provider = loaded() if isinstance(loaded, type) else loaded
        except Exception as error:  # a broken plugin must not take the controller down
            reason = f"{type(error).__name__}: {error}"
            log.warning("provider plugin %r unavailable: %s", point.name, reason)
            self.unavailable[point.name] = reason
            return
        self.providers[point.name] = provider
        log.info("provider plugin %r loaded (kinds: %s)", point.name, ", ".join(sorted(provider.kinds)))

    def get(self, name: str) -> Provider:
        if name in self.providers:
            return self.providers[name]
        if name in self.unavailable:
            raise Unavailable(f"provider {name!r} is installed but failed to load: {self.unavailable[name]}")
        known = ", ".join(sorted(self.providers)) or "none"
        raise Unavailable(f"no provider named {name!r} is installed (available: {known})")
