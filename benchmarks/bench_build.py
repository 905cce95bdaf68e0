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
folded into its conv, ghost1's halves kept apart; what `ghostspec export` converts). Its ratio is
to MobileNetV3Large as Keras builds it, with BatchNorms, so the table also times MobileNetV3Large
with its BatchNorms folded the same way and prints that like-for-like ratio. `--variants` adds
GhostNetV2 and the fused (deploy) GhostNetV3 to the latency figures, each with its ratio.
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
from typing import Any

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


def fold_reference(model: Any) -> Any:
    """MobileNetV3Large with every conv -> BatchNorm pair folded into one biased conv, for a like
    for like comparison with ghostspec's deploy form. The functional graph is replayed operation
    by operation with each folded BatchNorm left out; the arithmetic is ghostspec's own
    (`fusion.fold_batch_norm`)."""
    import keras
    import numpy as np
    from keras import layers

    from ghostspec.keras.fusion import fold_batch_norm

    convs = (layers.Conv2D, layers.DepthwiseConv2D)
    bn_after: dict[str, Any] = {}
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            source = layer._inbound_nodes[0].input_tensors[0]._keras_history[0]
            if isinstance(source, convs):
                bn_after[source.name] = layer
    folded = {bn.name for bn in bn_after.values()}

    def new(tensor: Any) -> Any:
        return tensors[id(tensor)] if isinstance(tensor, keras.KerasTensor) else tensor

    inputs = keras.Input(model.inputs[0].shape[1:])
    tensors = {id(model.inputs[0]): inputs, id(model.layers[0].output): inputs}
    for op in model.operations[1:]:
        node = op._inbound_nodes[0]
        args = keras.tree.map_structure(new, node.arguments.args)
        kwargs = keras.tree.map_structure(new, node.arguments.kwargs)
        if op.name in folded:
            out = args[0]
        elif isinstance(op, layers.Layer):
            config = op.get_config()
            if op.name in bn_after:
                config["use_bias"] = True
            out = op.__class__.from_config(config)(*args, **kwargs)
        else:  # a keras.ops operation (MobileNetV3's hard-sigmoid arithmetic)
            out = op(*args, **kwargs)
        for old, fresh in zip(
            keras.tree.flatten(node.output_tensors), keras.tree.flatten(out), strict=True
        ):
            tensors[id(old)] = fresh
    result = keras.Model(inputs, tensors[id(model.outputs[0])], name=f"{model.name}_folded")
    for layer in result.layers[1:]:
        if not layer.weights:
            continue
        source = model.get_layer(layer.name)
        if layer.name not in bn_after:
            layer.set_weights(source.get_weights())
            continue
        bn = bn_after[layer.name]
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
        kernel = np.asarray(source.kernel, np.float64)
        depthwise = isinstance(source, layers.DepthwiseConv2D)
        kernel, bias = fold_batch_norm(kernel, gamma, beta, mean, var, bn.epsilon, depthwise)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return result


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
    models["MobileNetV3L, BN folded"] = fold_reference(models["MobileNetV3Large"])
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
            f"  {name:<24} median {statistics.median(values) * unit:8.2f} {unit_name}"
            f"   min {min(values) * unit:8.2f} {unit_name}   (n={len(values)})"
            f"   {statistics.median(values) / baseline:.2f}x"
        )
    if "MobileNetV3L, BN folded" in times:
        deploy = statistics.median(times["large, deploy form"])
        folded = statistics.median(times["MobileNetV3L, BN folded"])
        print(f"  like for like, both BN folded: deploy form / folded = {deploy / folded:.2f}x")
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
