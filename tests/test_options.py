"""Option specs and overrides, for methods and generated protocols."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from benchmark.errors import BenchmarkError
from benchmark.options import apply_overrides, parse_spec
from benchmark.protocol import resolve_protocol


@dataclass(frozen=True)
class Opts:
    size: int = 16
    rate: float = 0.5
    flag: bool = True
    name: str = "x"
    crop: float | None = None


def test_overrides_are_typed():
    o = apply_overrides(Opts(), {"size": "32", "rate": "1e-3", "flag": "off", "name": "y", "crop": "250"}, "m")
    assert o == Opts(32, 1e-3, False, "y", 250.0)
    assert apply_overrides(o, {"crop": "none"}, "m").crop is None


@pytest.mark.parametrize("bad, message", [({"size": "big"}, "not a valid int"), ({"flag": "maybe"}, "bool"),
                                          ({"sise": "3"}, "did you mean 'size'")])
def test_bad_overrides(bad, message):
    with pytest.raises(BenchmarkError, match=message):
        apply_overrides(Opts(), bad, "m")


def test_parse_spec():
    assert parse_spec("helsinki") == ("helsinki", {})
    assert parse_spec("helsinki:spacing_m=5, headings=4") == ("helsinki", {"spacing_m": "5", "headings": "4"})
    with pytest.raises(BenchmarkError):
        parse_spec("helsinki:spacing_m")


def test_generated_protocol_options_change_the_data_folder():
    base = resolve_protocol("helsinki")
    dense = resolve_protocol("helsinki:spacing_m=5,headings=4")
    assert dense.options("default").spacing_m == 5.0 and dense.options("default").headings == 4
    assert base.options("default").spacing_m == 10.0  # the registered protocol is untouched
    assert dense.resolve_root(None, "default") != base.resolve_root(None, "default")
    assert dense.record("default")["options"]["headings"] == 4
    with pytest.raises(BenchmarkError, match="did you mean 'headings'"):
        resolve_protocol("helsinki:heading=4")


def test_released_datasets_take_no_options():
    with pytest.raises(BenchmarkError, match="takes no options"):
        resolve_protocol("pitts_ial:spacing_m=5")
