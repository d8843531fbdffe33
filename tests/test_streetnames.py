"""The street-name geocoder (a public service's named ways, matched to candidates by name), its protocol seam
and its errors; the GPS-noise option end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.results import RESULT_FILE
from benchmark.streetnames import NamedWays, StreetAnswer, StreetNames, protocol_named_ways
from protocols.city.osm import CityMap, Place, StreetWay
from protocols.city.streetnames import named_ways

# Main Street runs west-east along y = 0; North Road crosses it at x = 100, South Lane ends on it at x = 200
# (a T); Far Way lies 500 m north, touching nothing; Service Alley (no candidate on it) runs along y = 20.
# Place nodes at x = 0 and x = 350: the neighbourhood boundary is x = 175.
STREETS = [("Main Street", [(0, 0), (150, 0), (300, 0)]), ("North Road", [(100, -100), (100, 100)]),
           ("South Lane", [(200, 0), (200, -100)]), ("Far Way", [(0, 500), (300, 500)]),
           ("Service Alley", [(0, 20), (80, 20)])]
MAIN_WEST = "Main Street, Old Town (North Road, Old Town)"  # x 0-100, a dead end
MAIN_MID = "Main Street, Old Town (North Road, Old Town and South Lane, New Town)"  # x 100-200
MAIN_EAST = "Main Street, New Town (South Lane, New Town)"  # x 200-300
NORTH = "North Road, Old Town (Main Street, Old Town)"
SOUTH = "South Lane, New Town (Main Street, New Town)"
FAR = "Far Way, Old Town"
GHOST = "Ghost Street, Old Town (Main Street, Old Town)"  # a candidate on a street the map does not name
CANDIDATES = [MAIN_WEST, MAIN_MID, MAIN_EAST, NORTH, SOUTH, FAR, GHOST]


def run_cli(command: str, *args: str) -> int:
    return main([command, "-q", *args])


def hand_map() -> NamedWays:
    streets = [StreetWay(i, name, "residential", np.array(xy, np.float64)) for i, (name, xy) in enumerate(STREETS)]
    places = [Place("Old Town", "suburb", (0.0, 50.0)), Place("New Town", "suburb", (350.0, 50.0))]
    return named_ways(CityMap("test", 32635, 35, "V", streets, [], np.zeros((0, 2)), places, (-10, -110, 310, 510)))


def test_named_ways_finds_the_junctions_with_the_partition_logic():
    named = hand_map()
    junctions = {(street, cross): xy for street, cross, xy in named.junctions}
    assert junctions[("Main Street", "North Road")] == (100.0, 0.0)
    assert junctions[("North Road", "Main Street")] == (100.0, 0.0)
    assert junctions[("Main Street", "South Lane")] == (200.0, 0.0)
    assert not any("Far Way" in key or "Service Alley" in key for key in junctions)
    assert sorted(n for n, _ in named.places) == ["New Town", "Old Town"]


def test_the_service_answers_nearest_way_neighbourhood_and_cross_streets():
    g = StreetNames(hand_map(), CANDIDATES)
    west, mid, alley = g.answer(np.array([[60.0, 5.0], [150.0, 3.0], [60.0, 15.0]]))
    assert west == StreetAnswer("Main Street", "Old Town", ("North Road",), ("North Road", "South Lane"), 5.0)
    assert mid.between == ("North Road", "South Lane") and mid.neighbourhood == "Old Town"
    assert alley.street == "Service Alley" and alley.between == () and alley.distance == pytest.approx(5.0)


def test_candidates_are_matched_by_name_with_the_documented_rule():
    g = StreetNames(hand_map(), CANDIDATES)
    ranked = g.lookup(np.array([[60.0, 5.0], [150.0, 3.0], [190.0, 2.0], [210.0, -60.0], [60.0, 15.0]]), 3)
    # A dead end: its one-cross-street address, then the next block, then the street in the other neighbourhood.
    assert [a for a, _ in ranked[0]] == [MAIN_WEST, MAIN_MID, MAIN_EAST]
    assert [a for a, _ in ranked[1]][:2] == [MAIN_MID, MAIN_WEST]
    # 10 m short of South Lane the point is in New Town: the neighbourhood comes first, so the New Town block
    # wins over the Old Town block the point lies on (the ambiguity of turning GPS into an address).
    assert [a for a, _ in ranked[2]][:2] == [MAIN_EAST, MAIN_MID]
    assert ranked[3][0] == (SOUTH, pytest.approx(10.0))
    # The nearest way names no candidate (Service Alley): the next-nearest way, Main Street, answers.
    assert ranked[4][0] == (MAIN_WEST, pytest.approx(15.0))


def test_every_candidate_is_returned_once_streets_off_the_map_last():
    g = StreetNames(hand_map(), CANDIDATES)
    (ranked,) = g.lookup(np.array([[60.0, 5.0]]), 100)
    names = [a for a, _ in ranked]
    assert sorted(names) == sorted(CANDIDATES) and names[-1] == GHOST
    assert names[3] == NORTH  # the next-nearest way's candidates follow Main Street's
    distances = [d for _, d in ranked]
    assert distances == sorted(distances) and np.isfinite(distances).all()
    assert g.nbytes > 0 and len(g) == len(STREETS)


def test_a_closed_way_wraps_round_to_its_junctions():
    ring = np.array([[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]], np.float64)
    named = NamedWays(ways=(("Ring", ring), ("Spoke", np.array([[50.0, -50.0], [50.0, 0.0]]))),
                      junctions=(("Ring", "Spoke", (50.0, 0.0)), ("Ring", "Bar", (100.0, 50.0))), places=())
    g = StreetNames(named, ["Ring, X (Spoke, X)"])
    # The point on the left side is past the last junction (Bar, at 150 m along) and before the first (Spoke,
    # at 50 m): a closed way's junctions either side are Bar behind and Spoke ahead.
    (answer,) = g.answer(np.array([[2.0, 60.0]]))
    assert set(answer.between) == {"Bar", "Spoke"} and answer.neighbourhood == ""
    assert g.lookup(np.array([[2.0, 60.0]]), 5) == [[("Ring, X (Spoke, X)", 2.0)]]


def test_tiny_protocol_offers_its_grid_and_oracle_matches_it(tiny_dataset):
    named = protocol_named_ways(tiny_dataset)
    assert named is not None and len({n for n, _ in named.ways}) == 6
    g = StreetNames(named, tiny_dataset.address_book.addresses)
    truth = list(tiny_dataset.splits["queries"].address)
    top = [r[0][0] for r in g.lookup(tiny_dataset.utm("queries"), 1)]
    assert np.mean([a == t for a, t in zip(top, truth)]) > 0.9


def test_city_protocol_reads_the_bundled_extract_named_by_generator_json(tmp_path):
    from benchmark.registry import PROTOCOLS

    (tmp_path / "generator.json").write_text(json.dumps({"protocol": "kotka", "options": {"city": "kotka"}}))
    named = PROTOCOLS.get("kotka").named_ways(tmp_path)
    assert len(named.ways) > 10 and len(named.junctions) > 10 and named.places
    assert all("(" not in name and "," not in name for name, _ in named.ways)  # the address form's cleaning


def test_geocoding_options_are_pipeline_options():
    from methods.classification.pigeon import Pigeon
    from methods.reference import OracleGPS
    from methods.retrieval import RetrievalMethod

    assert {"geocoder", "map", "gps_noise_m"} <= RetrievalMethod.PIPELINE_OPTIONS  # never a retraining
    assert {"geocoder", "map"} <= Pigeon.PIPELINE_OPTIONS
    assert {"geocoder", "map", "gps_noise_m"} <= {f.name for f in dataclasses.fields(OracleGPS.Options)}


def test_unknown_geocoder_and_a_dataset_without_a_map_give_clear_errors(tiny_dataset, tmp_path):
    from methods.retrieval import make_geocoder

    with pytest.raises(BenchmarkError, match="gazetteer, streetmap, streetnames"):
        make_geocoder(tiny_dataset, "nominatim")
    released = dataclasses.replace(tiny_dataset, name="pitts_ial", root=tmp_path)  # a real dataset: no OSM map
    with pytest.raises(BenchmarkError, match=r"map=PATH\.osm\.pbf"):
        make_geocoder(released, "streetnames")
    with pytest.raises(BenchmarkError, match="no such file"):
        make_geocoder(released, "streetnames", str(tmp_path / "missing.osm.pbf"))
    with pytest.raises(BenchmarkError, match="only geocoder=streetnames"):
        make_geocoder(released, "gazetteer", str(tmp_path / "missing.osm.pbf"))


def test_a_user_map_must_cover_the_dataset(tiny_dataset):
    import pyrosm

    from methods.retrieval import make_geocoder

    kotka = pyrosm.get_data("test_pbf")  # 120 km east of the tiny grid's Helsinki coordinates
    with pytest.raises(BenchmarkError, match="does not cover"):
        make_geocoder(tiny_dataset, "streetnames", kotka)


def test_streetnames_and_gps_noise_end_to_end_on_tiny(tmp_path, capsys):
    out = tmp_path / "results"
    methods = ("oracle-gps:geocoder=streetnames,tiny-images:geocoder=streetnames,gps_noise_m=8,"
               "oracle-gps:geocoder=streetnames,gps_noise_m=8")
    assert run_cli("run", "--protocol", "tiny", "--methods", methods, "--preset", "smoke", "--out", str(out),
                   "--latency-queries", "3") == 0
    results = {}
    for method in ("oracle-gps", "tiny-images"):
        for folder in (out / "tiny" / method).iterdir():
            result = json.loads((folder / RESULT_FILE).read_text())
            key = (method, result["method"]["overrides"].get("gps_noise_m", "0"))
            results[key] = result
    exact, noisy = results[("oracle-gps", "0")], results[("oracle-gps", "8")]
    assert exact["metrics"]["ssa@1"] > 90.0 and exact["metrics"]["median_error_m"] == 0.0
    assert noisy["metrics"]["median_error_m"] > 3.0  # the query's GPS moved by the noise (Rayleigh, median 9.4 m)
    assert exact["cost"]["storage_bytes"]["map"] > 0
    assert results[("tiny-images", "8")]["metrics"]["ssa@1"] >= 0.0
    capsys.readouterr()
    assert run_cli("run", "--protocol", "tiny", "--methods", "oracle-gps:gps_noise_m=-1", "--preset", "smoke",
                   "--out", str(out)) == 2
    assert "gps_noise_m" in capsys.readouterr().err
