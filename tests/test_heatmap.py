"""Address heat maps: the similarities are the method's own cosines, the CLI writes a PNG and an SVG per address,
and bad input is one clear error with nothing written."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.address import street_key
from benchmark.cli import main
from benchmark.heatmap import database_features, file_names, matching_streets, similarities, slug
from benchmark.images import iterate_images
from benchmark.measure import StageClock
from benchmark.method import QueryBatch
from benchmark.runner import RunSpec, make_method, plan_method

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"steps": "2"}  # the smoke preset's tiny model, two training steps: seconds


@pytest.fixture(scope="module")
def trained(tiny_dataset):
    """AddressCLIP (smoke, 2 steps) on tiny, built as the runner builds it (so the CLI loads it from the cache)."""
    cls, options, _ = plan_method("addressclip", OPTIONS, "smoke")
    spec = RunSpec(protocol="tiny", methods=[("addressclip", OPTIONS)], preset="smoke", progress=False)
    method, _ = make_method(cls, options, tiny_dataset, spec, torch.device("cpu"))
    method.prepare(tiny_dataset.for_methods())
    return method


@pytest.fixture(scope="module")
def tiny_with_streets(tiny_dataset, tmp_path_factory) -> Path:
    """A copy of tiny with a streets.geojson: each sub-street a polyline through its labelled places."""
    root = tmp_path_factory.mktemp("heatmap") / "tiny"
    shutil.copytree(tiny_dataset.root, root)
    places = defaultdict(set)
    for split in ("train", "database"):
        table = tiny_dataset.splits[split]
        for address, east, north in zip(table.address, table.utm_east, table.utm_north):
            places[address].add((round(float(east), 2), round(float(north), 2)))
    features = []
    for address, points in sorted(places.items()):
        line = np.array(sorted(points))
        if np.ptp(line[:, 1]) > np.ptp(line[:, 0]):
            line = line[np.argsort(line[:, 1])]
        features.append({"type": "Feature", "geometry": None,
                         "properties": {"address": address, "utm_coordinates": [line.tolist()]}})
    (root / "streets.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


def test_similarities_are_the_methods_own_cosines_and_predicts_scores(trained, tiny_dataset):
    method = trained
    addresses = method.candidates[:3]
    texts = [*addresses, street_key(addresses[0]), "Westend"]
    features = database_features(method, tiny_dataset, 64, False)
    scores = similarities(method, features, texts)
    assert scores.shape == (len(texts), len(tiny_dataset.splits["database"]))

    with torch.inference_mode():  # the method's raw embeddings, normalised here
        images = torch.cat(list(iterate_images(tiny_dataset.paths("database"), method.preprocess, 64)))
        image = F.normalize(method.encode_images(images).float(), dim=-1)
        text = F.normalize(method.encode_candidates(texts).float(), dim=-1)
    np.testing.assert_allclose(scores, (text @ image.T).numpy(), atol=1e-5)

    predictions = []  # predict ranks every candidate: its score for a full address is the heat map's value
    for batch in iterate_images(tiny_dataset.paths("database"), method.preprocess, 64):
        predictions += method.predict(QueryBatch(batch, []), len(method.candidates), StageClock())
    for row, address in zip(scores, addresses):
        np.testing.assert_allclose(row, [p.scores[p.topk.index(address)] for p in predictions], atol=1e-5)


def test_matching_streets_reads_the_text_most_specifically_first():
    book = ["Main Street, Downtown (First Avenue, Downtown)", "Main Street, Downtown (Second Avenue, Downtown)",
            "Hill Road, Uptown (Main Street, Downtown)"]
    assert matching_streets(book[0], book) == ([book[0]], "the sub-street itself")
    assert matching_streets("Main Street,  Downtown", book) == (book[:2], "the 2 sub-streets of this street")
    assert matching_streets("Main Street", book)[0] == book[:2]
    assert matching_streets("Uptown", book)[0] == [book[2]]
    assert matching_streets("second avenue", book)[0] == [book[1]]
    assert matching_streets("a park", book) == ([], "")


def test_file_names_are_distinct_slugs():
    assert slug("Aleksanterinkatu, Keskusta (Mannerheimintie, Keskusta)") == \
        "aleksanterinkatu-keskusta-mannerheimintie-keskusta"
    assert slug("Töölö") == "toolo" and slug("東京").startswith("address-")
    assert len(slug("x" * 200)) < 80
    first, second = file_names(["Main St", "main-st"])
    assert first != second and first.startswith("main-st")


def test_cli_writes_a_png_and_an_svg_per_address(trained, tiny_with_streets, tmp_path, capsys):
    out = tmp_path / "heat"
    texts = [trained.candidates[0], street_key(trained.candidates[0]), "Westend"]
    args = ["heatmap", "-q", "--protocol", "tiny", "--preset", "smoke", "--data-root", str(tiny_with_streets),
            "--method", "addressclip:steps=2", "--device", "cpu", "--out", str(out)]
    assert main([*args, *(a for t in texts for a in ("--address", t))]) == 0
    printed = [Path(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(printed) == sorted(out.iterdir()) and len(printed) == 2 * len(texts)
    assert {p.suffix for p in printed} == {".png", ".svg"}
    assert all(p.name.startswith("addressclip-") for p in printed)
    for path in printed:
        head = path.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in path.read_bytes()


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "densevlad", "--address", "Westend"], "needs an IAL method (family 'ial')"),
    (["--method", "no-such-method", "--address", "Westend"], "needs an IAL method (family 'ial')"),
    (["--method", "cocoop", "--address", "Westend"], "conditions every text on the image"),
    (["--address", "Westend", "--address", "   "], "--address is empty"),
])
def test_bad_input_is_one_clear_error_and_nothing_is_written(args, message, tmp_path, capsys):
    out = tmp_path / "heat"
    assert main(["heatmap", "-q", "--protocol", "tiny", "--preset", "smoke", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()
