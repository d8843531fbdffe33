"""The embedded cities: built from OpenStreetMap in the IAL format, checked, deterministic, captioned."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.address import parse_address
from benchmark.errors import BenchmarkError
from benchmark.registry import PROTOCOLS
from protocols.city.osm import load_city
from protocols.city.protocol import STREET_MAP
from protocols.generated import split_locations


@pytest.fixture(scope="module")
def smoke(isolated_cache):
    """The smoke-preset Helsinki, built once for this module."""
    protocol = PROTOCOLS.get("helsinki")
    return protocol, protocol.open(None, "smoke", progress=False)


def test_smoke_build_passes_data_check(smoke):
    protocol, dataset = smoke
    _, checked, problems = protocol.check(None, "smoke")
    assert problems == [] and checked.data_hash == dataset.data_hash
    counts = dataset.counts()
    assert 300 <= counts["images"] <= 1500 and counts["sub_streets"] >= 15 and counts["neighbourhoods"] >= 2
    assert (dataset.root / "card" / "CARD.md").is_file() and (dataset.root / "card" / "contact_sheet.png").is_file()
    assert (dataset.root / "card" / "geocells.png").is_file()


def test_rebuild_is_byte_identical(smoke, tmp_path):
    protocol, dataset = smoke
    protocol.build(tmp_path / "again", "smoke", progress=False)
    again, problems = protocol.read(tmp_path / "again")
    assert problems == [] and again.data_hash == dataset.data_hash


def test_splits_location_disjoint_7_2_1_and_queries_answerable(smoke):
    _, dataset = smoke
    locations = {s: set(t.location) for s, t in dataset.splits.items()}
    assert not locations["train"] & locations["database"] and not locations["queries"] & (
        locations["train"] | locations["database"])
    assert set(dataset.splits["queries"].address) <= set(dataset.address_book.addresses)
    split = split_locations(1000, np.random.default_rng(0))
    assert [int((split == s).sum()) for s in ("train", "database", "queries")] == [700, 200, 100]


def test_captions_never_name_the_address(smoke):
    _, dataset = smoke
    city = load_city("helsinki")
    names = {s.name for s in city.streets} | {p.name for p in city.places}
    for table in dataset.splits.values():
        for caption in table.caption:
            assert caption.startswith("A street view looking ")
            assert not any(name in caption for name in names), caption


def test_street_map_geojson_holds_every_address(smoke):
    _, dataset = smoke
    features = json.loads((dataset.root / STREET_MAP).read_text())["features"]
    mapped = {f["properties"]["address"] for f in features}
    assert set(dataset.address_book.addresses) <= mapped
    for address in mapped:
        assert parse_address(address).text == address



def test_queries_come_from_the_campaign_unless_shifted_and_training_views_can_vary():
    from protocols.city.partition import PartitionOptions, partition_city
    from protocols.city.protocol import crop_city, plan_views
    from protocols.city.render import Conditions

    protocol = PROTOCOLS.get("helsinki")
    city = load_city("helsinki")
    base = protocol.options("smoke")
    partition = partition_city(crop_city(city, base.crop_m), PartitionOptions(
        junction_merge_m=base.junction_merge_m, min_locations=base.min_locations, spacing_m=base.spacing_m,
        headings=base.headings))
    day = Conditions.day()

    def views(**overrides):
        return plan_views(city, partition, protocol.with_options(overrides).options("smoke"))

    campaign, shifted = views(), views(queries="shifted")
    for plan in (campaign, shifted):
        assert all(v.conditions == day for v in plan if v.split != "queries")
    assert all(v.conditions == day for v in campaign if v.split == "queries")
    assert all(v.conditions != day for v in shifted if v.split == "queries")
    points = {(round(loc.east, 6), round(loc.north, 6)) for loc in partition.locations}
    queries = [v.camera for v in campaign if v.split == "queries"]
    assert not any((round(c.east, 6), round(c.north, 6)) in points for c in queries)  # poses stay jittered
    assert all((round(v.camera.east, 6), round(v.camera.north, 6)) in points for v in campaign if v.split == "train")
    varied = [v for v in views(train_conditions="varied") if v.split == "train"]
    share = sum(v.conditions != day for v in varied) / len(varied)
    assert 0.65 < share < 0.85
    with pytest.raises(BenchmarkError, match="campaign or shifted"):
        protocol.with_options({"queries": "night"})
