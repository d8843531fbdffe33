"""Runner pieces: method lists, devices, stage clocks and latency summaries, options."""

from __future__ import annotations

import pytest

from benchmark.errors import BenchmarkError
from benchmark.measure import StageClock, latency_summary
from benchmark.method import config_hash, make_options
from benchmark.registry import METHODS
from benchmark.runner import parse_methods, resolve_device


def test_parse_methods_with_options():
    assert parse_methods("prior,tiny-images:size=32,grey=false,oracle-gps") == [
        ("prior", {}), ("tiny-images", {"size": "32", "grey": "false"}), ("oracle-gps", {})]
    assert [n for n, _ in parse_methods("all")] == METHODS.names()
    assert dict(parse_methods("all,tiny-images:size=8"))["tiny-images"] == {"size": "8"}
    headline = METHODS.sets()["headline"]
    assert [n for n, _ in parse_methods("headline")] == headline
    assert [n for n, _ in parse_methods("headline,gem:steps=2")] == [*headline, "gem"]
    assert dict(parse_methods("headline,mixvpr:steps=2"))["mixvpr"] == {"steps": "2"}
    for bad in ("", "size=3,prior", "prior:size"):
        with pytest.raises(BenchmarkError):
            parse_methods(bad)


def test_options_from_preset_and_overrides_and_their_hash():
    cls = METHODS.get("tiny-images")
    opts = make_options(cls, "default", {"size": "32", "grey": "no"})
    assert opts.size == 32 and opts.grey is False and opts.search_depth == 50
    assert config_hash(cls.name, opts) != config_hash(cls.name, make_options(cls, "default", {}))
    with pytest.raises(BenchmarkError, match="not a valid int"):
        make_options(cls, "default", {"size": "big"})


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(BenchmarkError):
        resolve_device("tpu")


def test_stage_clock_accumulates_and_resets():
    clock = StageClock("cpu")
    for _ in range(3):
        with clock.stage("encode"):
            pass
    seconds = clock.take()
    assert set(seconds) == {"encode", "search", "geocode"} and seconds["encode"] >= 0 and seconds["search"] == 0
    assert clock.take()["encode"] == 0
    with pytest.raises(ValueError), clock.stage("decode"):
        pass


def test_latency_summary_median_and_p90_in_ms():
    samples = [{"encode": e / 1000, "search": 0.001, "geocode": 0.0} for e in range(1, 11)]
    summary = latency_summary(samples)
    assert summary["encode"]["median"] == pytest.approx(5.5) and summary["encode"]["p90"] == pytest.approx(9.1)
    assert summary["total"]["median"] == pytest.approx(6.5) and summary["search"]["p90"] == pytest.approx(1.0)


def test_runner_rejects_a_method_that_repeats_a_sub_street():
    from benchmark.method import Prediction
    from benchmark.runner import _check_prediction

    _check_prediction("m", Prediction(["A St, X", "B St, X"], [2.0, 1.0]), 5)
    with pytest.raises(RuntimeError, match="distinct"):
        _check_prediction("m", Prediction(["A St, X", "A St,  X"], [2.0, 1.0]), 5)
    with pytest.raises(RuntimeError):
        _check_prediction("m", Prediction(["A St, X", "B St, X"], [2.0, 1.0]), 1)
