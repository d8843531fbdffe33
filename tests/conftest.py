"""Shared fixtures: an isolated cache folder and the generated `tiny` dataset."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Generated datasets and model caches go to a per-session folder, never the user's cache."""
    path = tmp_path_factory.mktemp("ialbench-cache")
    old = os.environ.get("IALBENCH_CACHE")
    os.environ["IALBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IALBENCH_CACHE", None)
    else:
        os.environ["IALBENCH_CACHE"] = old


@pytest.fixture
def one_thread():
    """Tiny models run faster (and no less deterministically) on one thread, above all on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dataset(isolated_cache):
    """The `tiny` protocol's dataset, built once per session."""
    from benchmark.registry import PROTOCOLS

    return PROTOCOLS.get("tiny").open(None, "smoke", progress=False)
