"""The backbone study (the paper's Fig. 5): IAL runs that differ only in their image tower become one table and
one figure, smallest tower first; other variants stay out of it."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.report import backbone_key, backbone_table, by_method
from benchmark.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_towers_of_addressclip_give_the_backbone_table_and_figure(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--latency-queries", "2", "--out", str(out),
                 "--methods", "addressclip,addressclip:model=ial-r18-l2,addressclip:epochs=1,prior"]) == 0
    results = [run.result for run in load_results(out)]
    keys = {backbone_key(r) for r in results}
    assert keys == {("addressclip", "ial-r18-tiny"), ("addressclip", "ial-r18-l2"), None}  # epochs=1, prior: out
    table = backbone_table(by_method(results))
    labels = [label for label, _ in table.rows]
    assert labels == ["addressclip: ial-r18-l2", "addressclip: ial-r18-tiny"]  # by weights: layer2 < layer3
    weights = [dict(zip(table.columns, cells))["Weights (MB)"].number for _, cells in table.rows]
    assert 0 < weights[0] < weights[1]
    capsys.readouterr()
    assert main(["report", "-q", "--results", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "Backbones (the paper's Fig. 5)" in (tmp_path / "rep" / "tiny-smoke.md").read_text()
    assert (tmp_path / "rep" / "tiny-smoke-backbones.png").is_file()


def test_one_tower_gives_no_backbone_table(tmp_path):
    out = tmp_path / "results"
    assert main(["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--latency-queries", "2", "--out", str(out),
                 "--methods", "prior"]) == 0
    assert backbone_table(by_method([run.result for run in load_results(out)])) is None
