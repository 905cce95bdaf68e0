"""Sweep speed: cost-only variants per second, and the sweep's overhead per trained trial.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sweep.py                 # cost-only
    PYTHONPATH=. .venv/bin/python benchmarks/bench_sweep.py --trained       # and trained trials

Cost-only (goal: at least 1,000 variants/s without TensorFlow in the process): a random sweep
over width, SE, kernels, the head and two stage depths of specs/large.yaml (mostly distinct
variants, so the per-variant cache does not flatter the figure). Rounds interleave the sweep's
costing with a baseline, `ghostspec.plan(spec, overrides)` per variant (what a hand-written loop
over `inspect` does: read, validate, lower), so that a change in machine load hits both alike;
the ratio is the sweep's rate over the baseline's. CPU seconds per variant are printed too:
on a shared machine they say what wall time cannot. The end-to-end line runs `sweep.run` (worker
processes where they help, results.csv, pareto.json, pareto.png, best-N.yaml).

Trained (goal: the sweep's machinery within 5% of a plain `ghostspec train`): one variant of a
tiny spec trained on generated images, as a sweep trial (`sweep.run` of one trial) and as
`ghostspec train` with the same `--set`, in fresh subprocesses, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "specs" / "large.yaml"
GOAL_RATE = 1000.0
GOAL_OVERHEAD = 0.05
SWEEP = f"""ghostspec-sweep: 1
name: bench
spec: {LARGE}
space:
  width: {{range: [0.5, 1.3], step: 0.05}}
  stages.3.*.2: {{choice: [0, 0.25]}}
  stages.4.*.2: {{choice: [0, 0.25]}}
  stages.6.*.2: {{choice: [0, 0.25]}}
  stages.2.0.4: {{choice: [3, 5]}}
  stages.3.0.4: {{choice: [3, 5]}}
  stages.5.0.4: {{choice: [3, 5]}}
  stages.8.*.4: {{choice: [3, 5]}}
  head.filters: {{choice: [640, 800, 960]}}
  stages.6: {{depth: [3, 4, 5, 6]}}
  stages.8: {{depth: [2, 3, 4]}}
