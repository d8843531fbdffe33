"""A lazy registry of methods and protocols: names map to 'module:attribute' and import only when used."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from benchmark.errors import BenchmarkError


@dataclass(frozen=True)
class Entry:
    """A registered name, where its object lives, and one line saying what it is."""

    name: str
    target: str
    summary: str

    def load(self) -> Any:
        """Import the module and return the registered object."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """Names from a package's REGISTRY table plus the `ialbench.<kind>` entry-point group, loaded lazily."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry] | None = None

    def entries(self) -> dict[str, Entry]:
        """All registered entries by name (imports only the package's table, never a method module)."""
        if self._entries is None:
            table = importlib.import_module(self.package).REGISTRY
            entries = {name: Entry(name, target, summary) for name, (target, summary) in table.items()}
            for ep in entry_points(group=f"ialbench.{self.kind}s"):
                entries.setdefault(ep.name, Entry(ep.name, ep.value, f"plug-in from {ep.module}"))
            self._entries = entries
        return self._entries

    def sets(self) -> dict[str, list[str]]:
        """Named groups of entries from the package's SETS table (e.g. the main job's `headline` methods)."""
        return dict(getattr(importlib.import_module(self.package), "SETS", {}))

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self.entries())

    def entry(self, name: str) -> Entry:
        """The entry for a name, or a 'did you mean' error."""
        entries = self.entries()
        if name not in entries:
            close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise BenchmarkError(
                f"unknown {self.kind} {name!r}{hint} (`python -m benchmark ls` lists the {self.kind}s)"
            )
        return entries[name]

    def get(self, name: str) -> Any:
        """Load the object registered under a name."""
        return self.entry(name).load()


METHODS = Registry("method", "methods")
PROTOCOLS = Registry("protocol", "protocols")
