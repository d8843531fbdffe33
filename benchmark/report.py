"""The report from result files: the paper's tables (Markdown and LaTeX) and the plots, per protocol and preset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark.coverage import coverage_table, plot_coverage, split_coverage
from benchmark.errors import BenchmarkError
from benchmark.query_groups import groups_table
from benchmark.results import LoadedRun, RunResult, TrainingInfo, load_results
from benchmark.tables import Cell, Table, seeds_cell, to_latex, to_markdown

MB = 1024 * 1024


def run_label(run: RunResult | LoadedRun) -> str:
    """A row label: the method name plus the options given on the command line, e.g. `gem (geocoder=streetmap)`."""
    method = (run.result if isinstance(run, LoadedRun) else run).method
    given = method.overrides
    changed = [f"{k}={v}" for k, v in sorted(given.items()) if k != "weights"]
    if given.get("weights"):
        changed.append(f"weights={Path(given['weights']).name}")
    return f"{method.name} ({', '.join(changed)})" if changed else method.name


def protocol_label(run: RunResult) -> str:
    """The protocol with the options given on the command line, e.g. `helsinki:queries=shifted`."""
    given = run.protocol.overrides
    return run.protocol.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(given.items())) if given else "")


def current_runs(runs: Sequence[LoadedRun]) -> dict[tuple[str, str], list[LoadedRun]]:
    """Per (protocol variant, preset): the newest run of each method variant and seed on the newest data version.

    Runs on an older data hash of the same protocol variant and preset are stale (the data changed) and
    left out.
    """
    groups: dict[tuple[str, str], list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault((protocol_label(run.result), run.result.protocol.preset), []).append(run)
    out = {}
    for key, members in groups.items():
        data_hash = max(members, key=lambda r: r.result.created).result.protocol.data_hash
        latest: dict[str, LoadedRun] = {}
        fresh = (r for r in members if r.result.protocol.data_hash == data_hash)
        for run in sorted(fresh, key=lambda r: r.result.created):
            label = f"{run_label(run)}\0{run.result.seed}"
            latest.pop(label, None)
            latest[label] = run
        out[key] = list(latest.values())
    return out


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _metric(runs: Sequence[RunResult], key: str, digits: int = 2) -> Cell:
    """A metric over a method's seeds: one seed with its interval, several as mean ± sd."""
    present = [r for r in runs if r.metrics.get(key) is not None]
    if not present:
        return Cell(None)
    return seeds_cell([float(r.metrics[key]) for r in present], [r.ci95.get(key) for r in present], digits)


def _label(label: str, runs: Sequence[RunResult]) -> str:
    return f"{label} ({len(runs)} seeds)" if len(runs) > 1 else label


ACCURACY = ("SSA-1", "ssa@1"), ("SSA-5", "ssa@5"), ("SA-1", "sa@1"), ("SA-5", "sa@5")
SCORED_HIGH = {name: "high" for name, _ in ACCURACY}
INTERVALS = "percent; 95 % bootstrap interval over queries, or mean ± sd over seeds"


def _accuracy_rows(groups: dict[str, list[RunResult]], columns: Sequence[tuple[str, str]]) -> list:
    return [(_label(label, runs), [_metric(runs, key) for _, key in columns]) for label, runs in groups.items()]


def accuracy_table(groups: dict[str, list[RunResult]]) -> Table:
    """Every method's SSA-1/5 and SA-1/5."""
    return Table("accuracy", f"Accuracy of every method ({INTERVALS})", [c for c, _ in ACCURACY],
                 _accuracy_rows(groups, ACCURACY), better=SCORED_HIGH)


def _missing(groups: dict[str, list[RunResult]], belongs: Callable[[str], bool]) -> list[str]:
    """A note naming the registered methods that belong in a table but have no run in `groups`."""
    from benchmark.registry import METHODS

    ran = {runs[0].method.name for runs in groups.values()}
    names = [n for n in METHODS.names() if n not in ran and belongs(n)]
    return [f"No run of {', '.join(names)}."] if names else []


