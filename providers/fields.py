"""Field tables: one row per managed setting, saying how a provider maps it to the cloud.

A provider's managed settings (those it compares for drift and puts back) are declared once, as a
`FieldTable` of `Setting` rows. Each row says, for one portable field name:

- `desired`: the cloud value the spec renders to (`UNMANAGED` when the spec leaves the setting
  to the cloud, e.g. an absent `spec.maintenanceWindow`: then it is neither compared nor sent);
- `read`: the value as the cloud's answer reports it (the answer's shape is the provider's:
  a DescribeDBInstances entry, an instances.get resource, the reads of a bucket);
- `patch`: how the value is written back (a request parameter, a body fragment, a call), in
  whatever form the provider's update needs;
- `grow_only`: the cloud can raise the value but never lower it (disks), so a cloud value above
  the desired one is drift that cannot be corrected;
- `matches`: when a cloud value other than the desired one still satisfies it (version "16"
  is satisfied by 16.4);
- `initial`: the value the cloud gives a resource it has just created, when the cloud documents
  one (a new S3 bucket blocks public access), so a create need not write it.

`desired()`, the settings an observation reads back, drift and update's request are derived from
the table, so adding a portable setting is one row per provider (plus the CRD and the spec field).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .base import FieldDrift, ManagedResource, diff_settings

Answer = TypeVar("Answer")  # the cloud's answer a row reads its value from
Patch = TypeVar("Patch")  # how a row's value is written: a parameter name, a fragment builder, ...


class _Unmanaged:
    """The type of `UNMANAGED`; a single instance, compared by identity."""

    def __repr__(self) -> str:
        return "UNMANAGED"


UNMANAGED: Any = _Unmanaged()  # `Setting.desired` returns it when the spec leaves a setting to the cloud


@dataclass(frozen=True)
class Setting(Generic[Answer, Patch]):
    """One managed setting of one provider (see the module docstring)."""

    name: str
    desired: Callable[[ManagedResource], Any]
    read: Callable[[Answer], Any]
    patch: Patch
    grow_only: bool = False
    matches: Callable[[Any, Any], bool] = operator.eq
    initial: Any = UNMANAGED  # UNMANAGED: no documented initial value, so a create always writes it


class FieldTable(Generic[Answer, Patch]):
    """A provider's managed settings for one kind, in the order they are written and reported."""

    def __init__(self, *rows: Setting[Answer, Patch]) -> None:
        self.rows = rows
        self._by_name = {row.name: row for row in rows}
        if len(self._by_name) != len(rows):
            raise ValueError("a field table names each setting once")

    def __getitem__(self, name: str) -> Setting[Answer, Patch]:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(row.name for row in self.rows)

    @property
    def grow_only(self) -> frozenset[str]:
        return frozenset(row.name for row in self.rows if row.grow_only)

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        """The managed settings the spec renders to, keyed by portable field name; settings the
        spec leaves to the cloud are absent."""
        rendered = ((row.name, row.desired(resource)) for row in self.rows)
        return {name: value for name, value in rendered if value is not UNMANAGED}

    def read(self, answer: Answer) -> dict[str, Any]:
        """Every setting as the cloud's answer reports it (managed by the spec or not)."""
        return {row.name: row.read(answer) for row in self.rows}

    def selected(self, fields: Iterable[str]) -> tuple[Setting[Answer, Patch], ...]:
        """The rows of `fields`, in table order (the order updates send and report them in)."""
        wanted = set(fields)
        return tuple(row for row in self.rows if row.name in wanted)

    def written_on_create(self, desired: Mapping[str, Any]) -> tuple[Setting[Answer, Patch], ...]:
        """The rows of `desired` a resource the cloud has just created does not already satisfy
        with its `initial` value, in table order: the only ones a create needs to write."""
        return tuple(
            row
            for row in self.rows
            if row.name in desired and (row.initial is UNMANAGED or not row.matches(desired[row.name], row.initial))
        )

    def satisfied(self, name: str, desired: Any, actual: Any) -> bool:
        """Whether the cloud value `actual` satisfies the desired one."""
        return bool(self._by_name[name].matches(desired, actual))

    def drift(self, desired: Mapping[str, Any], actual: Mapping[str, Any]) -> tuple[FieldDrift, ...]:
        """The desired settings the cloud does not satisfy (see `diff_settings`; a value the row
        `matches` counts as the desired one). Keys of `desired` outside the table (settings a
        provider compares on its own) are compared by plain equality."""
        comparable = dict(actual)
        for name, want in desired.items():
            if name in self._by_name and name in actual and self.satisfied(name, want, actual[name]):
                comparable[name] = want
        return diff_settings(desired, comparable, grow_only=self.grow_only)
