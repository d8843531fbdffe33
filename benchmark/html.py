"""One self-contained HTML report: per protocol and preset, the dataset summary, every table, every plot
(inline PNG) and links to the runs' files. No network, no scripts from elsewhere."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.report import heading, protocol_tables, run_label
from benchmark.results import LoadedRun
from benchmark.tables import Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem;
       color: #1b1b1b; background: #fff; line-height: 1.4; }
@media (prefers-color-scheme: dark) { body { color: #e6e6e6; background: #161616; }
  a { color: #8ab4f8; } th, td { border-color: #444 !important; } }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; background: #fff; border-radius: 4px; }
.note { font-style: italic; }
pre { overflow-x: auto; font-size: 0.8rem; }
"""

# Marks the page once every image has decoded (a browser test reads it back from the DOM).
CHECK = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var bad = images.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  document.body.setAttribute('data-images', images.length + ' loaded ' + (images.length - bad.length));
});
</script>"""


def table_html(table: Table) -> str:
    """One table as HTML (best values bold), with its notes below."""
    table = table.with_best()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [table.label_column, *table.columns])
    rows = []
    for label, cells in table.rows:
        tds = "".join(f'<td{" class=best" if c.best else ""}>{html.escape(c.plain())}</td>' for c in cells)
        rows.append(f"<tr><td>{html.escape(label)}</td>{tds}</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in table.notes)
    return (f"<h3>{html.escape(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead>\n<tbody>"
            + "\n".join(rows) + f"</tbody></table>{notes}")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    title = path.stem.rsplit("-", 1)[-1].replace("_", " ")
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _summary(runs: Sequence[LoadedRun]) -> str:
    p = min(runs, key=lambda r: r.result.seed).result.protocol
    options = ", ".join(f"{k}={v}" for k, v in sorted(p.options.items())) or "none"
    return (f"<p>Protocol <b>{html.escape(p.name)}</b> v{html.escape(p.version)}, preset {html.escape(p.preset)}: "
            f"{p.n_queries} queries ({p.n_queries_dropped} dropped), {p.n_candidates} candidate sub-streets, "
            f"data hash <code>{html.escape(p.data_hash[:12])}</code>; options: {html.escape(options)}.</p>")


def _links(runs: Sequence[LoadedRun], out_dir: Path) -> str:
    items = []
    for run in sorted(runs, key=lambda r: (run_label(r), r.result.seed)):
        href = Path(os.path.relpath(run.folder, out_dir)).as_posix()
        items.append(f'<li>{html.escape(run_label(run))} (seed {run.result.seed}): '
                     f'<a href="{html.escape(href)}/result.json">{html.escape(href)}/result.json</a></li>')
    return ("<h3>Runs</h3>\n<p>Each run's folder also holds its per-query <code>predictions.jsonl</code>.</p>\n<ul>"
            + "\n".join(items) + "</ul>")


def protocol_section(name: str, runs: Sequence[LoadedRun], plots: Sequence[Path], out_dir: Path,
                     extra: Sequence[Any] = ()) -> str:
    """The HTML of one protocol and preset: summary, tables (then `extra` ones), plots, run links."""
    results = [r.result for r in runs]
    parts = [f"<section><h2>{html.escape(heading(name, results))}</h2>", _summary(runs)]
    parts += [table_html(t) for t in [*protocol_tables(results), *extra]]
    parts += [_image(p) for p in plots if p.suffix == ".png"]
    parts += [_links(runs, out_dir), "</section>"]
    return "\n".join(parts)


def page(sections: Sequence[str]) -> str:
    """The whole self-contained page."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>ialbench report</title><style>{STYLE}</style></head>\n<body>\n<h1>ialbench report</h1>\n"
            + "\n".join(sections) + f"\n{CHECK}\n</body></html>\n")


def table_section(title: str, table: Any, plots: Sequence[Path]) -> str:
    """One titled table and its figures (a claim checked across protocol variants, e.g. coverage)."""
    return "\n".join([f"<section><h2>{html.escape(title)}</h2>", table_html(table),
                       *[_image(p) for p in plots if p.suffix == ".png"], "</section>"])


def scale_section(points: Sequence[Any], spec: Any, plots: Sequence[Path]) -> str:
    """The cost-vs-size curve: its Markdown tables as preformatted text, then the figure."""
    from benchmark.scale import markdown

    text = markdown(points, spec)
    title, _, body = text.partition("\n")
    return "\n".join([f"<section><h2>{html.escape(title.lstrip('# '))}</h2>",
                       f"<pre>{html.escape(body.strip())}</pre>", *[_image(p) for p in plots], "</section>"])
