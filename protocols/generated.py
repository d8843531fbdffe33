"""Protocols whose dataset is generated on this machine, written in the released IAL format and cached."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from abc import abstractmethod
from pathlib import Path
from typing import Any

from benchmark.dataset import Dataset, Problem
from benchmark.options import apply_overrides
from benchmark.protocol import Protocol, cache_root
from protocols.ial_format import read_ial


class GeneratedProtocol(Protocol):
    """Builds its dataset deterministically from options (per preset) into the cache on first use."""

    generated = True
    prefix: str
    overrides: dict[str, str] = {}

    @abstractmethod
    def preset_options(self, preset: str) -> Any:
        """The generator options (a dataclass) of a preset."""

    def options(self, preset: str) -> Any:
        """The preset's options with this protocol's `key=value` overrides applied."""
        return apply_overrides(self.preset_options(preset), self.overrides, self.name)

    def with_options(self, overrides: dict[str, str]) -> GeneratedProtocol:
        """A copy generating with overridden options (its data goes to its own cache folder)."""
        clone = copy.copy(self)
        clone.overrides = {**self.overrides, **overrides}
        clone.options("default")  # unknown keys and bad values fail here, before any work
        return clone

    def record(self, preset: str) -> dict[str, Any]:
        """The generator options, stored in results."""
        return {"options": dataclasses.asdict(self.options(preset))}

    @abstractmethod
    def generate(self, folder: Path, options: Any, progress: bool) -> None:
        """Write annotations/ and images/ under folder."""

    def options_hash(self, preset: str) -> str:
        """sha256 of the protocol version and generator options."""
        blob = json.dumps({"version": self.version, **dataclasses.asdict(self.options(preset))}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def resolve_root(self, data_root: Path | None, preset: str) -> Path:
        """--data-root, else <cache>/data/<name>-v<version>-<options hash>."""
        if data_root is not None:
            return Path(data_root).expanduser()
        return cache_root() / "data" / f"{self.name}-v{self.version}-{self.options_hash(preset)[:12]}"

    def missing_root_message(self, root: Path) -> str:
        """Generated data is built, not downloaded: say how."""
        return (f"{self.name}: no dataset at {root} yet; build it with `python -m benchmark data build "
                f"--protocol {self.name}` (with the same --preset / --data-root), or just `run`")

    def build(self, root: Path, preset: str, progress: bool = True) -> None:
        """Generate into a temporary folder beside root, then move it into place."""
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self.generate(tmp, self.options(preset), progress)
            (tmp / "generator.json").write_text(json.dumps(
                {"protocol": self.name, "version": self.version, "preset": preset,
                 "options": dataclasses.asdict(self.options(preset))}, indent=2, sort_keys=True) + "\n")
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read(self, root: Path, progress: bool = False) -> tuple[Dataset | None, list[Problem]]:
        """Read it back with the released-format reader (image bytes are part of the data hash)."""
        return read_ial(root, name=self.name, version=self.version, prefix=self.prefix, images_dirs=("images",),
                        hash_images=True, progress=progress)
