"""How fast `ghostspec validate` starts, next to `import tensorflow`.

The goals: `ghostspec validate specs/large.yaml` finishes in under 0.5 s, and in under a tenth of
the time Python needs to import TensorFlow (validation must never pay for it).

Run from the repository root, with the project's virtual environment:

    .venv/bin/python benchmarks/bench_validate.py            # 7 runs of each
    .venv/bin/python benchmarks/bench_validate.py --runs 11 --strict

Both commands run as fresh subprocesses, interleaved (validate, import, validate, ...) so that a
change in machine load hits both alike, after one untimed warm-up of each. Medians are printed
with the ratio. With --strict the exit code is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 0.5
GOAL_FRACTION = 0.1


def validate_command(spec: Path) -> list[str]:
    """The venv's `ghostspec` console script if it is installed, else `python -m ghostspec`."""
    script = Path(sys.executable).with_name("ghostspec")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "ghostspec"]
    return [*head, "validate", str(spec)]


def elapsed(command: Sequence[str], expect: int = 0) -> float:
    """Wall-clock seconds of one run of `command`, which must exit with `expect`."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != expect:
        raise SystemExit(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each (default 7)")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "large.yaml")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)

    commands = {
        "ghostspec validate": validate_command(args.spec),
        "import tensorflow": [sys.executable, "-c", "import tensorflow"],
    }
    for command in commands.values():
        elapsed(command)  # warm-up: page cache, .pyc files
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(elapsed(command))

    medians = {name: statistics.median(values) for name, values in times.items()}
    validate_s = medians["ghostspec validate"]
    tensorflow_s = medians["import tensorflow"]
    ratio = validate_s / tensorflow_s

    print(f"{args.runs} interleaved runs of each, python {sys.version.split()[0]}")
    for name, values in times.items():
        spread = f"min {min(values):.3f} s, max {max(values):.3f} s"
        print(f"  {name:<20} median {medians[name]:.3f} s  ({spread})")
    print(f"  ratio validate / import tensorflow: {ratio:.3f} (1/{1 / ratio:.1f})")
    fast = validate_s < GOAL_SECONDS
    small = ratio < GOAL_FRACTION
    print(f"goal validate < {GOAL_SECONDS} s: {'met' if fast else 'MISSED'}")
    print(
        f"goal validate < 1/{1 / GOAL_FRACTION:.0f} of the import: {'met' if small else 'MISSED'}"
    )
    return 1 if args.strict and not (fast and small) else 0


if __name__ == "__main__":
    sys.exit(main())
