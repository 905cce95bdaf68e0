"""Sweeps that need TensorFlow: trained trials on generated 16x16 images, resume after SIGKILL,
and the latency objective measured once per resolved variant. Seconds of work per trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ghostspec.sweep import run
from tests.imagegen import make_shapes

ROOT = Path(__file__).resolve().parents[1]
TINY = """ghostspec: 1
name: tiny
input: {shape: [16, 16, 3]}
stages: [[[16, 16, 0, 1, 3]], [[32, 24, 0, 2, 3]]]
head: {filters: 32, hidden: 32, classes: 4}
"""
RECIPE = """ghostspec-recipe: 1
epochs: 1
batch_size: 16
optimizer: {kind: adamw, lr: 0.002, reference_batch: 16}
"""


def _sweep(tmp: Path, trials: int, extra: str = "") -> Path:
    (tmp / "tiny.yaml").write_text(TINY)
    (tmp / "r.yaml").write_text(RECIPE)
    path = tmp / "t.yaml"
    path.write_text(
        "ghostspec-sweep: 1\nspec: tiny.yaml\nrecipe: r.yaml\nspace:\n"
        "  width: {choice: [0.5, 1.0]}\n  stages.1.*.2: {choice: [0, 0.25]}\n"
        "  recipe.optimizer.lr: {log_range: [0.001, 0.01]}\n"
        "objectives: {val_top1: maximize, macs: minimize}\nsearch: random\n"
        f"budget: {{trials: {trials}}}\n{extra}"
    )
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=16, size=16)


def test_trained_sweep_resumes_after_sigkill_and_writes_every_output(
    tmp_path: Path, images: Path
) -> None:
    """A trained sweep killed (SIGKILL) in its second trial, then resumed: the first trial is
    not run again, the interrupted one is, and every output is written."""
    sweep = _sweep(tmp_path, 2)
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "ghostspec", "sweep", str(sweep), "--data", str(images)]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([*command, "-o", str(out)], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 240
    try:  # trial 1 starting means trial 0 finished: kill the sweep in the middle of trial 1
        while not (out / "trials" / "1").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first trial never finished"
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "trials" / "0").iterdir()}
    lines: list[str] = []
    result = run(resume=out, echo=lines.append)
    assert any("re-running 1 trial" in line for line in lines)
    statuses = {r.trial: r.status for r in result.rows}
    assert statuses[0] == "ok" and statuses[1] == "interrupted"
    assert sum(s == "ok" for s in statuses.values()) == 2  # the budget, counted once
    after = {p.name: p.stat().st_mtime_ns for p in (out / "trials" / "0").iterdir()}
    assert after == finished  # trial 0 was not run again
    for name in ("study.db", "results.csv", "pareto.json", "pareto.png", "best-1.yaml"):
        assert (out / name).is_file()
    assert json.loads((out / "pareto.json").read_text())["front"]
    for row in result.rows:
        if row.status == "ok":
            trial = out / "trials" / str(row.trial)
            assert (trial / "best.keras").is_file() and (trial / "sweep-trial.log").is_file()
            assert row.hp.startswith("optimizer.lr=") and row.epochs == 1
            assert row.val_top1 is not None


def test_latency_is_measured_once_per_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghostspec.deploy import profile

    calls: list[tuple[str, ...]] = []
    real = profile.measure

    def counted(source: Any, overrides: Any = (), **kwargs: Any) -> Any:
        calls.append(tuple(overrides))
        return real(source, overrides, **kwargs)

    monkeypatch.setattr(profile, "measure", counted)
    (tmp_path / "tiny.yaml").write_text(TINY)
    sweep = tmp_path / "l.yaml"
    sweep.write_text(
        "ghostspec-sweep: 1\nspec: tiny.yaml\nspace:\n  width: {choice: [0.5, 1.0]}\n"
        "objectives: {latency_ms: minimize, macs: minimize}\nlatency: {repeats: 3}\n"
        "search: random\nbudget: {trials: 5}\n"
    )
    result = run(sweep, output=tmp_path / "o", echo=lambda _: None)
    assert len(result.rows) == 5 and all(r.latency_ms for r in result.rows)
    distinct = {r.overrides for r in result.rows}
    assert len(calls) == len(distinct) < 5  # a repeated variant is not measured again
    by_variant = {r.overrides: r.latency_ms for r in result.rows}
    assert all(r.latency_ms == by_variant[r.overrides] for r in result.rows)
