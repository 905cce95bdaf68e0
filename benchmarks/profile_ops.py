"""Where batch-1 inference time and compile time go: specs/large.yaml against MobileNetV3Large.

Run from the repository root: `python benchmarks/profile_ops.py [--calls N] [--top N]`.

Latency: each model runs `model(x, training=False)` at batch 1, 224x224, inside a `tf.function`
under TensorFlow's profiler; the script reads the trace back and prints, per TensorFlow op type,
the op count and the summed op time per call (ops on the two cores overlap, so the sums can exceed
the wall time), then the slowest single ops of the ghostspec model. Compile: the number of layers
and variables of each model, and ghostspec's build split into its phases (spec -> plan, layers
wired in a StatelessScope, keras.Model, variables created when the scope closes), so the cost per
layer and per variable can be read against MobileNetV3Large's whole construction time.
Nothing is asserted: it measures and prints, to explain the ratios bench_build.py reports.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "large.yaml"


def op_times(model: Any, calls: int) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Per op type: summed time per call (us) and count per call; per op name: time per call."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 224, 224, 3)), tf.float32)
    fn = tf.function(lambda t: model(t, training=False))
    for _ in range(10):
        fn(x).numpy()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            fn(x).numpy()
        tf.profiler.experimental.stop()
        trace = next(Path(logdir).rglob("*.xplane.pb"))
        space = xplane_pb2.XSpace()
        space.ParseFromString(trace.read_bytes())
    by_type: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    by_name: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if "/" not in name or ":" not in name:  # not a TensorFlow op event
                    continue
                kind = name.rsplit(":", 1)[1]
                us = event.duration_ps / 1e6 / calls
                by_type[kind] += us
                count[kind] += 1
                by_name[name] += us
    return dict(by_type), {k: v // calls for k, v in count.items()}, dict(by_name)


def compile_phases(rounds: int) -> dict[str, list[float]]:
    import keras

    import ghostspec
    from ghostspec.keras.model import BUILDERS

    phases: dict[str, list[float]] = collections.defaultdict(list)
    ghostspec.build(SPEC)
    keras.applications.MobileNetV3Large(weights=None)
    for _ in range(rounds):
        t0 = time.perf_counter()
        plan = ghostspec.plan(SPEC)
        t1 = time.perf_counter()
        scope = keras.StatelessScope()
        scope.__enter__()
        x = inputs = keras.Input(shape=plan.input_shape, name="input")
        for node in plan.nodes:
            x = BUILDERS[type(node)](x, node)
        t2 = time.perf_counter()
        keras.Model(inputs, x, name=plan.name)
        t3 = time.perf_counter()
        scope.__exit__(None, None, None)
        t4 = time.perf_counter()
        keras.applications.MobileNetV3Large(weights=None)
        t5 = time.perf_counter()
        for name, seconds in (
            ("spec -> plan", t1 - t0),
            ("layers (wired)", t2 - t1),
            ("keras.Model", t3 - t2),
            ("variables", t4 - t3),
            ("ghostspec total", t4 - t0),
            ("MobileNetV3Large", t5 - t4),
        ):
            phases[name].append(seconds)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="profiled calls per model")
    parser.add_argument("--top", type=int, default=15, help="slowest ghostspec ops to list")
    parser.add_argument("--rounds", type=int, default=7, help="compile rounds (medians)")
    args = parser.parse_args()

    import keras

    import ghostspec

    models = {
        "ghostspec large": ghostspec.build(SPEC),
        "MobileNetV3Large": keras.applications.MobileNetV3Large(weights=None),
    }
    results = {name: op_times(model, args.calls) for name, model in models.items()}
    kinds = sorted(
        {k for by_type, _, _ in results.values() for k in by_type},
        key=lambda k: -results["ghostspec large"][0].get(k, 0.0),
    )
    print("batch-1 op time per call, by TensorFlow op type (us; n = ops per call)")
    print(f"  {'op':<28} {'ghostspec large':>22} {'MobileNetV3Large':>22}")
    for kind in kinds:
        cells = []
        for by_type, count, _ in results.values():
            cells.append(f"{by_type.get(kind, 0.0):9.0f} (n={count.get(kind, 0):3d})")
        print(f"  {kind:<28} {cells[0]:>22} {cells[1]:>22}")
    totals = [sum(by_type.values()) for by_type, _, _ in results.values()]
    print(f"  {'sum':<28} {totals[0]:15.0f}        {totals[1]:15.0f}")
    print(f"\nslowest {args.top} ops of ghostspec large (us per call)")
    slowest = sorted(results["ghostspec large"][2].items(), key=lambda kv: -kv[1])
    for name, us in slowest[: args.top]:
        print(f"  {us:8.0f}  {name.split('/', 1)[-1]}")

    print("\ncompile, medians (ms)")
    for name, model in models.items():
        print(f"  {name:<18} {len(model.layers):4d} layers {len(model.variables):4d} variables")
    for name, values in compile_phases(args.rounds).items():
        print(f"  {name:<18} {statistics.median(values) * 1e3:8.1f}")


if __name__ == "__main__":
    main()
