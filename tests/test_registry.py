"""Every registered method, whatever its name: registry identity, presets, option round-trips, a smoke run.

Parametrised over `METHODS.names()`, so a method added to methods/__init__.py (or as a plug-in) is covered
without touching this file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing

import pytest

from benchmark.method import make_options
from benchmark.options import apply_overrides
from benchmark.protocol import PRESETS
from benchmark.registry import METHODS
from benchmark.results import PREDICTIONS_FILE
from benchmark.runner import RunSpec, run

FAMILIES = {"ial", "retrieval", "classification", "reference"}
NAMES = METHODS.names()
K = 5


def _command_line_text(value: typing.Any, kind: typing.Any) -> str | None:
    """How a value is written after `--methods name:key=`, or None when its type has no such form."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        if value is None:
            return "none"
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        return "true" if value else "false"
    if kind in (int, float, str):
        return str(value)
    return None


@pytest.mark.parametrize("name", NAMES)
def test_class_name_matches_its_registry_key_and_family_is_known(name):
    cls = METHODS.get(name)
    assert cls.name == name
    assert cls.family in FAMILIES


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_builds_options(name):
    cls = METHODS.get(name)
    # a preset the benchmark does not know would be silently ignored by make_options
    assert set(cls.PRESETS) <= set(PRESETS), f"{name}: unknown presets {set(cls.PRESETS) - set(PRESETS)}"
    for preset in PRESETS:
        # Building the options must work even where the preset needs a weights file to *run*
        # (e.g. the CLIP 'paper' presets set pretrained=True): that is checked when the method prepares.
        options = make_options(cls, preset, {})
        assert isinstance(options, cls.Options)


@pytest.mark.parametrize("name", NAMES)
def test_option_overrides_round_trip(name):
    cls = METHODS.get(name)
    hints = typing.get_type_hints(cls.Options)
    for preset in PRESETS:
        options = make_options(cls, preset, {})
        for field in dataclasses.fields(options):
            value = getattr(options, field.name)
            text = _command_line_text(value, hints[field.name])
            if text is None:
                # Skipped: only bool, int, float, str (each optionally `| None`) can be written as
                # `key=value` on the command line; tuples, lists, nested dataclasses etc. cannot.
                continue
            again = apply_overrides(options, {field.name: text}, cls.name)
            assert again == options, f"{name} ({preset}): {field.name}={text!r} read back as " \
                                     f"{getattr(again, field.name)!r}, not {value!r}"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_on_tiny_writes_valid_topk_lists(name, tiny_dataset, one_thread, tmp_path):
    # Nothing skipped: every smoke preset runs without an external weights file (clip-zeroshot included:
    # without --weights it is a randomly initialised CLIP, at chance level, but it runs).
    spec = RunSpec(protocol="tiny", methods=[(name, {})], preset="smoke", k=K, latency_queries=1, warmup=0,
                   n_boot=10, progress=False, out=tmp_path)
    (folder,) = run(spec)
    search = json.loads((folder / "result.json").read_text(encoding="utf-8"))["cost"]["search_bytes"]
    assert search > 0 or not METHODS.get(name).needs_images, "a method that reads images searches something"
    rows = [json.loads(line) for line in (folder / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()]
    queries = tiny_dataset.splits["queries"]
    assert [r["image"] for r in rows] == list(queries.image), "one line per query, in query order"
    candidates = set(tiny_dataset.address_book.addresses)
    for row in rows:
        topk, scores = row["topk"], row["scores"]
        assert isinstance(topk, list) and 1 <= len(topk) <= K, row
        assert all(isinstance(a, str) for a in topk) and len(set(topk)) == len(topk), row
        assert set(topk) <= candidates, f"{row['image']}: {set(topk) - candidates} not in the candidate set"
        assert len(scores) == len(topk), row
        assert all(a >= b for a, b in zip(scores, scores[1:])), f"{row['image']}: scores increase: {scores}"


@pytest.mark.parametrize("group", sorted(METHODS.sets()))
def test_every_method_set_names_registered_methods(group):
    members = METHODS.sets()[group]
    assert members and len(set(members)) == len(members) and set(members) <= set(NAMES)
