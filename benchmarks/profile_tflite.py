"""Where TFLite time goes in specs/large.yaml, block by block (fp32, batch 1, 2 threads).

Run from the repository root: `python benchmarks/profile_tflite.py [--rounds N] [--no-fuse]`.

The Python interpreters have no per-operator profiler, so this times prefixes: the deploy model
(`ghostspec.fuse(model, batch_norm=True)`, what `ghostspec export` converts; `--no-fuse` for the
model as built) is cut after the stem, after every block and at the output, each prefix is
converted with ghostspec's exporter, and all are timed interleaved on the interpreter ghostspec
uses. A block's cost is its prefix's median minus the previous one's; next to it are the block's
multiply-adds, its output size and its ops, so a block that runs far below the network's average
rate stands out. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "large.yaml"
SHAPE = (1, 224, 224, 3)
THREADS = 2


def node_end(model: Any, name: str) -> str:
    """The last layer of node `name` in the model's layer order (its output)."""
    stem = ("bn1", "act1") if name == "conv_stem" else ()
    owned = [
        layer.name
        for layer in model.layers
        if layer.name == name or layer.name.startswith(f"{name}.") or layer.name in stem
    ]
    return owned[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--invokes", type=int, default=20, help="invokes per prefix per round")
    parser.add_argument("--no-fuse", action="store_true", help="profile the model as built")
    args = parser.parse_args()

    import keras

    import ghostspec
    from ghostspec.deploy import export, tflite
    from ghostspec.keras.fusion import plan_of

    model = ghostspec.build(SPEC)
    if not args.no_fuse:
        model = ghostspec.fuse(model, batch_norm=True)
    plan = plan_of(model)
    nodes = [n for n in plan.nodes if n.kind in ("stem", "conv", "bottleneck")]
    cuts = [(n.name, node_end(model, n.name), n.macs or 0) for n in nodes]
    cuts.append(("head + classifier", model.layers[-1].name, plan.macs - sum(c[2] for c in cuts)))

    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    prefixes = []
    for name, end, macs in cuts:
        sub = keras.Model(model.inputs, model.get_layer(end).output)
        with contextlib.redirect_stdout(sys.stderr):
            content = export._tflite_bytes(sub, SHAPE, "none", None, export.Preprocessing())
        interpreter = tflite.tflite_interpreter(content, threads=THREADS)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        for _ in range(10):
            interpreter.invoke()
        ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
        shape = tuple(interpreter.get_output_details()[0]["shape"][1:])
        prefixes.append((name, interpreter, macs, shape, ops))
        print(f"  converted up to {name}", file=sys.stderr)

    times: dict[str, list[float]] = {name: [] for name, *_ in prefixes}
    for _ in range(args.rounds):
        for name, interpreter, *_ in prefixes:
            for _ in range(args.invokes):
                start = time.perf_counter()
                interpreter.invoke()
                times[name].append(time.perf_counter() - start)

    total_ms = statistics.median(times[prefixes[-1][0]]) * 1e3
    rate = plan.macs / total_ms / 1e6  # GMAC/s over the whole network
    form = "as built" if args.no_fuse else "deploy form"
    print(f"specs/large.yaml ({form}), fp32, batch 1, {THREADS} threads")
    print(f"whole network {total_ms:.2f} ms, {plan.macs / 1e6:.1f} M MACs, {rate:.1f} GMAC/s\n")
    print(f"{'node':<18} {'ms':>6} {'share':>6} {'M MACs':>7} {'GMAC/s':>7}  output")
    previous = 0.0
    for name, _, macs, shape, _ in prefixes:
        cumulative = statistics.median(times[name]) * 1e3
        step = cumulative - previous
        previous = cumulative
        speed = f"{macs / step / 1e6:7.1f}" if step > 0.005 else "      -"
        print(
            f"{name:<18} {step:6.2f} {step / total_ms:6.0%} {macs / 1e6:7.1f} {speed}  "
            f"{'x'.join(str(int(d)) for d in shape)}"
        )
    print("\nops of the whole network:", dict(prefixes[-1][4].most_common()))


if __name__ == "__main__":
    main()
