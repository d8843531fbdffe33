"""Result files: one versioned result.json + predictions.jsonl per (protocol, method) run, written atomically."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError

SCHEMA_VERSION = "1.0"
RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.jsonl"


def now_utc() -> datetime:
    """The current time in UTC (one place, so a run's id and 'created' agree)."""
    return datetime.now(timezone.utc)


def make_run_id(created: datetime, config_hash: str) -> str:
    """A sortable run id: UTC timestamp + the first 8 hex digits of the config hash."""
    return f"{created.strftime('%Y%m%dT%H%M%S%fZ')}-{config_hash[:8]}"


def git_revision() -> str | None:
    """The source tree's git commit (with '-dirty' if it has changes), or None outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def environment(device: str, batch_size: int) -> dict[str, Any]:
    """Everything about the machine and libraries that can change a number."""
    import faiss
    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "batch_size": batch_size,
        "libraries": {"torch": torch.__version__, "numpy": numpy.__version__, "faiss": faiss.__version__},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def write_run(out: Path, result: dict[str, Any], predictions: list[dict[str, Any]], run_id: str) -> Path:
    """Write result.json and predictions.jsonl into <out>/<protocol>/<method>/<run_id>/ atomically.

    Files go to a hidden temporary folder that is renamed into place; an existing run is never replaced.
    """
    final = Path(out) / result["protocol"]["name"] / result["method"]["name"] / run_id
    if final.exists():
        raise BenchmarkError(f"result folder {final} already exists; results are never overwritten: "
                             "pass another --out or remove that folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{run_id}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        with open(tmp / PREDICTIONS_FILE, "w", encoding="utf-8") as f:
            for row in predictions:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(tmp / RESULT_FILE, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every result.json under a folder, each with its path under '_path'."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchmarkError(f"results folder {results_dir} does not exist; pass --results DIR "
                             "(where `python -m benchmark run --out DIR` wrote)")
    out = []
    for path in sorted(results_dir.rglob(RESULT_FILE)):
        if any(part.startswith(".") for part in path.relative_to(results_dir).parts):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path}: malformed JSON at line {e.lineno} ({e.msg}); remove or re-run it") from None
        if not isinstance(data, dict) or "schema_version" not in data:
            raise BenchmarkError(f"{path}: not an ialbench result (no schema_version)")
        major = str(data["schema_version"]).split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise BenchmarkError(f"{path}: schema_version {data['schema_version']} is not readable by this "
                                 f"version (reads {SCHEMA_VERSION.split('.')[0]}.x)")
        data["_path"] = str(path)
        out.append(data)
    return out
