"""Harness overhead: the same image encoder timed in a bare `torch.inference_mode()` loop and through the
runner's single-stream path (`benchmark.runner.single_stream`: QueryBatch, stage clocks, the method's
predict). Goal: the harness's encode stage within 5 % of the bare loop.

`pytest tests/benchmarks/test_harness_overhead.py --benchmark-enable` measures (group "harness-overhead");
the ratio is harness median / bare median of the encode stage, both in the same session.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.images import load_rgb
from benchmark.measure import StageClock
from benchmark.method import QueryBatch, RunContext, make_options
from benchmark.registry import METHODS
from benchmark.runner import single_stream

QUERIES = 50


@pytest.fixture(scope="module")
def method_and_image(tiny_dataset):
    """clip-zeroshot (the smoke preset's ResNet-18 tower) prepared on the tiny dataset, and one query image."""
    dataset = tiny_dataset
    cls = METHODS.get("clip-zeroshot")
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="smoke", progress=False, batch_size=8, cache_dir=None)
    method = cls(make_options(cls, "smoke", {}), ctx)
    method.prepare(dataset.for_methods())
    return method, method.preprocess(load_rgb(dataset.paths("queries")[0])).unsqueeze(0)


@pytest.mark.benchmark(group="harness-overhead")
def test_bare_encoder_loop(benchmark, method_and_image):
    method, image = method_and_image

    def bare() -> None:
        with torch.inference_mode():
            for _ in range(QUERIES):
                method.encode_images(image)

    benchmark.pedantic(bare, rounds=7, warmup_rounds=1)


@pytest.mark.benchmark(group="harness-overhead")
def test_harness_single_stream_encode(benchmark, method_and_image):
    method, image = method_and_image
    clock = StageClock("cpu")
    batch = QueryBatch(image, ["q.jpg"])
    encode_seconds = []

    def harness() -> None:
        with torch.inference_mode():
            samples = single_stream(method, lambda q: batch, QUERIES, 0, 5, clock)
        encode_seconds.append(sum(s["encode"] for s in samples))
        assert len(samples) == QUERIES and all(s["encode"] > 0 for s in samples)

    benchmark.pedantic(harness, rounds=7, warmup_rounds=1)
    encode_seconds.sort()
    benchmark.extra_info["encode_stage_median_s"] = encode_seconds[len(encode_seconds) // 2]
