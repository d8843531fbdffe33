"""Typed report tables rendered to Markdown and LaTeX (booktabs): one value per cell with its 95 % interval or,
over several seeds, mean ± sd; the best value of each scored column in bold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Better = Literal["high", "low"]


@dataclass(frozen=True)
class Cell:
    """One table cell: a number (with its interval or seed sd) or a text."""

    value: float | str | None
    ci: tuple[float, float] | None = None
    sd: float | None = None
    digits: int = 2
    best: bool = False

    @property
    def number(self) -> float | None:
        """The numeric value, or None for text and missing cells."""
        return float(self.value) if isinstance(self.value, (int, float)) and not isinstance(self.value, bool) \
            else None

    def plain(self) -> str:
        """The cell as text: `v [lo, hi]`, `v ± sd` or `v`; '–' when missing."""
        if self.value is None:
            return "–"
        if self.number is None:
            return str(self.value)
        text = f"{self.number:.{self.digits}f}"
        if self.sd is not None:
            return f"{text} ± {self.sd:.{self.digits}f}"
        if self.ci is not None:
            return f"{text} [{self.ci[0]:.1f}, {self.ci[1]:.1f}]"
        return text


def seeds_cell(values: Sequence[float], cis: Sequence[tuple[float, float] | None], digits: int = 2) -> Cell:
    """One seed: the value and its interval; several: mean ± sample sd across seeds."""
    if len(values) == 1:
        return Cell(values[0], ci=cis[0], digits=digits)
    return Cell(float(np.mean(values)), sd=float(np.std(values, ddof=1)), digits=digits)


@dataclass(frozen=True)
class Table:
    """A titled table: row labels, columns of cells, which columns are scored (and which way is better),
    notes (e.g. the rows that have no run) and the rows left out of the ranking."""

    key: str
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    better: dict[str, Better] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    label_column: str = "Method"
    unranked: frozenset[str] = frozenset()  # row labels never marked best (references: ceilings and floors)

    def with_best(self) -> Table:
        """The table with the best value of each scored column marked (ties all marked)."""
        rows = [(label, list(cells)) for label, cells in self.rows]
        for j, column in enumerate(self.columns):
            way = self.better.get(column)
            numbers = [None if label in self.unranked else cells[j].number for label, cells in rows]
            present = [n for n in numbers if n is not None]
            if way is None or len(present) < 2:
                continue
            target = max(present) if way == "high" else min(present)
            for (_, cells), number in zip(rows, numbers):
                if number is not None and round(number, cells[j].digits) == round(target, cells[j].digits):
                    cells[j] = replace(cells[j], best=True)
        return replace(self, rows=rows)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table (best in bold), notes below it."""
    table = table.with_best()
    header = [table.label_column, *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|:" + "|:".join("-" * max(3, len(h)) for h in header) + "|"]
    for label, cells in table.rows:
        shown = [f"**{c.plain()}**" if c.best else c.plain() for c in cells]
        lines.append("| " + " | ".join(_md_escape(x) for x in [label, *shown]) + " |")
    return "\n".join(lines + [""] + [f"_{note}_" for note in table.notes] if table.notes else lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "±": r"$\pm$",
        "≤": r"$\leq$", "–": "--", "→": r"$\rightarrow$"}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX table (special characters escaped, a few symbols as math)."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell) -> str:
    if cell.number is None:
        return tex_escape(cell.plain())
    value = f"{cell.number:.{cell.digits}f}"
    value = rf"\textbf{{{value}}}" if cell.best else value
    if cell.sd is not None:
        return rf"{value}\,{{\scriptsize$\pm${cell.sd:.{cell.digits}f}}}"
    if cell.ci is not None:
        return rf"{value}\,{{\scriptsize[{cell.ci[0]:.1f}, {cell.ci[1]:.1f}]}}"
    return value


def to_latex(table: Table) -> str:
    """A booktabs `table` environment (best in bold, intervals and sds small), notes in the caption."""
    table = table.with_best()
    caption = tex_escape(table.title + (". " + " ".join(table.notes) if table.notes else ""))
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{caption}}}", rf"\label{{tab:{table.key}}}",
             r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
             " & ".join(tex_escape(h) for h in [table.label_column, *table.columns]) + r" \\", r"\midrule"]
    for label, cells in table.rows:
        lines.append(" & ".join([tex_escape(label), *(_tex_cell(c) for c in cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
