"""Compile time and inference latency of specs/large.yaml against Keras' MobileNetV3Large.

Run from the repository root:
`python benchmarks/bench_build.py [--rounds N] [--iters N] [--variants]`.

Both models are measured in one process, interleaved round by round so that load from other
processes hits both alike; the figures are medians. Compile time is spec file -> keras.Model
(load, validate, lower, build) after TensorFlow is imported, against
`keras.applications.MobileNetV3Large(weights=None)`. Latency is one call of a `tf.function`
wrapping `model(x, training=False)` at 224x224, batch 1 and 32, after warm-up.
Goals: compile <= 1.0x and batch-1 latency <= 1.0x MobileNetV3Large. The latency table also
shows `ghostspec.fuse(model, batch_norm=True)`, the inference-only deploy form (every BatchNorm
folded into its conv, ghost1's halves kept apart; what `ghostspec export` converts);
MobileNetV3Large is timed as Keras builds it, with its BatchNorms, so that row is not like for
like. `--variants` adds GhostNetV2 and the fused
(deploy) GhostNetV3 to the latency figures, each with its ratio.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "large.yaml"


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compile_times(rounds: int) -> dict[str, list[float]]:
    import keras

    import ghostspec

    builders: dict[str, Callable[[], object]] = {
        "ghostspec large": lambda: ghostspec.build(SPEC),
        "MobileNetV3Large": lambda: keras.applications.MobileNetV3Large(weights=None),
    }
    for build in builders.values():  # first builds pay one-off costs (imports, caches)
        build()
    times: dict[str, list[float]] = {name: [] for name in builders}
    for _ in range(rounds):
        for name, build in builders.items():
            times[name].append(timed(build))
    return times


def latencies(
    batch: int, rounds: int, iters: int, variants: bool = False
) -> dict[str, list[float]]:
    import keras
    import numpy as np
    import tensorflow as tf

    import ghostspec

    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch, 224, 224, 3)), tf.float32)
    models = {"ghostspec large": ghostspec.build(SPEC)}
    models["large, deploy form"] = ghostspec.fuse(models["ghostspec large"], batch_norm=True)
    if variants:
        models["ghostspec v2"] = ghostspec.build(ROOT / "specs" / "ghostnetv2.yaml")
        models["ghostspec v3 fused"] = ghostspec.fuse(
            ghostspec.build(ROOT / "specs" / "ghostnetv3.yaml")
        )
    models["MobileNetV3Large"] = keras.applications.MobileNetV3Large(weights=None)
    calls = {}
    for name, model in models.items():
        fn = tf.function(lambda t, m=model: m(t, training=False))
        for _ in range(5):
            fn(x).numpy()
        calls[name] = fn
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            for _ in range(iters):
                out = fn(x)
            out.numpy()
            times[name].append((time.perf_counter() - start) / iters)
    return times


def report(title: str, times: dict[str, list[float]], unit: float, unit_name: str) -> float:
    """Print medians and each model's ratio to MobileNetV3Large; return ghostspec large's."""
    baseline = statistics.median(times["MobileNetV3Large"])
    print(f"{title}")
    for name, values in times.items():
        print(
            f"  {name:<20} median {statistics.median(values) * unit:8.2f} {unit_name}"
            f"   min {min(values) * unit:8.2f} {unit_name}   (n={len(values)})"
            f"   {statistics.median(values) / baseline:.2f}x"
        )
    return statistics.median(times["ghostspec large"]) / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per figure")
    parser.add_argument("--iters", type=int, default=10, help="calls per latency round")
    parser.add_argument(
        "--only", choices=["compile", "latency"], help="measure one of the two figures only"
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time GhostNetV2 and fused GhostNetV3 (specs/ghostnetv{2,3}.yaml)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    import keras
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    print(f"import tensorflow + keras: {time.perf_counter() - start:.2f} s (not counted)\n")

    ratios = {}
    if args.only in (None, "compile"):
        times = compile_times(args.rounds)
        ratios["compile"] = report("compile (spec -> model)", times, 1e3, "ms")
    if args.only in (None, "latency"):
        times = latencies(1, args.rounds, args.iters, args.variants)
        ratios["batch 1"] = report("latency, batch 1, 224x224", times, 1e3, "ms")
        times = latencies(32, max(3, args.rounds // 2), max(2, args.iters // 4), args.variants)
        ratios["batch 32"] = report("latency, batch 32, 224x224", times, 1e3, "ms")
    print("\nsummary: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print("goals: compile <= 1.00x, batch 1 <= 1.00x")


if __name__ == "__main__":
    main()
