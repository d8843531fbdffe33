"""The released-format reader: good datasets, every coordinate source, and every kind of broken input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from benchmark.errors import BenchmarkError
from protocols.ial_format import PITTS_IAL, IALProtocol, PittsGroundTruth, read_ial
from tests.ialdata import A1, A2, A3, good_splits, utm_name, write_dataset, write_image


def read(root: Path, **kw):
    return read_ial(root, name="t", version="1", prefix="pitts", **kw)


def errors(problems):
    return [p for p in problems if p.severity == "error"]


def test_good_dataset_reads_with_counts(tmp_path):
    dataset, problems = read(write_dataset(tmp_path, good_splits()))
    assert problems == []
    counts = dataset.counts()
    assert counts["images_train"] == 10 and counts["images_database"] == 3 and counts["images_queries"] == 2
    assert counts["sub_streets"] == 3 and counts["streets"] == 2 and counts["neighbourhoods"] == 2
    # train has 4 + 2 places (two headings share one place), database 3, queries 2
    assert counts["locations"] == 11
    q = dataset.splits["queries"]
    assert q.utm_east.tolist() == [101.5, 503.0] and q.address.tolist() == [A1, A3]
    assert dataset.splits["train"].heading.tolist()[:2] == [0.0, 90.0]
    assert dataset.address_book.addresses[0] == A2  # most frequent in train ∪ database
    assert len(dataset.data_hash) == 64


def test_data_hash_changes_with_annotations(tmp_path):
    a, _ = read(write_dataset(tmp_path / "a", good_splits()))
    splits = good_splits()
    splits["queries"] = splits["queries"][:1]
    b, _ = read(write_dataset(tmp_path / "b", splits))
    again, _ = read(tmp_path / "a")
    assert a.data_hash == again.data_hash != b.data_hash


def test_malformed_json_names_file_and_position(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    bad = root / "annotations" / "pitts_database.json"
    bad.write_text('{"x.jpg": ["c", "v", "a"],\n  oops}', encoding="utf-8")
    dataset, problems = read(root)
    assert dataset is None
    (p,) = errors(problems)
    assert p.file == str(bad) and "malformed JSON at line 2" in p.message


def test_missing_annotation_file(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    (root / "annotations" / "pitts_queries.json").unlink()
    dataset, problems = read(root)
    assert dataset is None
    assert problems[0].file.endswith("pitts_queries.json") and "missing" in problems[0].message


def test_wrong_value_shape(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    path = root / "annotations" / "pitts_train.json"
    table = json.loads(path.read_text())
    key = next(iter(table))
    table[key] = ["only a caption"]
    path.write_text(json.dumps(table))
    _, problems = read(root)
    (p,) = errors(problems)
    assert p.file == str(path) and repr(key) in p.message and "[caption, verbose address, address]" in p.message


def test_missing_image(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    key = good_splits()["database"][0][0]
    (root / "images" / key).unlink()
    dataset, problems = read(root)
    (p,) = errors(problems)
    assert p.file == str(root / "images" / key) and "image is missing" in p.message
    assert len(dataset.splits["database"]) == 2


def test_non_numeric_utm_in_name(tmp_path):
    splits = good_splits()
    splits["train"].append(("train/@12a4.5@100.0@17@T@40.4@-80.0@@@000@@@@@@.jpg", A1))
    root = write_dataset(tmp_path, splits)
    _, problems = read(root)
    (p,) = errors(problems)
    assert "12a4.5" in p.message and "not a number" in p.message and p.file.endswith(".jpg")


def test_name_without_coordinates(tmp_path):
    splits = good_splits()
    splits["train"].append(("train/plain_name.jpg", A1))
    _, problems = read(write_dataset(tmp_path, splits))
    (p,) = errors(problems)
    assert p.file.endswith("plain_name.jpg") and "no coordinates" in p.message


def test_address_that_does_not_parse(tmp_path):
    splits = good_splits()
    splits["train"].append((f"train/{utm_name(900.0, 0.0)}", "Nowhere Street without neighbourhood"))
    root = write_dataset(tmp_path, splits)
    _, problems = read(root)
    (p,) = errors(problems)
    assert p.file.endswith("pitts_train.json") and "Nowhere Street" in p.message


def test_query_address_not_in_candidate_set_is_warned_and_dropped(tmp_path):
    splits = good_splits()
    lost = "Lost Lane, Nowhere (Main Street, Downtown)"
    splits["queries"].append((f"queries/{utm_name(900.0, 0.0)}", lost))
    root = write_dataset(tmp_path, splits)
    dataset, problems = read(root)
    (p,) = problems
    assert p.severity == "warning" and lost in p.message and "not in the candidate set" in p.message
    assert lost not in set(dataset.splits["queries"].address) and len(dataset.dropped_queries) == 1


def test_image_listed_in_two_splits(tmp_path):
    splits = good_splits()
    splits["queries"].append(splits["database"][0])
    _, problems = read(write_dataset(tmp_path, splits))
    assert any("splits must be disjoint" in p.message for p in errors(problems))


def test_sidecar_csv_coordinates(tmp_path):
    splits = {s: [(f"{s}/img{i}.jpg", A1 if i % 2 else A2) for i in range(4)] for s in ("train", "database")}
    splits["queries"] = [("queries/q0.jpg", A1)]
    root = write_dataset(tmp_path, splits)
    rows = ["image,utm_east,utm_north"] + [f"{k},{1000 + i},{2000 + i}" for i, k in
                                           enumerate(k for e in splits.values() for k, _ in e)]
    (root / "annotations" / "coords.csv").write_text("\n".join(rows) + "\n")
    dataset, problems = read(root)
    assert problems == []
    assert dataset.utm("queries").tolist() == [[1008.0, 2008.0]]


def test_sidecar_csv_non_numeric_row(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    (root / "annotations" / "coords.csv").write_text("image,utm_east,utm_north\nx.jpg,abc,5\n")
    _, problems = read(root)
    (p,) = errors(problems)
    assert p.file.endswith("coords.csv:2") and "'abc'" in p.message


def test_sidecar_csv_bad_header(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    (root / "annotations" / "coords.csv").write_text("filename,east,north\n")
    _, problems = read(root)
    assert "missing column" in errors(problems)[0].message


def _pitts(tmp_path: Path) -> Path:
    """Pitts250k-style: names without coordinates, a 2×L UTM .mat and the image list (24 views a place)."""
    names = [f"000/{loc:06d}_pitch{1 + v // 12}_yaw{1 + v % 12}.jpg" for loc in range(4) for v in range(24)]
    addresses = [A1, A2, A3, A1]
    splits = {"train": [], "database": [], "queries": []}
    for i, name in enumerate(names):
        loc = i // 24
        split = "train" if loc < 2 else "database" if loc == 2 else "queries"
        splits[split].append((name, addresses[loc]))
    root = write_dataset(tmp_path, splits)
    (root / "groundtruth").mkdir()
    savemat(root / "groundtruth" / "pittsburgh_database_10586_utm.mat",
            {"Cdb": np.array([[584000.0, 584010.0, 584500.0, 584001.0], [4477000.0, 4477000.0, 4477300.0, 4477002.0]])})
    (root / "groundtruth" / "imagelist.txt").write_text("\n".join(names) + "\n")
    return root


def test_pitts_ground_truth_location_is_index_div_24(tmp_path):
    dataset, problems = read(_pitts(tmp_path), pitts=PittsGroundTruth())
    assert problems == []
    train = dataset.splits["train"]
    assert train.utm_east.tolist() == [584000.0] * 24 + [584010.0] * 24
    assert train.location.tolist() == ["0"] * 24 + ["1"] * 24
    assert dataset.utm("queries")[0].tolist() == [584001.0, 4477002.0]
    assert dataset.counts()["locations"] == 4


def test_pitts_ground_truth_too_few_locations(tmp_path):
    root = _pitts(tmp_path)
    savemat(root / "groundtruth" / "pittsburgh_database_10586_utm.mat", {"Cdb": np.zeros((2, 2))})
    _, problems = read(root, pitts=PittsGroundTruth())
    assert any("has only 2 locations" in p.message for p in problems)


def test_missing_root_is_one_clear_error(tmp_path):
    with pytest.raises(BenchmarkError) as err:
        PITTS_IAL.open(tmp_path / "nope", "default", progress=False)
    message = str(err.value)
    assert str(tmp_path / "nope") in message and "--data-root" in message and "IALBENCH_PITTS_IAL_ROOT" in message


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IALBENCH_PITTS_IAL_ROOT", str(tmp_path))
    assert PITTS_IAL.resolve_root(None, "default") == tmp_path
    monkeypatch.delenv("IALBENCH_PITTS_IAL_ROOT")
    monkeypatch.setenv("IALBENCH_DATA", str(tmp_path))
    assert PITTS_IAL.resolve_root(None, "default") == tmp_path / "Pitts-IAL"


def test_open_refuses_a_broken_dataset_with_the_first_problem(tmp_path):
    root = write_dataset(tmp_path, good_splits())
    (root / "images" / good_splits()["train"][0][0]).unlink()
    write_image(root / "images" / "unrelated.jpg")
    protocol = IALProtocol("pitts_ial", "1", "", prefix="pitts", dirname="x")
    with pytest.raises(BenchmarkError) as err:
        protocol.open(root, "default", progress=False)
    assert "image is missing" in str(err.value) and "data check" in str(err.value)
