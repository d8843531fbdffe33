"""Command line: `python -m benchmark ls | run | data | report | compare | pretrain | scale | heatmap`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmark.errors import BenchmarkError, CheckFailed
from benchmark.protocol import PRESETS

EXAMPLES = {
    "ls": "example:\n  python -m benchmark ls",
    "run": (
        "examples:\n"
        "  python -m benchmark run                                   # the headline methods on the embedded default\n"
        "  python -m benchmark run --methods all                     # every method\n"
        "  python -m benchmark run --protocol tiny --methods tiny-images,prior --preset smoke\n"
        "  python -m benchmark run --protocol pitts_ial --data-root ~/datasets/Pitts-IAL --methods oracle-gps\n"
        "  python -m benchmark run --methods tiny-images:size=32,grey=false --seed 1 --out results/\n"
        "  python -m benchmark run --methods addressclip,mixvpr --seeds 0,1,2   # seed spread in the report"
    ),
    "data": (
        "examples:\n"
        "  python -m benchmark data build --protocol helsinki\n"
        "  python -m benchmark data card --protocol helsinki --out reports/helsinki\n"
        "  python -m benchmark data check --protocol pitts_ial --data-root ~/datasets/Pitts-IAL\n"
        "  python -m benchmark data build --protocol helsinki:spacing_m=5,headings=4\n"
        "  python -m benchmark data build --from-images ~/photos --map ~/maps/area.osm.pbf --out ~/datasets/mycity\n"
        "  python -m benchmark data build --from-images ~/photos --csv ~/photos/gps.csv --map area.osm.pbf \\\n"
        "      --out ~/datasets/mycity --options split=random,max_street_m=30,captions=empty\n"
        "  python -m benchmark run --protocol ial --data-root ~/datasets/mycity"
    ),
    "report": ("examples:\n  python -m benchmark report --results results/ --out reports/\n"
               "  python -m benchmark report --format tex --protocol helsinki   # LaTeX tables only"),
    "pretrain": (
        "examples:\n"
        "  python -m benchmark pretrain kotka-r18      # rebuild the shipped trunk (methods/weights/kotka-r18.pt)\n"
        "  python -m benchmark pretrain kotka-r18 --file /tmp/kotka-r18.pt --out results/pretrain\n"
        "  python -m benchmark run --methods mixvpr:init=/tmp/kotka-r18.pt   # start a method from it\n"
        "  python -m benchmark pretrain kotka-clip     # the whole CLIP the prompt learners start from\n"
        "  python -m benchmark pretrain kotka-clip --file /tmp/kotka-clip.pt && \\\n"
        "    python -m benchmark run --methods coop:init=scratch,weights=/tmp/kotka-clip.pt"
    ),
    "scale": (
        "examples:\n"
        "  python -m benchmark scale --out reports/scale          # 10^3..10^6 rows, densevlad's real descriptors\n"
        "  python -m benchmark scale --sizes 1e3,1e4 --dims gem=512 --method tiny-images --protocol tiny "
        "--preset smoke --out /tmp/scale\n"
        "  python -m benchmark scale --index-options nprobe=8,pq_bytes=128,rerank=50   # other IVF-PQ settings"
    ),
    "heatmap": (
        "examples:\n"
        "  python -m benchmark heatmap --protocol helsinki --address \"Aleksanterinkatu, Keskusta\" --address Kluuvi\n"
        "  python -m benchmark heatmap --protocol helsinki --method clip-address --preset smoke "
        "--address \"Aleksanterinkatu, Keskusta (Mannerheimintie, Keskusta and Mikonkatu, Kluuvi)\" --out /tmp/heat"
    ),
    "compare": (
        "examples:\n"
        "  python -m benchmark compare results/baselines/smoke results/   # gate a run against the committed baseline\n"
        "  python -m benchmark compare old/result.json new/result.json --strict --json diff.json\n"
        "  python -m benchmark compare results/baselines/smoke results/ --update-baseline"
    ),
}


def _default_protocol() -> str:
    from protocols import DEFAULT_PROTOCOL

    return DEFAULT_PROTOCOL


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with a copy-paste example in every --help."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m benchmark", formatter_class=fmt,
        description="ialbench: image address localization vs. place recognition + reverse geocoding.",
        epilog="example:\n  python -m benchmark run --protocol tiny --methods all\n"
               "exit codes: 0 success, 1 a check failed or a regression, 2 bad usage or bad input, "
               "3 not comparable (compare)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{ls,run,data,report,compare,pretrain,scale,heatmap}")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, epilog=EXAMPLES[name], formatter_class=fmt, parents=[common])

    add("ls", "list methods and protocols")

    run = add("run", "run methods on a protocol and write results")
    run.add_argument("--protocol", default=None,
                     help="protocol name, generated ones optionally name:key=value,... (default: the embedded default)")
    run.add_argument("--methods", default="headline",
                     help="comma-separated method names, each optionally name:key=value,key=value, or a set: "
                          "headline (the default: references, AddressCLIP, CLIP + address, the best retrieval "
                          "and the best classification method) or all")
    run.add_argument("--preset", default="default", choices=PRESETS, help="data size and training budget")
    run.add_argument("--data-root", type=Path, default=None, help="dataset folder (real datasets) or build folder")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0)
    seeds.add_argument("--seeds", default=None,
                       help="comma-separated seeds, e.g. 0,1,2: one result per method and seed (reports show their "
                            "mean ± sd)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    run.add_argument("--weights", type=Path, default=None,
                     help="evaluate this local checkpoint (official or ialbench layout) with the one method named")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--latency-queries", type=int, default=100,
                     help="queries timed one by one for single-stream latency (after 5 warm-up queries)")

    data = add("data", "build or validate a dataset")
    data.add_argument("action", choices=("build", "check", "card"),
                      help="build a generated dataset, check one, or write a generated dataset's card")
    data.add_argument("--protocol", default=None, help="protocol name (default: the embedded default)")
    data.add_argument("--preset", default="default", choices=PRESETS)
    data.add_argument("--data-root", type=Path, default=None)
    data.add_argument("--out", type=Path, default=None,
                      help="card: where to write it (default: <dataset>/card); build --from-images: the new dataset")
    data.add_argument("--from-images", type=Path, default=None, metavar="DIR",
                      help="build: an IAL dataset from this folder of geotagged photos (needs --map and --out)")
    data.add_argument("--map", type=Path, default=None, metavar="PBF",
                      help="build --from-images: the OpenStreetMap extract (.osm.pbf) of the photos' area")
    data.add_argument("--csv", type=Path, default=None,
                      help="build --from-images: photo positions (image,lat,lon or image,utm_east,utm_north,zone; "
                           "optional heading, caption)")
    data.add_argument("--options", default=None, metavar="KEY=VALUE,...",
                      help="build --from-images: max_street_m, location_radius_m, split (auto|folders|random), "
                           "captions (map|empty), images (link|copy), neighbourhoods (auto|admin|places), "
                           "junction_merge_m, min_locations, spacing_m, margin_m, prefix, seed")

    report = add("report", "Markdown tables from result files")
    report.add_argument("--results", type=Path, default=Path("results"))
    report.add_argument("--out", type=Path, default=Path("reports"))
    report.add_argument("--protocol", default=None, help="only this protocol")
    report.add_argument("--format", default="md,tex,png,html",
                        help="comma-separated: md (Markdown tables), tex (LaTeX booktabs tables), png (plots, PNG "
                             "and SVG), html (one self-contained report.html); default all. The Markdown always "
                             "prints")

    pretrain = add("pretrain", "rebuild a ResNet trunk or a whole CLIP that ialbench pretrains on another city "
                               "(init= of a method)")
    pretrain.add_argument("trunk", help="registered name (kotka-r18: a trunk; kotka-clip, kotka-clip-vit: CLIPs)")
    pretrain.add_argument("--file", type=Path, default=None,
                          help="where to write it (default: the shipped file in methods/weights/)")
    pretrain.add_argument("--out", type=Path, default=Path("results"),
                          help="results folder for the pretraining run's own evaluation (default: results/)")
    pretrain.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")

    scale = add("scale", "the cost-vs-size curve: index search time and memory against database size, beside "
                         "IAL's cost against candidates")
    scale.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="database sizes (rows)")
    scale.add_argument("--dims", default=",".join(f"{k}={v}" for k, v in _scale_defaults().dims.items()),
                       help="synthetic descriptor kinds as label=dimensions (none: 'none')")
    scale.add_argument("--candidates", default="1e2,1e3,1e4", help="IAL candidate-address counts")
    scale.add_argument("--ial-dims", default=",".join(f"{k}={v}" for k, v in _scale_defaults().ial_dims.items()),
                       help="IAL embedding sizes as label=dimensions")
    scale.add_argument("--method", default="densevlad",
                       help="retrieval method whose real descriptors (plus distractors) give IVF-PQ's recall "
                            "('none' to skip)")
    scale.add_argument("--protocol", default=None, help="protocol of the real descriptors (default: the embedded default)")
    scale.add_argument("--preset", default="default", choices=PRESETS)
    scale.add_argument("--queries", type=int, default=500, help="queries per timed search")
    scale.add_argument("--max-gb", type=float, default=6.0, help="skip databases larger than this (float32)")
    scale.add_argument("--index-options", default="pq_bytes=128,rerank=50",
                       help="IVF-PQ options (rerank > 0 adds the re-ranked structure), e.g. "
                            "nprobe=32,pq_bytes=64,ivf_lists=1024,rerank=20")
    scale.add_argument("--jitter", type=float, default=1.0, help="distractor noise, in each dimension's spread")
    scale.add_argument("--seed", type=int, default=0)
    scale.add_argument("--out", type=Path, default=Path("reports/scale"))

    heatmap = add("heatmap", "address heat maps: every database image's cosine similarity to an address text, "
                             "on the street map (an IAL method)")
    heatmap.add_argument("--address", action="append", required=True,
                         help="the text to map: a sub-street, a street key or a neighbourhood; repeat for more "
                              "(one PNG + SVG each)")
    heatmap.add_argument("--protocol", default=None, help="protocol name (default: the embedded default)")
    heatmap.add_argument("--method", default="addressclip",
                         help="one IAL method, optionally name:key=value,... (default: addressclip); trained as "
                              "`run` trains it, or loaded from the cache")
    heatmap.add_argument("--preset", default="default", choices=PRESETS, help="data size and training budget")
    heatmap.add_argument("--data-root", type=Path, default=None, help="dataset folder (real datasets) or build folder")
    heatmap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    heatmap.add_argument("--seed", type=int, default=0)
    heatmap.add_argument("--batch-size", type=int, default=32)
    heatmap.add_argument("--out", type=Path, default=Path("reports/heatmaps"),
                         help="folder for the figures (default: reports/heatmaps/)")

    from benchmark.compare import Thresholds

    defaults = Thresholds()
    compare = add("compare", "the regression gate: a candidate's runs against a baseline's")
    compare.add_argument("baseline", type=Path, help="results folder or result.json")
    compare.add_argument("candidate", type=Path, help="results folder or result.json")
    compare.add_argument("--alpha", type=float, default=defaults.alpha, help="McNemar significance (accuracy)")
    compare.add_argument("--min-effect", type=float, default=defaults.min_effect,
                         help="points of accuracy a significant drop must reach to be a regression")
    compare.add_argument("--latency-ratio", type=float, default=defaults.latency_ratio,
                         help="calibrated median latency ratio that fails")
    compare.add_argument("--size-ratio", type=float, default=defaults.size_ratio,
                         help="storage ratio that fails")
    compare.add_argument("--machine-ratio", type=float, default=defaults.machine_ratio,
                         help="calibration ratio beyond which the runs are on different machines: latency not judged")
    compare.add_argument("--strict", action="store_true",
                         help="also fail on any flipped query, an inconclusive test or unstable timing")
    compare.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON here")
    compare.add_argument("--update-baseline", action="store_true",
                         help="replace BASELINE (a folder) with the candidate's runs instead of comparing")
    return parser


def cmd_ls(args: argparse.Namespace) -> int:
    """Print every method and protocol, one line each."""
    from benchmark.registry import METHODS, PROTOCOLS

    width = max(len(n) for n in [*METHODS.names(), *PROTOCOLS.names()])
    for kind, reg in (("method", METHODS), ("protocol", PROTOCOLS)):
        for name, entry in reg.entries().items():
            print(f"{kind:<8}  {name:<{width}}  {entry.summary}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run methods and write one result folder per method."""
    from benchmark.runner import RunSpec, parse_methods, run

    if args.batch_size < 1 or args.latency_queries < 1:
        raise BenchmarkError("--batch-size and --latency-queries must be at least 1")
    seeds = [args.seed] if args.seeds is None else parse_seeds(args.seeds)
    for seed in seeds:
        spec = RunSpec(protocol=args.protocol or _default_protocol(), methods=parse_methods(args.methods),
                       preset=args.preset, data_root=args.data_root, device=args.device, seed=seed,
                       out=args.out, batch_size=args.batch_size, latency_queries=args.latency_queries,
                       weights=args.weights, progress=not args.quiet)
        for folder in run(spec):
            print(folder)
    return 0


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (distinct integers, in the order given)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchmarkError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise BenchmarkError(f"--seeds {text!r}: give distinct comma-separated integers, e.g. --seeds 0,1,2")
    return seeds