def _family(name: str) -> str | None:
    from benchmark.registry import METHODS

    try:
        return METHODS.get(name).family
    except Exception:  # a plug-in that no longer imports: not listed as missing
        return None


# Classifiers that answer with addresses straight away (no coordinates): Table 2 shows them beside the IAL
# methods as their control; the other classification methods go through coordinates (Table 6).
DIRECT_CLASSIFIERS = frozenset({"subst-classifier"})


def ial_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Table 2: the IAL methods' (and the direct sub-street classifier's) SSA-1/5 and SA-1/5 (None when there is
    no IAL run)."""
    ial = {k: v for k, v in groups.items()
           if v[0].method.family == "ial" or v[0].method.name in DIRECT_CLASSIFIERS}
    if not ial:
        return None
    return Table("ial", f"Table 2: image address localization methods ({INTERVALS})", [c for c, _ in ACCURACY],
                 _accuracy_rows(ial, ACCURACY), better=SCORED_HIGH,
                 notes=_missing(groups, lambda n: _family(n) == "ial" or n in DIRECT_CLASSIFIERS))


LOSS_ABLATIONS = ("address", "address+caption", "address+geography", "address+caption+geography")


def ablation_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Table 3: AddressCLIP's loss ablation, one row per `losses=` variant found (None without variants)."""
    rows: dict[str, list[RunResult]] = {}
    for runs in groups.values():
        method = runs[0].method
        if method.name == "addressclip" and set(method.overrides) <= {"losses", "weights"}:
            rows[str(method.options.get("losses", "address+caption+geography"))] = runs
    if len(rows) < 2:
        return None
    ordered = {k: rows[k] for k in sorted(rows, key=lambda k: (len(k.split("+")), k))}
    missing = [v for v in LOSS_ABLATIONS if v not in rows]
    notes = [f"No run of losses={', losses='.join(missing)}."] if missing else []
    return Table("ablation", f"Table 3: AddressCLIP loss ablation ({INTERVALS})", [c for c, _ in ACCURACY],
                 _accuracy_rows(ordered, ACCURACY), better=SCORED_HIGH, notes=notes, label_column="Losses")


TOWER_ROWS = {"image": "image tower only", "text": "text tower only", "both": "both towers"}


