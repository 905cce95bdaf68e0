"""ghostspec sweep: the language, cost-only trials against inspect, the front, trained trials."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ghostspec
from ghostspec.cli import run as cli
from ghostspec.diagnostics import SpecError
from ghostspec.language.sweep import load_sweep
from ghostspec.sweep import run
from ghostspec.sweep.results import Row, pareto_front
from ghostspec.sweep.space import Space
from tests.isolation import assert_imports_no_framework

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "specs" / "large.yaml"

COST = f"""ghostspec-sweep: 1
name: costs
spec: {LARGE}
space:
  width: {{range: [0.5, 1.3], step: 0.2}}
  stages.3.*.2: {{choice: [0, 0.25]}}
  stages.2.0.4: {{choice: [3, 5]}}
  stages.6: {{depth: [2, 5, 7]}}
constraints: {{macs: 150000000}}
objectives: {{macs: minimize, params: minimize}}
search: grid
budget: {{trials: 1000}}
"""


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_language_defaults_and_located_errors(tmp_path: Path) -> None:
    good = _write(tmp_path, "a.yaml", COST)
    loaded = load_sweep(good)
    assert loaded.sweep.pruner == "median" and loaded.sweep.best == 3
    bad = _write(
        tmp_path,
        "b.yaml",
        COST.replace("[0.5, 1.3]", "[1.3, 0.5]").replace("stages.2.0.4", "stages.2.0.9"),
    )
    with pytest.raises(SpecError) as err:
        load_sweep(bad)
    text = str(err.value)
    assert "b.yaml:5:" in text and "backwards" in text
    fixed = _write(tmp_path, "c.yaml", COST.replace("stages.2.0.4", "stages.2.0.9"))
    with pytest.raises(SpecError, match=r"c.yaml:7:3: .*matches nothing"):
        load_sweep(fixed)


def test_objective_needing_data_is_located(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "s.yaml",
        COST.replace("{macs: minimize, params: minimize}", "{val_top1: maximize}"),
    )
    with pytest.raises(SpecError, match=r"s.yaml:10:14: .*val_top1 needs trained trials"):
        run(path, output=tmp_path / "out")
    assert cli(["sweep", str(path), "-o", str(tmp_path / "out2")]) == 2


def test_wildcards_and_depth_give_the_specs_they_say(tmp_path: Path) -> None:
    loaded = load_sweep(_write(tmp_path, "a.yaml", COST))
    variant = Space(loaded).variant(
        {"width": 0.7, "stages.3.*.2": 0.25, "stages.2.0.4": 5, "stages.6": 7}
    )
    assert "stages.3.0.2=0.25" in variant.spec and "width=0.7" in variant.spec
    by_hand = LARGE.read_text().replace("[72, 40, 0.25, 2, 5]", "[72, 40, 0.25, 2, 5]")
    by_hand = by_hand.replace("[[72, 24, 0, 1, 3]]", "[[72, 24, 0, 1, 5]]").replace(
        "width: 1.0 ", "width: 0.7 "
    )
    by_hand = by_hand.replace(
        "    - [672, 112, 0.25, 1, 3]\n",
        "    - [672, 112, 0.25, 1, 3]\n" * 3,
    )
    expected = ghostspec.plan(_write(tmp_path, "hand.yaml", by_hand))
    got = ghostspec.plan(LARGE, list(variant.spec))
    assert got == expected
    assert len(got.blocks) == 18


def test_cost_only_matches_inspect_and_constraints(tmp_path: Path) -> None:
    result = run(_write(tmp_path, "a.yaml", COST), output=tmp_path / "out", echo=lambda _: None)
    assert len(result.rows) == 5 * 2 * 2 * 3
    for row in result.rows[::7]:
        plan = ghostspec.plan(LARGE, row.overrides.split(";"))
        assert (row.params, row.macs) == (plan.params, plan.macs)
        assert (row.status == "over") == (plan.macs is not None and plan.macs > 150_000_000)
    assert all(r.macs is not None and r.macs <= 150_000_000 for r in result.front)
    with (tmp_path / "out" / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert table[0].keys() >= {"trial", "status", "overrides", "params", "macs", "seconds"}
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"results.csv", "pareto.json", "pareto.png", "best-1.yaml"} <= names
    best = (tmp_path / "out" / "best-1.yaml").read_text()
    assert best.startswith("# best-1 of sweep costs: trial")
    assert ghostspec.plan(tmp_path / "out" / "best-1.yaml").macs == result.front[0].macs


def test_invalid_variants_are_recorded(tmp_path: Path) -> None:
    text = COST.replace("stages.2.0.4: {choice: [3, 5]}", "stages.2.0.3: {choice: [1, 3]}")
    result = run(_write(tmp_path, "a.yaml", text), output=tmp_path / "out", echo=lambda _: None)
    invalid = [r for r in result.rows if r.status == "invalid"]
    assert invalid and all("stride" in r.message or "3" in r.message for r in invalid)
    assert any(r.status == "ok" for r in result.rows)


def test_cost_only_imports_no_framework(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", COST)
    assert_imports_no_framework(
        "import sys\nfrom ghostspec.sweep import run\n"
        f"run({str(path)!r}, output={str(tmp_path / 'o')!r}, echo=lambda _: None)\n"
    )


objective_rows = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from(["ok", "ok", "over"])),
    max_size=25,
)


@given(objective_rows)
@settings(max_examples=200, deadline=None)
def test_front_is_the_non_dominated_set(points: list[tuple[int, int, str]]) -> None:
    rows = [
        Row(trial=i, status=s, overrides="", macs=a, val_top1=float(b))
        for i, (a, b, s) in enumerate(points)
    ]
    objectives = {"macs": "minimize", "val_top1": "maximize"}
    front = {r.trial for r in pareto_front(rows, objectives)}
    ok = [r for r in rows if r.status == "ok"]

    def dominates(p: Row, q: Row) -> bool:
        assert p.macs is not None and q.macs is not None
        pv, qv = p.val_top1 or 0.0, q.val_top1 or 0.0
        return p.macs <= q.macs and pv >= qv and (p.macs < q.macs or pv > qv)

    expected = {q.trial for q in ok if not any(dominates(p, q) for p in ok)}
    assert front == expected


def test_every_cost_equals_the_plans_own(tmp_path: Path) -> None:
    """The cost model's memos (shared bottlenecks, validated rows, copy-on-write data) change
    no figure: every row of a random sweep, params, MACs and memory, against a fresh plan."""
    from ghostspec.plan.memory import FLOAT, plan_footprint

    text = COST.replace("search: grid", "search: random").replace("trials: 1000", "trials: 60")
    result = run(_write(tmp_path, "r.yaml", text), output=tmp_path / "o", echo=lambda _: None)
    assert len({r.overrides for r in result.rows}) > 30
    for row in result.rows:
        plan = ghostspec.plan(LARGE, row.overrides.split(";"))
        footprint = plan_footprint(plan)
        memory = FLOAT * (footprint.peak + footprint.weights)
        assert (row.params, row.macs, row.memory) == (plan.params, plan.macs, memory), row