constraints: {{macs: 150000000}}
objectives: {{macs: minimize, params: minimize}}
search: random
"""


def timed(work: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, items) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = work()
    return time.perf_counter() - wall, time.process_time() - cpu, count


def cost_only(args: argparse.Namespace, tmp: Path) -> None:
    import ghostspec
    from ghostspec.language.sweep import load_sweep
    from ghostspec.sweep import run
    from ghostspec.sweep.engine import assignments, cost_many
    from ghostspec.sweep.trial import Context

    path = tmp / "bench.yaml"
    path.write_text(SWEEP)
    loaded = load_sweep(path)

    def sweep_round(seed: int) -> Callable[[], int]:
        def work() -> int:  # a fresh context: no memo survives from an earlier round
            ctx = Context.of(loaded, None, tmp)
            todo = assignments(ctx.space, "random", args.variants, seed)
            return len(cost_many(ctx, list(enumerate(todo))))

        return work

    def baseline_round(seed: int) -> Callable[[], int]:
        def work() -> int:
            ctx = Context.of(loaded, None, tmp)
            todo = assignments(ctx.space, "random", args.baseline, seed)
            for a in todo:
                ghostspec.plan(LARGE, list(ctx.space.variant(a).spec))
            return len(todo)

        return work

    sweep_wall, sweep_cpu, base_wall, base_cpu = [], [], [], []
    for r in range(args.rounds):
        wall, cpu, n = timed(sweep_round(r))
        sweep_wall.append(n / wall)
        sweep_cpu.append(cpu / n)
        wall, cpu, n = timed(baseline_round(r))
        base_wall.append(n / wall)
        base_cpu.append(cpu / n)
    rate, base = statistics.median(sweep_wall), statistics.median(base_wall)
    cpu_ms, base_ms = 1e3 * statistics.median(sweep_cpu), 1e3 * statistics.median(base_cpu)
    print(
        f"costing, one process: {rate:,.0f} variants/s ({cpu_ms:.3f} ms CPU each); "
        f"baseline ghostspec.plan per variant: {base:,.0f}/s ({base_ms:.3f} ms CPU); "
        f"ratio {rate / base:.1f}x (median of {args.rounds} interleaved rounds)"
    )
    start = time.perf_counter()
    result = run(path, output=tmp / "out", trials=args.end_to_end, echo=lambda _: None)
    seconds = time.perf_counter() - start
    distinct = len({r.overrides for r in result.rows})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    print(
        f"end to end: {args.end_to_end} variants ({distinct} distinct) in {seconds:.2f} s: "
        f"{args.end_to_end / seconds:,.0f}/s with outputs (pareto.png's matplotlib included); "
        f"TensorFlow or Keras imported: {bool(heavy)}"
    )
    load = os.getloadavg()[0]
    print(
        f"goal {GOAL_RATE:,.0f}/s: {'met' if rate >= GOAL_RATE else 'missed'} in one process "
        f"(load average {load:.1f} on {os.cpu_count()} cores)"
    )


TINY = """ghostspec: 1
name: tiny
input: {shape: [16, 16, 3]}
stages: [[[16, 16, 0, 1, 3]], [[32, 24, 0, 2, 3]]]
head: {filters: 32, hidden: 32, classes: 4}
"""
RECIPE = """ghostspec-recipe: 1
epochs: 3
batch_size: 16
optimizer: {kind: adamw, lr: 0.002, reference_batch: 16}
"""


def trained(args: argparse.Namespace, tmp: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.imagegen import make_shapes

    data = make_shapes(tmp / "shapes", classes=4, per_class=args.images, size=16)
    (tmp / "tiny.yaml").write_text(TINY)
    (tmp / "r.yaml").write_text(RECIPE)
    (tmp / "t.yaml").write_text(
        "ghostspec-sweep: 1\nspec: tiny.yaml\nrecipe: r.yaml\nspace:\n"
        "  width: {choice: [0.75]}\nobjectives: {val_top1: maximize}\nsearch: random\n"
        "pruner: none\nbudget: {trials: 1}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    py = [sys.executable, "-m", "ghostspec"]
    commands = {
        "sweep trial": [*py, "sweep", str(tmp / "t.yaml"), "--data", str(data), "-o"],
        "ghostspec train": [
            *py,
            "train",
            str(tmp / "tiny.yaml"),
            "--data",
            str(data),
            "--recipe",
            str(tmp / "r.yaml"),
            "--set",
            "width=0.75",
            "-o",
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(args.rounds + 1):  # the first round warms caches and is not counted
        for name, command in commands.items():
            out = tmp / f"{name.replace(' ', '-')}-{r}"
            start = time.perf_counter()
            done = subprocess.run(
                [*command, str(out)], env=env, cwd=tmp, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stdout}{done.stderr}")
            if r:
                times[name].append(time.perf_counter() - start)
    sweep, plain = (
        statistics.median(times["sweep trial"]),
        statistics.median(times["ghostspec train"]),
    )
    overhead = sweep / plain - 1
    print(
        f"trained trial: sweep {sweep:.2f} s, plain train {plain:.2f} s (medians of "
        f"{args.rounds} interleaved rounds); ratio {sweep / plain:.3f} "
        f"({overhead:+.1%}; goal within {GOAL_OVERHEAD:.0%}: "
        f"{'met' if overhead <= GOAL_OVERHEAD else 'missed'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=2000, help="per costing round")
    parser.add_argument("--baseline", type=int, default=200, help="per baseline round")
    parser.add_argument("--end-to-end", type=int, default=5000, help="variants of sweep.run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trained", action="store_true", help="also the trained overhead")
    parser.add_argument("--only-trained", action="store_true")
    parser.add_argument("--images", type=int, default=32, help="per class, trained")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_trained:
            cost_only(args, Path(tmp))
        if args.trained or args.only_trained:
            trained(args, Path(tmp))


if __name__ == "__main__":
    main()
