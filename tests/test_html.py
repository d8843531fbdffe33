"""The HTML report: self-contained (no network), every table and plot in it, and it renders in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.report import write_report

RESULTS_1_0 = Path(__file__).parent / "data" / "results-1.0"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of the committed 1.0 results (plots included)."""
    out = tmp_path_factory.mktemp("html")
    _, written = write_report(RESULTS_1_0, out, formats=("html",))
    assert out / "report.html" in written
    return out / "report.html"


def test_the_page_is_self_contained_with_every_table_and_plot(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from elsewhere
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert text.count("<table>") >= 4 and "Table 5: cost at inference" in text
    links = re.findall(r'href="([^"]+)"', text)
    assert links and all((report.parent / link).resolve().is_file() for link in links)  # the runs' files
    assert text.count("<section>") == 1 and "tiny" in text


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt install chromium): browser test skipped")
def test_the_page_renders_in_headless_chromium(report, tmp_path):
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    count = len(re.findall(r"<img ", report.read_text(encoding="utf-8")))
    assert f'data-images="{count} loaded {count}"' in dom  # every image decoded
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # not a blank page
