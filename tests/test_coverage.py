"""Coverage (`<protocol>:coverage=F`): seeded, nested thinning of the train and database locations with the
queries and candidates kept whole; its runs recorded and reported as one table and curve per base protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.coverage import kept_share
from benchmark.dataset import location_keys
from benchmark.errors import BenchmarkError
from benchmark.protocol import resolve_protocol
from benchmark.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")


def test_thinning_is_seeded_nested_and_keeps_the_queries_and_candidates(tiny_dataset):
    half, quarter = tiny_dataset.covering(0.5), tiny_dataset.covering(0.25)
    assert half.splits["queries"].equals(tiny_dataset.splits["queries"])
    assert half.address_book.addresses == tiny_dataset.address_book.addresses  # every address a candidate
    for split in ("train", "database"):
        whole = np.unique(location_keys(tiny_dataset.splits[split]))
        kept = {f: set(location_keys(d.splits[split])) for f, d in ((0.5, half), (0.25, quarter))}
        assert len(kept[0.5]) == round(0.5 * len(whole)) and len(kept[0.25]) == round(0.25 * len(whole))
        assert kept[0.25] <= kept[0.5] <= set(whole)
        # whole locations: every image of a kept location stays
        table = tiny_dataset.splits[split]
        assert len(half.splits[split]) == int(np.isin(location_keys(table), list(kept[0.5])).sum())
    assert tiny_dataset.covering(0.5).splits["train"].equals(half.splits["train"])  # the same draw every time
    assert len({tiny_dataset.data_hash, half.data_hash, quarter.data_hash}) == 3  # nothing trained is reused


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "half", "nan"])
def test_a_bad_share_is_one_clear_error(value):
    with pytest.raises(BenchmarkError, match=r"tiny:coverage=.*a number in \(0, 1\]"):
        resolve_protocol(f"tiny:coverage={value}")


def test_every_protocol_takes_coverage_and_records_it():
    assert resolve_protocol("pitts_ial:coverage=0.25").given() == {"coverage": "0.25"}
    assert resolve_protocol("tiny:coverage=1").given() == {}
    assert resolve_protocol("tiny").coverage == 1.0


def test_runs_at_two_shares_give_one_coverage_table_and_curve(tmp_path, capsys):
    out = tmp_path / "results"
    for protocol, methods in (("tiny:coverage=0.5", "prior,tiny-images"), ("tiny", "prior,tiny-images,oracle-gps")):
        assert main(["run", "-q", "--protocol", protocol, "--methods", methods, "--preset", "smoke",
                     "--out", str(out), "--latency-queries", "2"]) == 0
    runs = {(r.result.protocol.overrides.get("coverage"), r.result.method.name): r for r in load_results(out)}
    half, whole = runs[("0.5", "tiny-images")], runs[(None, "tiny-images")]
    assert half.result.protocol.n_queries == whole.result.protocol.n_queries
    assert half.result.protocol.n_candidates == whole.result.protocol.n_candidates
    ratio, ci = kept_share(half, whole)
    assert ratio == pytest.approx(half.result.metrics["ssa@1"] / whole.result.metrics["ssa@1"])
    assert ci is not None and ci[0] <= ratio <= ci[1]
    same, same_ci = kept_share(whole, whole)
    assert same == 1.0 and same_ci == (1.0, 1.0)
    capsys.readouterr()
    assert main(["report", "-q", "--results", str(out), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "tiny-smoke-coverage.md").read_text()
    assert "| Method | 50 % | 100 % | Kept at 50 % (%) |" in text
    assert "| tiny-images |" in text and "oracle-gps" not in text  # run at 100 % only: not part of the curve
    assert (tmp_path / "rep" / "tiny-smoke-coverage.png").is_file()
    assert not (tmp_path / "rep" / "tiny_coverage-0.5-smoke.md").exists()  # no full section per share
    assert "Coverage on tiny" in (tmp_path / "rep" / "report.html").read_text()
    assert json.loads((half.folder / "result.json").read_text())["protocol"]["overrides"] == {"coverage": "0.5"}
