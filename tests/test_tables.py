"""Report tables: cells, best-in-bold, Markdown and LaTeX rendering, and the report files they go into."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.report import write_report
from benchmark.tables import Cell, Table, seeds_cell, tex_escape, to_latex, to_markdown

RESULTS_1_0 = Path(__file__).parent / "data" / "results-1.0"


def _table(**kw) -> Table:
    rows = [("oracle", [Cell(90.0, ci=(88.0, 92.0)), Cell(1.0, digits=1)]),
            ("a_b", [Cell(40.0, ci=(38.0, 42.0)), Cell(5.0, digits=1)]),
            ("c", [Cell(40.004, ci=(38.0, 42.0)), Cell(None)]),
            ("d", [seeds_cell([30.0, 32.0, 34.0], [None] * 3), Cell(2.0, digits=1)])]
    return Table("t", "A 50 % table", ["SSA-1", "Storage (MB)"], rows,
                 better={"SSA-1": "high", "Storage (MB)": "low"}, unranked=frozenset({"oracle"}), **kw)


def test_cells_show_interval_or_seed_spread():
    assert Cell(12.345, ci=(10.04, 14.66)).plain() == "12.35 [10.0, 14.7]"
    assert seeds_cell([30.0, 32.0, 34.0], [None] * 3).plain() == "32.00 ± 2.00"
    assert seeds_cell([30.0], [(28.0, 32.0)]).plain() == "30.00 [28.0, 32.0]"
    assert Cell(None).plain() == "–" and Cell("resnet18").plain() == "resnet18"


def test_best_per_column_ignores_references_and_marks_ties_at_the_shown_precision():
    best = {label: [c.best for c in cells] for label, cells in _table().with_best().rows}
    assert best == {"oracle": [False, False], "a_b": [True, False], "c": [True, False], "d": [False, True]}


def test_markdown_bolds_the_best_and_lists_notes():
    text = to_markdown(_table(notes=["No run of coop."]))
    assert "| a_b | **40.00 [38.0, 42.0]** | 5.0 |" in text
    assert "| d | 32.00 ± 2.00 | **2.0** |" in text
    assert text.endswith("_No run of coop._")


def test_latex_is_booktabs_with_escaped_text_and_bold_best():
    text = to_latex(_table(notes=["No run of coop."]))
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"\caption{A 50 \% table. No run of coop.}" in text and r"\label{tab:t}" in text
    assert r"a\_b & \textbf{40.00}\,{\scriptsize[38.0, 42.0]} & 5.0 \\" in text
    assert r"d & 32.00\,{\scriptsize$\pm$2.00} & \textbf{2.0} \\" in text
    assert r"\begin{tabular}{lrr}" in text
    assert tex_escape("64×88 ≤25 m & #1") == r"64$\times$88 $\leq$25 m \& \#1"


def test_report_writes_markdown_latex_and_plots_and_rebuilds_byte_identical(tmp_path):
    _, first = write_report(RESULTS_1_0, tmp_path / "a", formats=("md", "tex", "png"))
    _, second = write_report(RESULTS_1_0, tmp_path / "b", formats=("md", "tex", "png"))
    names = sorted(p.name for p in first)
    assert "tiny-smoke.md" in names and "tiny-smoke.tex" in names
    assert any(n.endswith("accuracy_vs_cost.png") for n in names) and any(n.endswith(".svg") for n in names)
    for a, b in zip(sorted(first), sorted(second)):
        assert a.read_bytes() == b.read_bytes(), a.name
    tex = (tmp_path / "a" / "tiny-smoke.tex").read_text()
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") >= 4


def test_an_unknown_format_is_bad_input(tmp_path):
    with pytest.raises(BenchmarkError, match="--format html5: choose from md,tex,png,html"):
        write_report(RESULTS_1_0, tmp_path, formats=("md", "html5"))
    assert not tmp_path.joinpath("tiny-smoke.md").exists()


def test_ablation_table_needs_two_loss_variants_and_names_the_missing_ones():
    from benchmark.report import ablation_table, by_method
    from tests.test_results import _run

    base = _run("addressclip")
    variant = replace(base, method=replace(base.method, overrides={"losses": "address"},
                                           options={**base.method.options, "losses": "address"}))
    assert ablation_table(by_method([base])) is None
    table = ablation_table(by_method([base, variant]))
    assert [label for label, _ in table.rows] == ["address", "address+caption+geography"]
    assert table.notes == ["No run of losses=address+caption, losses=address+geography."]


def test_towers_table_appears_with_a_one_tower_variant():
    from benchmark.report import by_method, towers_table
    from tests.test_results import _run

    base = _run("clip-address")
    image = replace(base, method=replace(base.method, overrides={"towers": "image"},
                                         options={**base.method.options, "towers": "image"}))
    assert towers_table(by_method([base])) is None
    table = towers_table(by_method([base, image]))
    assert [label for label, _ in table.rows] == ["clip-address: both towers", "clip-address: image tower only"]


def test_the_classification_family_goes_to_table_2_or_table_6_by_what_it_predicts():
    from benchmark.report import by_method, ial_table, pipeline_table
    from tests.test_results import _run

    def family(name: str, kind: str):
        run = _run(name)
        return replace(run, method=replace(run.method, family=kind))

    runs = [family("addressclip", "ial"), family("subst-classifier", "classification"),
            family("pigeon", "classification"), family("mixvpr", "retrieval")]
    assert [label for label, _ in ial_table(by_method(runs)).rows] == ["addressclip", "subst-classifier"]
    assert [label for label, _ in pipeline_table(by_method(runs)).rows] == ["addressclip", "mixvpr", "pigeon"]
    assert pipeline_table(by_method(runs[:2])) is None  # nothing goes through coordinates


def test_tables_2_and_6_name_the_registered_methods_they_have_no_run_of():
    from benchmark.report import by_method, ial_table, pipeline_table
    from tests.test_results import _run

    def family(name: str, kind: str):
        run = _run(name)
        return replace(run, method=replace(run.method, family=kind))

    runs = by_method([family("addressclip", "ial"), family("mixvpr", "retrieval")])
    table2, = ial_table(runs).notes
    assert "subst-classifier" in table2 and "clip-address" in table2 and "pigeon" not in table2
    table6, = pipeline_table(runs).notes
    assert "pigeon" in table6 and "salad" in table6
    assert "subst-classifier" not in table6 and "mixvpr" not in table6 and "addressclip" not in table6
