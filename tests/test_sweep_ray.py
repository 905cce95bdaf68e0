"""The Ray engine on a local cluster (a head and one worker node on 127.0.0.1, started and torn
down here): four trials, one of whose worker process is killed and retried, and Ray's absence."""

from __future__ import annotations

import builtins
import csv
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghostspec.cli import run as cli
from ghostspec.sweep import run

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "specs" / "large.yaml"
SWEEP = f"""ghostspec-sweep: 1
name: ray
spec: {LARGE}
space:
  width: {{choice: [0.5, 0.75, 1.0]}}
  stages.3.*.2: {{choice: [0, 0.25]}}
  stages.2.0.4: {{choice: [3, 5]}}
objectives: {{macs: minimize, params: minimize}}
search: tpe
budget: {{trials: 4}}
"""


class DieOnce:
    """Kills the worker process running trial `number`, the first time only (a marker file)."""

    def __init__(self, marker: Path, number: int) -> None:
        self.marker, self.number = marker, number

    def __call__(self, number: int) -> None:
        if number == self.number and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and one worker node, 127.0.0.1 only, one CPU each, no dashboard."""
    # the worker processes import this module (the hook) and ghostspec from this tree
    # (and the environment is put back afterwards: later tests start pip and fresh interpreters)
    saved = dict(os.environ)
    path = os.environ.get("PYTHONPATH", "")
    here = (str(ROOT), str(ROOT / "tests"), path)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in here if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray turns 127.0.0.1 into the machine's outward address unless told this is one machine
    # (read when Ray is imported, so set first)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        yield from _cluster()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cluster() -> Iterator[str]:
    pytest.importorskip("ray.tune.search.optuna")
    from ray.cluster_utils import Cluster

    quiet: dict[str, Any] = {"num_cpus": 1, "include_dashboard": False}
    nodes = Cluster(
        initialize_head=True,
        head_node_args={**quiet, "node_ip_address": "127.0.0.1"},
        shutdown_at_exit=True,
    )
    try:
        nodes.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        yield nodes.address
    finally:
        nodes.shutdown()


def test_ray_runs_trials_and_retries_a_killed_worker(cluster: str, tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    marker = tmp_path / "killed"
    out = tmp_path / "out"
    lines: list[str] = []
    result = run(
        sweep,
        output=out,
        engine="ray",
        address=cluster,
        hook=DieOnce(marker, 1),
        echo=lines.append,
    )
    assert marker.exists(), "the hook never killed a worker"
    assert int(marker.read_text()) != os.getpid()  # a worker process, not this one
    assert [r.trial for r in result.rows] == [0, 1, 2, 3]
    assert all(r.status == "ok" and r.macs for r in result.rows)  # trial 1 retried, then ok
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "pareto.json", "pareto.png", "study.db", "tune", "sweep.json"} <= names
    again = run(resume=out, echo=lines.append, address=cluster)
    assert [r.trial for r in again.rows] == [0, 1, 2, 3]


def test_missing_ray_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    code = cli(["sweep", str(sweep), "--engine", "ray", "-o", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "pip install 'ghostspec[sweep]'" in err and "Traceback" not in err
    assert err.splitlines()[0] == (
        "--engine ray: error: Ray Tune is not installed; pip install 'ghostspec[sweep]' adds it"
    )
    assert not (tmp_path / "o").exists()
