"""Discovery of provider plugins through the `kumo.providers` entry-point group.

The built-in aws and gcp providers register through the same group as third-party packages, so
`pip install` is all a new provider needs. A plugin that fails to load (its SDK missing or
broken) is logged and skipped, never fatal: the rest of the controller keeps working and objects
that reference the missing provider report it in their Synced condition.

The controller discovers its plugins `lazy`: each is imported the first time a ProviderConfig
names it, so a cluster that only uses AWS never imports the Google Cloud SDKs (google-cloud-*,
grpc, protobuf: about 25 MB of resident memory) and vice versa. A broken plugin is then reported
at that first use, in the Synced condition of the objects that need it, rather than at start.
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
    pending: dict[str, EntryPoint] = field(default_factory=dict)  # found, not imported yet

    @classmethod
    def discover(cls, points: Iterable[EntryPoint] | None = None, *, lazy: bool = False) -> ProviderRegistry:
        """Every plugin of the entry-point group; `lazy` defers each import to its first `get`."""
        registry = cls()
        for point in points if points is not None else entry_points(group=ENTRY_POINT_GROUP):
            if lazy:
                registry.pending[point.name] = point
            else:
                registry._load(point)
        if lazy:
            log.info("provider plugins found (loaded on first use): %s", ", ".join(sorted(registry.pending)) or "none")
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
        point = self.pending.pop(name, None)
        if point is not None:
            self._load(point)  # blocks its caller once, for the import
        if name in self.providers:
            return self.providers[name]
        if name in self.unavailable:
            raise Unavailable(f"provider {name!r} is installed but failed to load: {self.unavailable[name]}")
        known = ", ".join(sorted({*self.providers, *self.pending})) or "none"
        raise Unavailable(f"no provider named {name!r} is installed (available: {known})")
