"""sha256 of files and of JSON-able configs: the one place digests are computed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def update_with_file(digest: Any, path: Path) -> None:
    """Feed a file's bytes into a running hashlib digest, 1 MiB at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file (weights provenance, cache keys)."""
    digest = hashlib.sha256()
    update_with_file(digest, Path(path))
    return digest.hexdigest()


def json_sha256(value: Any) -> str:
    """sha256 hex digest of a JSON-able value written with sorted keys (configs, options)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
