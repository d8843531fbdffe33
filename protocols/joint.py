"""Joint cities (the AddressCLIP paper's claim that joint training on two cities costs < 0.8 points): the datasets
of several protocols as one, in the released IAL format, so that one model trains on every city and ranks every
city's sub-streets. Each query's city is its group: the runner scores each group alone as well.

`joint` (default `members=helsinki+kotka`) builds each member (as `run` would), then writes annotations whose
image keys are `<member>/<split>/<file>` under `images/<member>`, a link to the member's own images (nothing
is copied), and the members' street maps merged. An address that two members share (the same street and
neighbourhood names in two cities are two places) is written with its member after every neighbourhood,
`Westend [tiny]`, in both; members without shared addresses keep theirs as they are.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.address import Address, parse_address
from benchmark.dataset import SPLITS, Dataset
from benchmark.errors import BenchmarkError
from benchmark.options import spec_slug
from benchmark.protocol import resolve_protocol
from protocols.generated import GeneratedProtocol, write_annotations

STREET_MAP = "streets.geojson"


@dataclass(frozen=True)
class JointOptions:
    """The member protocols ('+'-joined specs, e.g. `helsinki+kotka`) and the preset they are built with."""

    members: str = "helsinki+kotka"
    preset: str = "default"


def member_specs(members: str) -> list[str]:
    """The member protocol specs of a `members=` value; fewer than two, a repeat or a joint is one clear error."""
    specs = [m.strip() for m in members.split("+") if m.strip()]
    if len(specs) < 2 or len(set(specs)) != len(specs) or any(s.split(":")[0] == "joint" for s in specs):
        raise BenchmarkError(f"joint:members={members!r}: give two or more different protocols joined by '+', "
                             "e.g. members=helsinki+kotka")
    return specs


def qualified(address: str, member: str) -> str:
    """The address with the member after each neighbourhood (what tells two cities' equal names apart)."""
    a = parse_address(address)
    return Address(a.main_street, f"{a.neighbourhood} [{member}]",
                   tuple((street, f"{hood} [{member}]") for street, hood in a.cross_streets)).text


def _member_tables(dataset: Dataset, member: str, rename: set[str]) -> dict[str, dict[str, list[str]]]:
    """A member's annotations re-keyed under its folder, shared addresses qualified."""
    tables: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        table = dataset.splits[split]
        captions = table.caption if "caption" in table else [""] * len(table)
        verbose = table.verbose_address if "verbose_address" in table else table.address
        rows = {}
        for image, caption, long, address in zip(table.image, captions, verbose, table.address):
            if address in rename:
                address, long = qualified(address, member), qualified(address, member)
            rows[f"{member}/{image}"] = ["" if caption is None or caption != caption else caption, long, address]
        tables[split] = rows
    return tables


class JointProtocol(GeneratedProtocol):
    """Several protocols' datasets as one (train, database and queries the unions; the candidate set every
    member's sub-streets); a query's group is its member."""

    name = "joint"
    prefix = "joint"
    version = "1"
    summary = "Helsinki + Kotka as one dataset (joint training; scored per city too)"

    def preset_options(self, preset: str) -> JointOptions:
        """Every preset joins the members at that preset."""
        return JointOptions(preset=preset)

    def generate(self, folder: Path, options: JointOptions, progress: bool) -> None:
        """Build each member, link its images, write the joined annotations and street map."""
        specs = member_specs(options.members)
        datasets = {}
        for spec in specs:
            protocol = resolve_protocol(spec)
            datasets[spec_slug(spec)] = protocol.open(None, options.preset, progress)
        seen = Counter(a for d in datasets.values() for a in set(d.address_book.addresses)
                       | set(d.splits["queries"].address))
        shared = {a for a, n in seen.items() if n > 1}
        tables: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
        features = []
        (folder / "images").mkdir(parents=True)
        for member, dataset in datasets.items():
            (folder / "images" / member).symlink_to(dataset.images_root.resolve(), target_is_directory=True)
            for split, rows in _member_tables(dataset, member, shared).items():
                tables[split].update(rows)
            if dataset.street_map is not None:
                for feature in json.loads(dataset.street_map.read_text(encoding="utf-8"))["features"]:
                    props = dict(feature.get("properties", {}))
                    if props.get("address") in shared:
                        props["address"] = qualified(props["address"], member)
                    features.append({**feature, "id": len(features), "properties": {**props, "member": member}})
        write_annotations(folder, self.prefix, tables)
        if features:
            (folder / STREET_MAP).write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n",
                                             encoding="utf-8")

    def query_groups(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Each member's queries (by the folder their image lies in), named by the member's protocol spec."""
        spec = dataset.root / "generator.json"
        members = json.loads(spec.read_text())["options"]["members"] if spec.is_file() else JointOptions.members
        folder = dataset.splits["queries"].image.str.split("/", n=1).str[0].to_numpy()
        return {member: folder == spec_slug(member) for member in member_specs(members)}


JOINT = JointProtocol()