def cmd_data(args: argparse.Namespace) -> int:
    """Build (generated protocols) or check a dataset; check prints counts and every problem."""
    from benchmark.protocol import resolve_protocol

    own = (args.from_images, args.map, args.csv, args.options)
    if args.action == "build" and args.from_images is not None:
        return _build_from_images(args)
    if any(v is not None for v in own):
        raise BenchmarkError("--from-images, --map, --csv and --options belong to `data build --from-images DIR "
                             "--map PBF --out ROOT`")
    protocol = resolve_protocol(args.protocol or _default_protocol())
    if args.action == "card":
        if not hasattr(protocol, "write_card"):
            raise BenchmarkError(f"protocol {protocol.name!r} has no dataset card (only generated cities do)")
        dataset = protocol.open(args.data_root, args.preset, progress=not args.quiet)
        print(protocol.write_card(dataset.root, args.out or dataset.root / "card"))
        return 0
    if args.action == "build":
        root = protocol.resolve_root(args.data_root, args.preset)
        if not protocol.generated:
            raise BenchmarkError(f"protocol {protocol.name!r} reads a released dataset; it cannot be built "
                                 "(use `data check`)")
        if root.exists():
            print(f"{protocol.name}: already built at {root}")
        else:
            protocol.build(root, args.preset, progress=not args.quiet)
            print(f"{protocol.name}: built at {root}")
    root, dataset, problems = protocol.check(args.data_root, args.preset, progress=not args.quiet)
    print(f"{protocol.name} at {root}")
    if dataset is not None:
        for key, value in dataset.counts().items():
            print(f"  {key:<24} {value}")
        print(f"  {'data_hash':<24} {dataset.data_hash}")
    missing = sum("image is missing" in p.message for p in problems)
    print(f"  {'missing_files':<24} {missing}")
    for p in problems:
        print(p)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    print(f"{errors} errors, {warnings} warnings")
    if errors:
        raise CheckFailed(f"{protocol.name}: dataset at {root} has {errors} errors (listed above)")
    return 0