def towers_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Table 4: the encoder training strategy (`towers=image|text|both`) of addressclip and clip-address,
    emitted when a one-tower variant was run."""
    rows: dict[str, list[RunResult]] = {}
    for runs in groups.values():
        method = runs[0].method
        if method.name in ("addressclip", "clip-address") and set(method.overrides) <= {"towers", "weights"}:
            towers = str(method.options.get("towers", "both"))
            rows[f"{method.name}: {TOWER_ROWS.get(towers, towers)}"] = runs
    if not any("both" not in label for label in rows):
        return None
    ordered = {k: rows[k] for k in sorted(rows)}
    return Table("towers", f"Table 4: which encoders are fine-tuned ({INTERVALS})", [c for c, _ in ACCURACY],
                 _accuracy_rows(ordered, ACCURACY), better=SCORED_HIGH, label_column="Method: trained")


BACKBONE_OPTIONS = frozenset({"model", "init", "weights", "image_bf16"})


def backbone_key(run: RunResult) -> tuple[str, str] | None:
    """(method, image tower) of an IAL run that changes at most its tower (`model=`, with how it starts), else
    None: the runs of the backbone study (the paper's Fig. 5)."""
    method = run.method
    if method.family != "ial" or not set(method.overrides) <= BACKBONE_OPTIONS:
        return None
    return method.name, str(method.options.get("model"))


def backbone_groups(groups: dict[str, list[RunResult]]) -> dict[tuple[str, str], list[RunResult]]:
    """The backbone study's runs by (method, tower), for methods run with more than one tower, smallest first."""
    found = {key: runs for runs in groups.values() if (key := backbone_key(runs[0])) is not None}
    studied = {name for name, _ in found if sum(n == name for n, _ in found) > 1}
    return dict(sorted(((k, v) for k, v in found.items() if k[0] in studied),
                       key=lambda kv: (kv[0][0], kv[1][0].cost.storage_bytes.model)))


def backbone_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """The paper's Fig. 5 as a table: each image tower of an IAL method, its weights at inference, its
    single-query encode time and its accuracy (None unless a method ran with two towers or more)."""
    study = backbone_groups(groups)
    if not study:
        return None
    rows = []
    for (name, model), runs in study.items():
        cost = runs[0].cost
        rows.append((f"{name}: {model}", [_metric(runs, "ssa@1"), _metric(runs, "sa@1"),
                                          Cell(cost.storage_bytes.model / MB, digits=2),
                                          Cell(cost.latency_ms["encode"].median, digits=3)]))
    return Table("backbones", f"Backbones (the paper's Fig. 5): image towers of one method ({INTERVALS})",
                 ["SSA-1", "SA-1", "Weights (MB)", "Inference (ms)"], rows,
                 better={"SSA-1": "high", "SA-1": "high", "Weights (MB)": "low", "Inference (ms)": "low"},
                 label_column="Method: image tower",
                 notes=["Weights: what runs per query (the image tower and the projection; the candidates' "
                        "embeddings are Table 5's Memory). Inference: median single-query encode, lowest seed."])


def pipeline_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Table 6: image → GPS → address (each retrieval and geocell method and geocoder variant) beside
    AddressCLIP."""
    def via_gps(method: Any) -> bool:
        return _through_coordinates(method.name, method.family)

    rows = {k: v for k, v in groups.items() if via_gps(v[0].method) or v[0].method.name == "addressclip"}
    if not any(via_gps(v[0].method) for v in rows.values()):
        return None
    columns = ACCURACY[:2]
    return Table("pipeline", f"Table 6: image → GPS → address beside AddressCLIP ({INTERVALS})",
                 [c for c, _ in columns], _accuracy_rows(rows, columns), better={c: "high" for c, _ in columns},
                 notes=_missing(groups, lambda n: _through_coordinates(n, _family(n))))


GEOCODER_OPTIONS = frozenset({"geocoder", "gps_noise_m", "map"})
GEOCODERS = ("gazetteer", "streetmap", "streetnames")


def geocoder_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Table 6 by geocoder: SSA-1 of each method that geocodes coordinates (and oracle-gps) with each reverse
    geocoder, with and without GPS noise, one column per (geocoder, σ) found; None unless some method ran
    with two settings or more."""
    cells: dict[str, dict[tuple[str, float], list[RunResult]]] = {}
    for runs in groups.values():
        method = runs[0].method
        if not (_through_coordinates(method.name, method.family) or method.name == "oracle-gps"):
            continue
        if not set(method.overrides) <= GEOCODER_OPTIONS or "geocoder" not in method.options:
            continue
        setting = (str(method.options["geocoder"]), float(method.options.get("gps_noise_m", 0.0)))
        cells.setdefault(method.name, {})[setting] = runs
    if not any(len(v) > 1 for v in cells.values()):
        return None
    settings = sorted({s for v in cells.values() for s in v},
                      key=lambda s: (s[1], GEOCODERS.index(s[0]) if s[0] in GEOCODERS else len(GEOCODERS), s[0]))
    rows = [(name, [_metric(v[s], "ssa@1") if s in v else Cell(None) for s in settings])
            for name, v in cells.items()]
    columns = [geocoder if noise == 0 else f"{geocoder}, σ {noise:g} m" for geocoder, noise in settings]
    return Table("geocoders", f"Table 6 by geocoder: SSA-1 of image → GPS → address ({INTERVALS})", columns, rows,
                 better={c: "high" for c in columns},
                 notes=["gazetteer: the nearest labelled train/database images (knows the benchmark's labels); "
                        "streetmap: the nearest sub-street geometry (knows the partition); streetnames: only the "
                        "map's named ways, junctions and places, its answer matched to a candidate by name (what a "
                        "public reverse geocoder knows). σ: Gaussian GPS error per axis on the database "
                        "coordinates (retrieval) or the query's (oracle-gps)."])


def _through_coordinates(name: str, family: str | None) -> bool:
    """Retrieval and geocell methods: they predict coordinates, then reverse-geocode them (Table 6's rows)."""
    return family == "retrieval" or (family == "classification" and name not in DIRECT_CLASSIFIERS)


def cost_table(groups: dict[str, list[RunResult]]) -> Table:
    """Table 5 with the paper's definitions: storage (weights + database + map), memory (the resident search
    structure: address embeddings, index, class rows and cell tables), inference (encode) and retrieval
    (search + geocode) latency; then the process's peak RSS (or CUDA peak) and throughput (lowest seed)."""
    rows = []
    for label, runs in groups.items():
        cost = runs[0].cost
        lat = cost.latency_ms
        peak = cost.peak_rss_bytes if cost.peak_cuda_bytes is None else cost.peak_cuda_bytes
        search = None if cost.search_bytes is None else cost.search_bytes / MB
        rows.append((label, [Cell(cost.storage_bytes.total / MB, digits=3), Cell(search, digits=3),
                             Cell(lat["encode"].median, digits=3),
                             Cell(lat["search"].median + lat["geocode"].median, digits=3),
                             Cell(peak / MB, digits=1), Cell(cost.throughput_qps, digits=1)]))
    columns = ["Storage (MB)", "Memory (MB)", "Inference (ms)", "Retrieval (ms)", "Peak RSS (MB)",
               "Throughput (q/s)"]
    notes = ["Memory is the resident search structure each query is matched against (the paper's definition: "
             "candidate address embeddings, retrieval index, head rows + geocell tables, gazetteer); Peak RSS is "
             "the whole process's (the CUDA allocator's peak on a GPU). MB = 2^20 bytes."]
    if any(runs[0].cost.search_bytes is None for runs in groups.values()):
        notes.append("Memory is – for runs written before result schema 1.3, which did not record it.")
    return Table("cost", "Table 5: cost at inference (latency = median single-query ms; lowest seed)", columns,
                 rows, better={"Storage (MB)": "low", "Memory (MB)": "low", "Inference (ms)": "low",
                               "Retrieval (ms)": "low", "Throughput (q/s)": "high"}, notes=notes)


def training_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """The training budget of every trained method: backbone and its start, input size, optimiser steps,
    images through the model and wall time (of the run that trained it, when it came from the cache)."""
    rows = []
    for label, runs in groups.items():
        t: TrainingInfo | None = runs[0].training
        if t is None:
            continue
        seconds = _num(t.wall_seconds, 0) + (" (cached)" if t.cached else "")
        rows.append((label, [Cell(t.backbone or "–"), Cell("×".join(map(str, t.input_size)) if t.input_size else "–"),
                             Cell("–" if t.steps is None else f"{t.steps:,}"),
                             Cell("–" if t.images_seen is None else f"{t.images_seen:,}"), Cell(seconds),
                             Cell(str(t.seed))]))
    if not rows:
        return None
    return Table("budget", "Training budget (backbone and its start, input, optimiser steps, images through the "
                 "model, seconds; lowest seed)", ["Backbone", "Input", "Steps", "Images seen", "Training (s)", "Seed"],
                 rows)


def localization_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """Recall@1/5/10 (25 m) and localization error, for methods that predict coordinates."""
    rows = []
    for label, runs in groups.items():
        m = runs[0].metrics
        if m.get("median_error_m") is None and m.get("recall@1") is None:
            continue
        rows.append((_label(label, runs), [_metric(runs, "recall@1"), _metric(runs, "recall@5"),
                                           _metric(runs, "recall@10"), _metric(runs, "median_error_m", 1),
                                           _metric(runs, "within_25m", 1), _metric(runs, "within_100m", 1)]))
    if not rows:
        return None
    columns = ["R@1", "R@5", "R@10", "Median error (m)", "≤25 m", "≤100 m"]
    return Table("localization", f"Localization: Recall@N at 25 m and error ({INTERVALS})", columns, rows,
                 better={"R@1": "high", "R@5": "high", "R@10": "high", "Median error (m)": "low", "≤25 m": "high",
                         "≤100 m": "high"})


def lowest_seed(runs: Sequence[LoadedRun]) -> dict[str, LoadedRun]:
    """Each method variant's (row label's) run of the lowest seed."""
    out: dict[str, LoadedRun] = {}
    for run in sorted(runs, key=lambda r: r.result.seed):
        out.setdefault(run_label(run), run)
    return out


def by_method(runs: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    """The runs of each method variant, lowest seed first; variants in registry order (references, IAL,
    retrieval), then by label."""
    from benchmark.registry import METHODS

    order = {name: i for i, name in enumerate(METHODS.names())}
    out: dict[str, list[RunResult]] = {}
    for run in runs:
        out.setdefault(run_label(run), []).append(run)
    ranked = sorted(out, key=lambda label: (order.get(out[label][0].method.name, len(order)), label))
    return {label: sorted(out[label], key=lambda r: r.seed) for label in ranked}


def seed_table(groups: dict[str, list[RunResult]]) -> Table | None:
    """SSA-1 and SA-1 of every seed of the methods run with more than one, with mean ± sd across seeds
    (the seed spread, beside the bootstrap interval's query spread)."""
    rows = []
    for label, members in groups.items():
        if len(members) < 2:
            continue
        ssa = [r.metrics["ssa@1"] for r in members]
        widest = max((r.ci95["ssa@1"][1] - r.ci95["ssa@1"][0]) / 2 for r in members if r.ci95.get("ssa@1"))
        rows.append((label, [Cell(", ".join(str(r.seed) for r in members)),
                             Cell(" / ".join(f"{v:.2f}" for v in ssa)), _metric(members, "ssa@1"),
                             _metric(members, "sa@1"), Cell(f"±{widest:.2f}")]))
    if not rows:
        return None
    return Table("seeds", "Seed spread (percent)", ["Seeds", "SSA-1 per seed", "SSA-1 mean ± sd", "SA-1 mean ± sd",
                                                    "Widest 95 % interval (SSA-1)"], rows)


def protocol_tables(all_runs: Sequence[RunResult]) -> list[Table]:
    """Every table that has runs for one protocol and preset, in report order; references are never bold."""
    groups = by_method(all_runs)
    tables = [accuracy_table(groups), ial_table(groups), ablation_table(groups), towers_table(groups),
              backbone_table(groups), pipeline_table(groups), geocoder_table(groups),
              cost_table(groups), localization_table(groups), training_table(groups), seed_table(groups)]
    # Row labels with and without the seed count: tables differ in which they show.
    references = frozenset(shown for label, runs in groups.items() if runs[0].method.family == "reference"
                           for shown in (label, _label(label, runs)))
    return [replace(t, unranked=references) for t in tables if t is not None]


def heading(protocol: str, all_runs: Sequence[RunResult]) -> str:
    """The section title of one protocol and preset."""
    first = min(all_runs, key=lambda r: r.seed).protocol
    return (f"{protocol}{' (robustness variant)' if first.overrides else ''} (v{first.version}, preset "
            f"{first.preset}, {first.n_queries} queries, {first.n_candidates} candidate sub-streets, "
            f"data {first.data_hash[:12]})")


def render_protocol(protocol: str, all_runs: Sequence[RunResult]) -> str:
    """The Markdown report of one protocol and preset."""
    parts = [f"## {heading(protocol, all_runs)}"]
    for table in protocol_tables(all_runs):
        parts += ["", f"### {table.title}", "", to_markdown(table)]
    return "\n".join(parts) + "\n"


def render_latex(protocol: str, all_runs: Sequence[RunResult]) -> str:
    """The LaTeX tables (booktabs) of one protocol and preset, one `table` environment each."""
    head = f"% {heading(protocol, all_runs)}\n% needs \\usepackage{{booktabs}}\n"
    return head + "\n".join(to_latex(t) for t in protocol_tables(all_runs))


FORMATS = ("md", "tex", "png", "html")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _stem(name: str, preset: str) -> str:
    """The file stem of a protocol variant and preset, e.g. `helsinki_queries-shifted`, `tiny-smoke`."""
    stem = name.replace(":", "_").replace(",", "_").replace("=", "-")
    return stem if preset == "default" else f"{stem}-{preset}"


def write_report(results_dir: Path, out_dir: Path, protocol: str | None = None,
                 formats: Sequence[str] = ("md",)) -> tuple[str, list[Path]]:
    """Render each protocol's (and preset's) report from its newest runs: `<stem>.md` (always returned as
    text), `<stem>.tex`, the plots `<stem>-*.png/.svg` and one `report.html` for all (with the plots inline),
    as `formats` asks; returns the Markdown text and the files written."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise BenchmarkError(f"--format {','.join(unknown)}: choose from {','.join(FORMATS)}")
    groups, curves = split_coverage(current_runs(load_results(results_dir)))
    everything = dict(groups)  # a joint protocol's groups are compared with their own protocols' runs
    if protocol is not None:
        groups = {k: v for k, v in groups.items() if k[0].split(":")[0] == protocol}
        curves = {k: v for k, v in curves.items() if k[0].split(":")[0] == protocol}
    if not groups and not curves:
        raise BenchmarkError(f"no result.json under {results_dir}"
                             + (f" for protocol {protocol}" if protocol else "")
                             + "; run `python -m benchmark run` first or pass --results DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    texts, written, sections = [], [], []
    # Base protocols before their variants, then by name and preset, whatever order the files were read in.
    for (name, preset), runs in sorted(groups.items(), key=lambda kv: (":" in kv[0][0], kv[0])):
        results = [run.result for run in runs]
        text = render_protocol(name, results)
        alone = {label: members for (label, p), members in everything.items() if p == preset}
        grouped = groups_table(name, runs, alone)
        if grouped is not None:
            text += f"\n### {grouped.title}\n\n{to_markdown(grouped)}\n"
        stem = _stem(name, preset)
        texts.append(text)
        if "md" in formats:
            _atomic_text(out_dir / f"{stem}.md", text)
            written.append(out_dir / f"{stem}.md")
        if "tex" in formats:
            _atomic_text(out_dir / f"{stem}.tex", render_latex(name, results))
            written.append(out_dir / f"{stem}.tex")
        plots: list[Path] = []
        if "png" in formats or "html" in formats:
            from benchmark.plots import write_plots

            plots = [path for paths in write_plots(runs, out_dir, stem).values() for path in paths]
            written.extend(plots)
        if "html" in formats:
            from benchmark.html import protocol_section

            sections.append(protocol_section(name, runs, plots, out_dir, [grouped] if grouped else []))
    for (name, preset), shares in sorted(curves.items()):  # coverage variants: one table and curve per base
        table = coverage_table(name, shares)
        text = f"## {table.title} (preset {preset})\n\n{to_markdown(table)}\n"
        stem = _stem(name, preset)
        texts.append(text)
        if "md" in formats:
            _atomic_text(out_dir / f"{stem}-coverage.md", text)
            written.append(out_dir / f"{stem}-coverage.md")
        figure = plot_coverage(name, shares, out_dir, stem) if "png" in formats or "html" in formats else []
        written.extend(figure)
        if "html" in formats:
            from benchmark.html import table_section

            sections.append(table_section(f"{table.title} (preset {preset})", table, figure))
    for scale_json in sorted(results_dir.rglob("scale.json")):  # the cost-vs-size curve, when one was measured
        from benchmark.scale import load, markdown, plot

        points, spec = load(scale_json)
        texts.append(markdown(points, spec))
        stem = scale_json.parent.name if scale_json.parent != results_dir else "scale"
        figure = plot(points, out_dir, stem) if "png" in formats or "html" in formats else []
        written.extend(figure)
        if "html" in formats:
            from benchmark.html import scale_section

            sections.append(scale_section(points, spec, [p for p in figure if p.suffix == ".png"]))
    if sections:
        from benchmark.html import page

        _atomic_text(out_dir / "report.html", page(sections))
        written.append(out_dir / "report.html")
    return "\n".join(texts), written
