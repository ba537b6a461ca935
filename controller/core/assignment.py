"""Whether this replica may still change the cloud for an object: the guard before each mutation.

With `kumo run --shard-ring` several replicas each act on their own share of the objects, as a
sharder (timebertt/kubernetes-controller-sharding) assigns them. The drain handshake keeps two
replicas from working on one object; this guard is kumo's own second line: right before every
create, update, delete or password change in the cloud the reconciler asks its `Assignment`,
and if the object is no longer this replica's (its shard label names another shard, a drain is
under way, or the replica's shard Lease is not held) the pass stops there, writes nothing, and
the runtime drops the object (the shard it belongs to now does the work).

The core only sees the Protocol; controller/runtime/sharding.py implements it from the
replica's cache and Lease. A controller that is not sharded uses `Unsharded`, which always
allows.
"""

from __future__ import annotations

from typing import Protocol

from kumo.controller.core.resources import ObjectKey


class NotAssigned(Exception):
    """This replica may not act on the object now; the message says why (never a secret)."""


class Assignment(Protocol):
    """Asked right before each cloud mutation."""

    async def confirm(self, key: ObjectKey) -> None:
        """Return if this replica may change the cloud resource of `key` now; else raise
        `NotAssigned`. Must be cheap: it runs before every mutation."""


class Unsharded:
    """One controller acts on every object: always allowed."""

    async def confirm(self, key: ObjectKey) -> None:
        return None
