"""Peak memory of `ghostspec export` against the plan-based estimate that guards it.

Run from the repository root: `python benchmarks/export_memory.py [--quick]`.

Each case runs `ghostspec export` in a fresh process (GHOSTSPEC_MEMORY_LIMIT unset, so the
parity check takes its full 8 samples) and reads the process's peak resident memory; the estimate
is `deploy.export.plan_memory` for the same arguments. The estimate should be at or above the
measurement (it refuses what cannot fit, so it errs high), and not far above it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ghostspec  # noqa: E402
from ghostspec.deploy import export  # noqa: E402
from ghostspec.plan.memory import format_bytes  # noqa: E402

CASES: list[tuple[str, list[str], str, int | None, str]] = [
    # spec, overrides, --to, --batch, --quantize ; all at --input-size below
    ("specs/small.yaml", [], "tflite", None, "none"),
    ("specs/large.yaml", ["width=0.5"], "tflite", None, "none"),
    ("specs/large.yaml", [], "savedmodel", None, "none"),
    ("specs/small.yaml", [], "tflite", 4, "none"),
    ("specs/small.yaml", [], "tflite", None, "int8"),
    ("specs/ghostnetv2.yaml", ["width=0.5"], "onnx", None, "none"),
]
SIZES = (224, 512, 1024)

RUN = """
import resource, sys
from ghostspec import cli
code = cli.run(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"PEAK {peak} EXIT {code}")
"""


def measure(args: list[str]) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k != "GHOSTSPEC_MEMORY_LIMIT"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("PEAK")]
    if not line:
        raise SystemExit(f"{args}: {done.stderr[-2000:]}")
    _, peak, _, code = line[-1].split()
    return int(peak), int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="224 and 512 only")
    options = parser.parse_args()
    sizes = SIZES[:2] if options.quick else SIZES
    print(f"{'case':58} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as scratch:
        for spec, overrides, to, batch, quantize in CASES:
            for size in sizes:
                plan = ghostspec.plan(spec, overrides, input_size=(size, size))
                memory = export.plan_memory(
                    plan,
                    fuse=True,
                    to=to,
                    batch=batch,
                    quantize=quantize,  # type: ignore[arg-type]
                )
                args = [
                    "export", spec, "--to", to, "--input-size", str(size), str(size),
                    "-o", str(Path(scratch) / f"out.{to}"), "--quantize", quantize,
                ]  # fmt: skip
                for override in overrides:
                    args += ["--set", override]
                if batch:
                    args += ["--batch", str(batch)]
                if quantize == "int8":
                    args += ["--calibration", "random:2"]
                peak, code = measure(args)
                label = f"{spec} {' '.join(overrides)} {to} {quantize} b{batch or '-'} {size}"
                ratio = memory.bytes / peak
                print(
                    f"{label:58} {format_bytes(memory.bytes):>10} {format_bytes(peak):>10} "
                    f"{ratio:6.2f}" + ("" if code == 0 else f"  (exit {code})"),
                    flush=True,
                )


if __name__ == "__main__":
    main()
