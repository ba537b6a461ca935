"""kumo as one shard of a ring: `kumo run --shard-ring NAME`.

Several replicas share the objects, each acting on its own share, as assigned by an existing
sharder, timebertt/kubernetes-controller-sharding (v0.11.0). Its docs/implement-sharding.md is
the contract, and this module is kumo's side of it:

1. **Shard Lease.** Each replica holds a Lease of its own in the controller's namespace, named by
   its identity (holderIdentity = name) and labelled `alpha.sharding.timebertt.dev/controllerring
   =<ring>`, kept by the same elector as leader election (controller/runtime/leader.py). Workers,
   sweeps and ProviderConfig writes run only while it is held; a replica that loses it exits, as
   a deposed leader does. There is no global leader: every replica is active on its own shard.
2. **Label-selected watches.** The sharder labels each Bucket and Database
   `shard.alpha.sharding.timebertt.dev/<ring>=<shard>`; the watches and the start-up listing ask
   the API server only for those labelled for this replica, so the cache, the queue and the
   sweeps hold only them. Connection Secrets follow their owner onto its shard (the ring lists
   them as controlled resources, and kumo copies the owner's label when it writes one), and the
   Secret watch and listing are selected the same way (`Shard.secret_selector`). A Secret the
   sharder moves away leaves the watch as a DELETED event, as a deleted one does; the replica
   reads it to tell which (operator.py `Controller._deleted_or_moved`).
3. **Drain.** When the sharder moves an object it adds `drain.alpha.sharding.timebertt.dev/<ring>`.
   The replica's worker (never two at once for one key, so no reconcile of it is in flight) then
   makes no further cloud call for it, removes the drain and the shard label in one patch (the
   acknowledgement), and forgets it; the sharder's webhook assigns it to its new shard.
4. **Guard.** Before each cloud create, update, delete or password change the reconciler asks
   `ShardAssignment.confirm`: the Lease must still be held within its renew deadline, and the
   cached object must carry this replica's shard label and no drain label. The cache, not a fresh
   GET: a GET costs one API call per mutation and closes no gap the drain handshake leaves open
   (the sharder only moves an object without our acknowledgement once our Lease has expired, and
   the renew deadline ends our acting before that).

Without --shard-ring none of this runs and kumo behaves as a single controller (or a leader-elected
pair) does.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core.assignment import NotAssigned
from kumo.controller.core.providerconfig import ConfigKey, config_key
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.config import ControllerConfig, OptionError
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.leader import KubeLeaseStore, LeaseRecord

from kumo import api
from kumo.api import LABEL_MANAGED_BY, MANAGED, MANAGED_BY

log = logging.getLogger(__name__)

# A shard's name is the name of its Lease (a DNS subdomain) and a label value: both hold for a
# DNS-1123 label of at most 63 characters (a Pod's name is one).
_SHARD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RING_NAME = _SHARD_NAME  # the ring's name is the name part of a label key: at most 63 as well


class ShardingError(OptionError):
    """--shard-ring or the replica's identity cannot name a ring or a shard (`kumo run` refuses
    to start, as for any wrong option)."""


@dataclass(frozen=True)
class Shard:
    """This replica's place in a ring: the labels it reads and writes."""

    ring: str
    identity: str

    @property
    def shard_label(self) -> str:
        return api.shard_label(self.ring)

    @property
    def drain_label(self) -> str:
        return api.drain_label(self.ring)

    @property
    def selector(self) -> str:
        """The label selector of this replica's objects, for watches and listings."""
        return f"{self.shard_label}={self.identity}"

    @property
    def secret_selector(self) -> str:
        """kumo's connection Secrets on this shard."""
        return f"{LABEL_MANAGED_BY}={MANAGED_BY},{self.selector}"

    @property
    def lease_labels(self) -> dict[str, str]:
        return {api.LABEL_CONTROLLER_RING: self.ring}

    def owns(self, body: Mapping[str, Any]) -> bool:
        """Assigned to this replica (draining or not)."""
        return _labels(body).get(self.shard_label) == self.identity

    def draining(self, body: Mapping[str, Any]) -> bool:
        """The sharder is taking it away (only the label's presence counts, not its value)."""
        return self.drain_label in _labels(body)

    def acknowledgement(self) -> dict[str, Any]:
        """The merge patch that acknowledges a drain: both labels removed in one write."""
        return {"metadata": {"labels": {self.shard_label: None, self.drain_label: None}}}


def _labels(body: Mapping[str, Any]) -> Mapping[str, str]:
    return (body.get("metadata") or {}).get("labels") or {}


def shard_of(config: ControllerConfig, hostname: Callable[[], str] = socket.gethostname) -> Shard | None:
    """The replica's shard, or None when it is not sharded. Its name is --leader-identity, else
    the hostname: in a Pod that is the Pod's name, unique in the ring and the same on a restart of
    the container (a new Pod gets a new name, so a new shard)."""
    if not config.shard_ring:
        return None
    identity = config.leader_identity or hostname()
    if not _RING_NAME.match(config.shard_ring):
        raise ShardingError(f"--shard-ring {config.shard_ring!r}: a ring's name is a DNS label (at most 63 characters)")
    if not _SHARD_NAME.match(identity):
        raise ShardingError(
            f"shard name {identity!r} (--leader-identity, else the hostname) must be a DNS label: it names a Lease"
        )
    return Shard(config.shard_ring, identity)


class ShardLeaseStore(KubeLeaseStore):
    """The shard Lease: leader election's Lease store, with the ring's label on every write (the
    sharder finds the ring's shards by that label, and holderIdentity equals the name)."""

    ring_labels: Mapping[str, str] = {}

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        body = super()._body(record)
        body["metadata"]["labels"] = dict(self.ring_labels)
        return body


def shard_lease_store(shard: Shard, *args: Any, **kwargs: Any) -> ShardLeaseStore:
    """A store for `shard`'s own Lease: KubeLeaseStore's arguments, named after the shard."""
    store = ShardLeaseStore(*args, **kwargs)
    store.ring_labels = shard.lease_labels
    return store


@dataclass
class ShardAssignment:
    """The core's `Assignment` (controller/core/assignment.py) for a replica of a ring: from the
    replica's cache and its Lease, no API call (see the module docstring for why)."""

    shard: Shard
    cache: ObjectCache
    holds_lease: Callable[[], bool]

    async def confirm(self, key: ObjectKey) -> None:
        if not self.holds_lease():
            raise NotAssigned(f"shard {self.shard.identity} does not hold its Lease")
        body = self.cache.get(key)
        if body is None:
            raise NotAssigned("no longer in this shard's watch (assigned elsewhere or deleted)")
        if not self.shard.owns(body):
            holder = _labels(body).get(self.shard.shard_label) or "no shard"
            raise NotAssigned(f"assigned to {holder}, not {self.shard.identity}")
        if self.shard.draining(body):
            raise NotAssigned("being drained to another shard")


async def used_anywhere(kube: KubeClient, config: ConfigKey) -> bool:
    """Whether any Bucket or Database in the cluster, on any shard, uses `config`.

    A shard's cache knows only its own objects, so before a replica gives up a ProviderConfig's
    in-use protection it asks the API server. Rare: only when the last of its own users went or a
    config in use is being deleted; an object moving between shards still counts (it exists).
    """
    namespace = config[1] or None  # a ClusterProviderConfig's users are in every namespace
    for kind in MANAGED:
        async for body in kube.list_objects(kind, namespace):
            if config_key(body) == config:
                return True
    return False
