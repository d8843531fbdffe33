"""The shared retrieval pipeline's options (IVF-PQ index, street-map geocoder) and report variants."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.errors import BenchmarkError
from benchmark.geocoder import StreetMap
from benchmark.report import run_label
from benchmark.results import MethodInfo, Provenance
from methods.retrieval import RetrievalOptions, build_index


def test_street_map_ranks_addresses_by_nearest_segment():
    streets = StreetMap([("B Street, X", np.array([[0.0, 0.0], [100.0, 0.0]])),
                         ("A Street, X", np.array([[0.0, 10.0], [0.0, 50.0]])),
                         ("B Street, X", np.array([[200.0, 0.0], [200.0, 100.0]])),
                         ("C Street, X", np.array([[50.0, 30.0]]))])  # a single vertex
    # (50, 4): 4 m from B's first part (interior projection), 26 m from C's point, 50.4 m from A's end.
    (hit,) = streets.lookup(np.array([[50.0, 4.0]]), 3)
    assert [a for a, _ in hit] == ["B Street, X", "C Street, X", "A Street, X"]
    assert [d for _, d in hit] == pytest.approx([4.0, 26.0, float(np.hypot(50, 6))])
    # (190, 50) is nearest to B's second part: one address however many parts it has.
    assert streets.lookup(np.array([[190.0, 50.0]]), 1)[0] == [("B Street, X", pytest.approx(10.0))]
    assert streets.lookup(np.array([[0.0, 5.0]]), 2)[0] == [("A Street, X", 5.0), ("B Street, X", 5.0)]  # tie: by name
    assert streets.nbytes > 0 and len(streets) == 3 + 1


def test_street_map_reads_the_city_geojson(tmp_path):
    features = [{"type": "Feature", "id": 0, "geometry": None,
                 "properties": {"address": "Main, Old (Cross, Old)", "utm_coordinates": [[[0, 0], [10, 0]]]}},
                {"type": "Feature", "id": 1, "geometry": None,
                 "properties": {"address": "Cross, Old (Main, Old)",
                                "utm_coordinates": [[[0, 5], [0, 9]], [[20, 20], [30, 20]]]}}]
    path = tmp_path / "streets.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    streets = StreetMap.from_geojson(path)
    assert streets.lookup(np.array([[25.0, 21.0]]), 1)[0][0][0] == "Cross, Old (Main, Old)"
    assert streets.lookup(np.array([[5.0, -1.0]]), 1)[0][0] == ("Main, Old (Cross, Old)", 1.0)


def test_street_map_geocoder_on_tiny_needs_a_map(tiny_dataset):
    from methods.retrieval import make_geocoder

    if tiny_dataset.street_map is None:
        with pytest.raises(BenchmarkError, match="street map"):
            make_geocoder(tiny_dataset, "streetmap")
    with pytest.raises(BenchmarkError, match="geocoder"):
        make_geocoder(tiny_dataset, "osm")


def test_ivfpq_index_finds_the_exact_neighbours_of_clustered_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 64))
    cluster = rng.integers(0, 40, 2000)
    data = centres[cluster] + 0.05 * rng.normal(size=(2000, 64))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    flat = build_index(data, RetrievalOptions())
    ivfpq = build_index(data, RetrievalOptions(index="ivfpq", nprobe=8))
    assert type(ivfpq).__name__ == "IndexIVFPQ" and ivfpq.nprobe == 8
    queries = data[:50]
    _, exact = flat.search(queries, 10)
    _, approx = ivfpq.search(queries, 10)
    # The order inside a cluster is noise that PQ cannot resolve; the cluster itself it must find.
    assert (cluster[exact] == cluster[:50, None]).all()
    assert (cluster[approx] == cluster[:50, None]).mean() > 0.95
    import faiss

    assert faiss.serialize_index(ivfpq).nbytes < faiss.serialize_index(flat).nbytes / 4
    with pytest.raises(BenchmarkError, match="flat or ivfpq"):
        build_index(data, RetrievalOptions(index="hnsw"))


def test_report_labels_a_variant_by_the_options_given():
    def run(overrides: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(method=MethodInfo(name="gem", family="retrieval", options={}, overrides=overrides,
                                                 config_hash="0", weights=Provenance(source="from-scratch")))

    assert run_label(run({"geocoder": "streetmap"})) == "gem (geocoder=streetmap)"
    assert run_label(run({})) == "gem"
    assert run_label(run({"weights": "/models/gem_r50.pth", "index": "ivfpq"})) == "gem (index=ivfpq, weights=gem_r50.pth)"


def test_the_search_structure_is_the_index_alone(tiny_dataset, one_thread, tmp_path):
    """Table 5's Memory for a flat index: database rows × descriptor dims × 4 bytes (16×16 grey thumbnails);
    the coordinates (2 float64 per row) count in storage, not in the search structure."""
    from benchmark.runner import RunSpec, run
    spec = RunSpec(protocol="tiny", methods=[("tiny-images", {})], preset="smoke", latency_queries=1, warmup=0,
                   n_boot=10, progress=False, out=tmp_path)
    (folder,) = run(spec)
    cost = json.loads((folder / "result.json").read_text())["cost"]
    rows = len(tiny_dataset.splits["database"])
    assert cost["search_bytes"] == rows * 16 * 16 * 4
    assert cost["storage_bytes"]["database"] == cost["search_bytes"] + rows * 2 * 8