def _build_from_images(args: argparse.Namespace) -> int:
    """`data build --from-images DIR --map PBF --out ROOT`: build, print what was kept and left out, check it."""
    from protocols.own_city import OWN_CITY, build_from_images, parse_options

    if args.map is None or args.out is None:
        raise BenchmarkError("data build --from-images DIR needs --map AREA.osm.pbf (the photos' OpenStreetMap "
                             "extract) and --out ROOT (a new folder for the dataset)")
    if args.protocol is not None or args.data_root is not None:
        raise BenchmarkError("data build --from-images writes to --out; drop --protocol / --data-root (run it "
                             "afterwards with --protocol ial --data-root ROOT)")
    summary = build_from_images(args.from_images, args.map, args.out, args.csv, parse_options(args.options),
                                progress=not args.quiet)
    for line in summary.lines():
        print(line)
    dataset, _ = OWN_CITY.read(summary.root)
    assert dataset is not None  # the build reads it back before moving it into place
    for key, value in dataset.counts().items():
        print(f"  {key:<24} {value}")
    print(f"  {'data_hash':<24} {dataset.data_hash}")
    print(f"run it: python -m benchmark run --protocol ial --data-root {summary.root}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write and print the tables."""
    from benchmark.report import write_report

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    text, written = write_report(args.results, args.out, args.protocol, formats)
    print(text)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Train the start's method on its protocol and save the trunk or CLIP; print its file and sha256."""
    import difflib

    from benchmark.hashing import file_sha256
    from methods.training.trunks import TRUNKS, build_trunk

    if args.trunk not in TRUNKS:
        close = difflib.get_close_matches(args.trunk, TRUNKS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise BenchmarkError(f"unknown pretrained network {args.trunk!r}{hint} (known: {', '.join(TRUNKS)})")
    spec = TRUNKS[args.trunk]
    file, folder = build_trunk(spec, args.file or spec.path, args.out, device=args.device, progress=not args.quiet)
    print(f"{file}  sha256 {file_sha256(file)}  ({spec.describe()}; its run: {folder})")
    return 0


def _scale_defaults():  # noqa: ANN202 - imported late: the CLI starts without numpy-heavy modules
    from benchmark.scale import ScaleSpec

    return ScaleSpec()


def _counts(text: str, flag: str) -> list[int]:
    """'1e3,1e4' -> [1000, 10000]: distinct positive integers, ascending."""
    try:
        values = sorted({int(float(t)) for t in text.split(",") if t.strip()})
    except ValueError:
        values = []
    if not values or values[0] < 1:
        raise BenchmarkError(f"{flag} {text!r}: give positive counts such as 1e3,1e4")
    return values


def _labelled(text: str, flag: str) -> dict[str, int]:
    """'gem=512,mixvpr=4096' -> {'gem': 512, 'mixvpr': 4096}; 'none' -> {}."""
    if text.strip().lower() == "none":
        return {}
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        label, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit() or int(value) < 1:
            raise BenchmarkError(f"{flag} {text!r}: give label=dimensions pairs such as gem=512,mixvpr=4096")
        out[label.strip()] = int(value)
    return out


def cmd_scale(args: argparse.Namespace) -> int:
    """Measure the curve, write scale.json, scale.md and the figure, and print the Markdown."""
    from benchmark.options import parse_spec
    from benchmark.scale import ScaleSpec, check, markdown, measure, write

    if args.queries < 1 or args.max_gb <= 0 or args.jitter < 0:
        raise BenchmarkError("--queries and --max-gb must be positive and --jitter non-negative")
    spec = ScaleSpec(sizes=_counts(args.sizes, "--sizes"), dims=_labelled(args.dims, "--dims"),
                     candidates=_counts(args.candidates, "--candidates"),
                     ial_dims=_labelled(args.ial_dims, "--ial-dims"), queries=args.queries, max_gb=args.max_gb,
                     index_options=parse_spec(f"ivfpq:{args.index_options}")[1],
                     method=None if args.method.lower() == "none" else args.method,
                     protocol=args.protocol or _default_protocol(), preset=args.preset, jitter=args.jitter,
                     seed=args.seed, progress=not args.quiet)
    check(spec)  # every name and option, before anything is measured
    points = measure(spec)
    print(markdown(points, spec), end="")
    for path in write(points, spec, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_heatmap(args: argparse.Namespace) -> int:
    """Draw one address heat map per --address and print the files written."""
    from benchmark.heatmap import HeatMapSpec, check_texts, heat_maps
    from benchmark.runner import parse_methods

    texts = check_texts(args.address)
    methods = parse_methods(args.method)
    if len(methods) != 1:
        raise BenchmarkError(f"--method {args.method!r}: name one IAL method, e.g. --method addressclip")
    spec = HeatMapSpec(addresses=texts, protocol=args.protocol or _default_protocol(), method=methods[0],
                       preset=args.preset, data_root=args.data_root, device=args.device, seed=args.seed,
                       out=args.out, batch_size=args.batch_size, progress=not args.quiet)
    for path in heat_maps(spec):
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare (or, with --update-baseline, replace the baseline) and print the Markdown verdict table."""
    from benchmark.compare import Thresholds, compare, load_side, markdown, update_baseline, write_json

    candidate = load_side(args.candidate, "candidate")
    if args.update_baseline:
        if args.baseline.is_file() or args.baseline.name == "result.json":
            raise BenchmarkError(f"--update-baseline needs a baseline folder, got the file {args.baseline}")
        command = " ".join(["python -m benchmark compare", str(args.baseline), str(args.candidate), "--update-baseline"])
        print(f"baseline {update_baseline(candidate, args.baseline, command)} now holds "
              f"{len(candidate)} candidate run(s)")
        return 0
    for name in ("alpha", "min_effect", "latency_ratio", "size_ratio", "machine_ratio"):
        if getattr(args, name) <= 0:
            raise BenchmarkError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    thresholds = Thresholds(alpha=args.alpha, min_effect=args.min_effect, latency_ratio=args.latency_ratio,
                            size_ratio=args.size_ratio, machine_ratio=args.machine_ratio)
    result = compare(load_side(args.baseline, "baseline"), candidate, thresholds, args.strict)
    print(markdown(result), end="")
    if args.json:
        write_json(result, args.json)
    return result.exit_code()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, dispatch, and turn user-fixable errors into one line and an exit code."""
    args = build_parser().parse_args(argv)
    log = logging.getLogger("benchmark")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    handlers = {"ls": cmd_ls, "run": cmd_run, "data": cmd_data, "report": cmd_report, "compare": cmd_compare,
                "pretrain": cmd_pretrain, "scale": cmd_scale, "heatmap": cmd_heatmap}
    try:
        return handlers[args.command](args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
