"""Multi-seed runs and the committed regression baseline that CI gates the smoke main job against."""

from __future__ import annotations

from pathlib import Path

from benchmark.cli import main
from benchmark.compare import load_side
from methods import SETS

BASELINE = Path(__file__).parent.parent / "results" / "baselines" / "smoke"


def test_seeds_write_one_result_per_seed_and_the_report_shows_their_spread(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--protocol", "tiny", "--preset", "smoke", "--methods", "tiny-images,prior", "-q",
                 "--seeds", "0,1", "--out", str(out)]) == 0
    runs = load_side(out, "results")
    assert sorted((r.result.method.name, r.result.seed) for r in runs) == \
        [("prior", 0), ("prior", 1), ("tiny-images", 0), ("tiny-images", 1)]
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "reports")]) == 0
    text = capsys.readouterr().out
    assert "### Seed spread" in text and "| tiny-images | 0, 1" in text
    assert main(["compare", str(out), str(out)]) == 0  # every seed is paired with itself


def test_seeds_must_be_distinct_integers(capsys):
    assert main(["run", "--seeds", "0,0", "-q"]) == 2
    assert main(["run", "--seeds", "zero", "-q"]) == 2
    assert "--seeds" in capsys.readouterr().err
def test_the_committed_baseline_is_the_smoke_main_job():
    """results/baselines/smoke: the headline set at the smoke preset, seed 0, schema 1.2 with timing rounds."""
    runs = load_side(BASELINE, "baseline")
    assert sorted(r.result.method.name for r in runs) == sorted(SETS["headline"])
    for run in runs:
        r = run.result
        assert r.protocol.preset == "smoke" and r.seed == 0 and r.cost.timing is not None
        assert len(list(run.predictions())) == r.protocol.n_queries
    assert len({r.result.protocol.data_hash for r in runs}) == 1
    assert (BASELINE / "PROVENANCE.json").is_file()
