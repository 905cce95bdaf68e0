"""Training images/s: one device against MirroredStrategy over two logical CPU devices, and
mixed_bfloat16 against float32, interleaved in one process, printed as ratios.

On a 2-core machine two logical CPU devices share the same cores, so mirrored cannot be faster:
the figure is the cost of distribution (splitting the batch, all-reducing the gradients,
synchronised BatchNorm). Replicas use Keras' BatchNorm ops (synchronised across replicas), one
device ghostspec's fused kernel: the "Keras BN" line separates that from the distribution.
Usage: python benchmarks/bench_distribute.py [--spec specs/large.yaml]
[--size 96] [--batch 32] [--steps 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/large.yaml")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    import ghostspec
    from ghostspec.keras import build_model
    from ghostspec.train import distribute, precision
    from ghostspec.train.distill import training_model
    from ghostspec.train.fastbn import fuse_batch_norm_for_training

    plan = ghostspec.plan(
        args.spec, [f"input.shape=[{args.size}, {args.size}, 3]", "head.classes=10"]
    )
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch * args.steps, args.size, args.size, 3), "float32")
    labels = np.eye(10, dtype="float32")[rng.integers(0, 10, args.batch * args.steps)]
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch, True).cache()

    def setup(strategy: object, kind: precision.Precision, fused: bool = True) -> object:
        """The model as `ghostspec train` builds it (ghostspec/train/build.py, build_training)."""
        replicas = strategy.num_replicas_in_sync  # type: ignore[attr-defined]
        with strategy.scope():  # type: ignore[attr-defined]
            with precision.policy(kind):
                net = build_model(plan)
            net = precision.float32_logits(net)
            distribute.synchronize_batch_norm(net, replicas)
            if fused:
                fuse_batch_norm_for_training(net)  # skips synchronised layers
            with precision.policy(kind):
                model = training_model(net)
            model.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            )
        model.fit(data, epochs=1, verbose=0)  # trace and warm up
        return model

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    cases = {
        "one device, float32": setup(one, "float32"),
        "one device, float32, Keras BN": setup(one, "float32", fused=False),
        "mirrored x2, float32": setup(
            tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "float32"
        ),
        "one device, mixed_bfloat16": setup(one, "mixed_bfloat16"),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, model in cases.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)  # type: ignore[attr-defined]
            rates[name].append(len(images) / (time.perf_counter() - start))
    base = statistics.median(rates["one device, float32"])
    print(
        f"{plan.name} at {args.size}x{args.size}, global batch {args.batch}, medians of "
        f"{args.rounds} interleaved rounds of {args.steps} steps"
    )
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:31s} {rate:7.1f} img/s  {rate / base:5.2f}x one device float32")


if __name__ == "__main__":
    main()
