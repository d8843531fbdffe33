"""Photo positions for `data build --from-images` (issue 16): EXIF GPS written here, VPR names, CSVs in both
forms; photos without a position or in another UTM zone are reported and left out, bad CSVs are one error."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from benchmark.errors import BenchmarkError
from protocols.geotags import from_exif, read_csv, read_geotags, to_utm

HELSINKI = (60.16952, 24.93545)  # the railway square, UTM 35V


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    d = int(value)
    m = int((value - d) * 60)
    s = Fraction(round(((value - d) * 60 - m) * 60 * 10_000), 10_000)
    return Fraction(d), Fraction(m), s


def _photo(path: Path, lat: float | None = None, lon: float | None = None) -> Path:
    image = Image.new("RGB", (8, 8), (120, 80, 40))
    exif = image.getexif()
    if lat is not None:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _dms(abs(lat))
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _dms(abs(lon))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif)
    return path


def test_exif_gps_written_here_reads_back_as_utm(tmp_path):
    tag = from_exif(_photo(tmp_path / "a.jpg", *HELSINKI))
    expected = to_utm(*HELSINKI, "exif")
    assert (tag.zone, tag.south, tag.source) == (35, False, "exif")
    assert abs(tag.east - expected.east) < 0.01 and abs(tag.north - expected.north) < 0.01  # 1e-4″ rounding
    assert 385_000 < tag.east < 386_500 and 6_671_000 < tag.north < 6_673_500
    assert from_exif(_photo(tmp_path / "none.jpg")) is None
    south = from_exif(_photo(tmp_path / "sydney.jpg", -33.8568, 151.2153))
    assert (south.zone, south.south) == (56, True)


def test_a_folder_mixes_sources_and_reports_what_it_leaves_out(tmp_path):
    photos = tmp_path / "photos"
    _photo(photos / "exif.jpg", *HELSINKI)
    _photo(photos / "sub" / "@0385449.57@6671601.04@35@V@60.16521@24.93578@HEL00555@@012@@@@@@.jpg")
    _photo(photos / "csv.jpg")
    _photo(photos / "nothing.jpg")
    _photo(photos / "kyiv.jpg", 50.45, 30.52)  # zone 36: not the majority's
    table = tmp_path / "tags.csv"
    table.write_text("image,lat,lon\ncsv.jpg,60.1700,24.9400\nghost.jpg,60.1,24.9\n")
    found = read_geotags(photos, table)
    assert {k: t.source for k, t in found.tags.items()} == {
        "exif.jpg": "exif", "csv.jpg": "csv",
        "sub/@0385449.57@6671601.04@35@V@60.16521@24.93578@HEL00555@@012@@@@@@.jpg": "name"}
    report = found.report()
    assert any(line.startswith("left out 1 images without coordinates") and "nothing.jpg" in line for line in report)
    assert any(line.startswith("left out 1 images outside UTM zone 35N") and "kyiv.jpg" in line for line in report)
    assert any(line.startswith("left out 1 CSV rows naming no image") and "ghost.jpg" in line for line in report)


def test_utm_csv_with_its_zone(tmp_path):
    table = tmp_path / "utm.csv"
    table.write_text("image,utm_east,utm_north,zone\na.jpg,385449.57,6671601.04,35V\nb.jpg,500000,4649776,33T\n")
    tags = read_csv(table)
    assert (tags["a.jpg"].zone, tags["a.jpg"].south, tags["a.jpg"].east) == (35, False, 385449.57)
    assert tags["b.jpg"].zone == 33


@pytest.mark.parametrize("text, message", [
    ("image,x,y\na.jpg,1,2\n", "give image,lat,lon or image,utm_east,utm_north,zone"),
    ("image,lat,lon\na.jpg,95,24\n", "a.jpg: latitude 95.0"),
    ("image,utm_east,utm_north,zone\na.jpg,1,2,99Q\n", "zone '99Q' is not a UTM zone"),
])
def test_bad_csvs_are_one_clear_error(tmp_path, text, message):
    table = tmp_path / "bad.csv"
    table.write_text(text)
    with pytest.raises(BenchmarkError, match=message):
        read_csv(table)


def test_an_empty_or_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(BenchmarkError, match="no such folder"):
        read_geotags(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="no images"):
        read_geotags(tmp_path / "empty")
