"""The joint protocol (several cities as one dataset, scored per city too) and query groups in results and the
report. Two tiny towns stand in for two cities: they lie on the same grid, so every address is shared and
qualified by its town."""

from __future__ import annotations

import json

import pytest

from benchmark.address import parse_address
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.protocol import resolve_protocol
from benchmark.results import RunResult, load_results

pytestmark = pytest.mark.usefixtures("one_thread")
MEMBERS = "tiny+tiny:seed=1"


@pytest.fixture(scope="module")
def joint():
    """The joint dataset of two tiny towns and its members (smoke preset)."""
    protocol = resolve_protocol(f"joint:members={MEMBERS}")
    members = [resolve_protocol(m).open(None, "smoke", progress=False) for m in MEMBERS.split("+")]
    return protocol, protocol.open(None, "smoke", progress=False), members


def test_the_joint_dataset_is_the_union_with_shared_addresses_qualified(joint):
    protocol, dataset, members = joint
    for split in ("train", "database", "queries"):
        assert len(dataset.splits[split]) == sum(len(m.splits[split]) for m in members)
    assert len(dataset.address_book) == sum(len(m.address_book) for m in members)  # the towns share every name
    for address in dataset.address_book.addresses:
        a = parse_address(address)
        town = a.neighbourhood[a.neighbourhood.index("["):]
        assert town in ("[tiny]", "[tiny_seed-1]") and all(h.endswith(town) for _, h in a.cross_streets)
    assert all(p.is_file() for p in dataset.paths("queries")[:5] + dataset.paths("queries")[-5:])
    groups = protocol.query_groups(dataset)
    assert list(groups) == ["tiny", "tiny:seed=1"]
    assert [int(m.sum()) for m in groups.values()] == [len(m.splits["queries"]) for m in members]


@pytest.mark.parametrize("members", ["tiny", "tiny+tiny", "joint+tiny", "+"])
def test_bad_members_are_one_clear_error(members):
    with pytest.raises(BenchmarkError, match="two or more different protocols"):
        resolve_protocol(f"joint:members={members}").open(None, "smoke", progress=False)


def test_a_joint_run_scores_each_group_and_the_report_sets_it_beside_each_town_alone(tmp_path, capsys):
    out = tmp_path / "results"
    for protocol in (f"joint:members={MEMBERS}", *MEMBERS.split("+")):
        assert main(["run", "-q", "--protocol", protocol, "--preset", "smoke", "--methods", "tiny-images",
                     "--latency-queries", "2", "--out", str(out)]) == 0
    runs = {r.result.protocol.name + str(r.result.protocol.overrides): r for r in load_results(out)}
    (run,) = [r for r in runs.values() if r.result.protocol.name == "joint"]
    groups = run.result.query_groups
    assert sum(g.n_queries for g in groups.values()) == run.result.protocol.n_queries
    rows = list(run.predictions())
    for name, group in groups.items():
        mine = [r for r in rows if r["image"].startswith("tiny/" if name == "tiny" else "tiny_seed-1/")]
        hits = sum(r["topk"][0] == r["address"] for r in mine)
        assert len(mine) == group.n_queries and group.metrics["ssa@1"] == pytest.approx(100 * hits / len(mine))
    data = json.loads(run.path.read_text())
    assert RunResult.from_json(data, "x").query_groups == groups  # typed round trip
    capsys.readouterr()
    assert main(["report", "-q", "--results", str(out), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "joint_members-tiny+tiny_seed-1-smoke.md").read_text()
    assert "trained jointly against alone" in text
    table = text[text.index("trained jointly against alone"):]
    line = next(line for line in table.splitlines() if line.startswith("| tiny-images"))
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    jointly, alone, delta = (float(c.split()[0]) for c in cells[:3])
    assert delta == pytest.approx(jointly - alone, abs=0.011) and "[" in cells[2]  # with its paired interval
