"""Training throughput: specs/large.yaml against keras.applications.MobileNetV3Large, and where
ghostspec's training step spends its time.

Run from the repository root:
`python benchmarks/bench_train.py [--rounds N] [--steps N] [--xla] [--no-parts] [--profile]`.

Both models get what `ghostspec train` gives them: the optimizer of the default (finetune)
recipe built by ghostspec.train.optim (AdamW, weight decay without BatchNorm and biases),
cross-entropy from logits with label smoothing 0.1, batch 32 at 160x160, 1000 classes, one
`train_on_batch` per step on one batch of tensors in memory (the input pipeline's own overhead is
benchmarks/bench_pipeline.py). MobileNetV3Large is built with weights=None, without its
rescaling layer and with a logits classifier. Rounds alternate the variants, so load from other
processes hits all alike; the figure is the median step over all rounds, in images per second.

Variants and parts (what was tried to make the step faster without changing the function):
- "Keras BatchNorm": ghostspec's model without `ghostspec.train.fastbn` (BatchNorm's training
  mode from Keras' separate moments and normalisation ops instead of TensorFlow's fused kernel).
- "MobileNetV3Large, fused BatchNorm": the same for MobileNetV3Large, for the like-for-like ratio.
- `--xla`: the same model compiled with `jit_compile=True` (XLA for the train step only).
- parts of one ghostspec step, each its own tf.function: the forward pass in training mode; forward
  and backward (gradients, no update); forward and backward with BatchNorm in inference mode
  (moving statistics instead of batch statistics: what BatchNorm's training mode costs); and the
  optimizer's update alone (AdamW on ~300 variables, one small graph per variable).
- `--profile`: TensorFlow's profiler over a few full steps, time per op type (ConcatV2 and Slice
  and their gradients are ghost modules' concat/slice; FusedBatchNorm*Grad is BatchNorm).
- timm's ghostnet_100 in PyTorch (eager, then channels_last) when torch and timm are importable.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "large.yaml"
SIZE, BATCH, CLASSES = 160, 32, 1000


def batch() -> tuple[Any, Any]:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, SIZE, SIZE, 3)), tf.float32)
    y = tf.one_hot(rng.integers(0, CLASSES, BATCH), CLASSES)
    return x, y


def ghostspec_model(fused: bool = True) -> Any:
    """The model as `ghostspec train` trains it: BatchNorm on TensorFlow's fused kernel."""
    import ghostspec
    from ghostspec.train.fastbn import fuse_batch_norm_for_training

    model = ghostspec.build(ghostspec.plan(SPEC, input_size=(SIZE, SIZE)))
    if fused:
        fuse_batch_norm_for_training(model)
    return model


def mobilenet_model(fused: bool = False) -> Any:
    import keras

    from ghostspec.train.fastbn import fuse_batch_norm_for_training

    model = keras.applications.MobileNetV3Large(
        input_shape=(SIZE, SIZE, 3),
        weights=None,
        classes=CLASSES,
        include_preprocessing=False,
        classifier_activation=None,  # logits, like ghostspec's classifier
    )
    if fused:
        fuse_batch_norm_for_training(model)
    return model


def compiled(model: Any, jit: bool = False) -> Any:
    import keras

    from ghostspec.language.recipe import default_recipe
    from ghostspec.train.optim import make_optimizer, make_schedule

    recipe = default_recipe()
    optimizer = make_optimizer(recipe, model, make_schedule(recipe, 1000))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        jit_compile=jit,
    )
    return model


def step_fn(model: Any, x: Any, y: Any) -> Callable[[], Any]:
    return lambda: model.train_on_batch(x, y)


def part_fns(model: Any, x: Any, y: Any) -> dict[str, Callable[[], Any]]:
    """The pieces of one training step as separate compiled functions."""
    import keras
    import tensorflow as tf

    from ghostspec.language.recipe import default_recipe
    from ghostspec.train.optim import make_optimizer, make_schedule

    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    weights = model.trainable_variables

    @tf.function(autograph=False)
    def forward() -> Any:
        return tf.reduce_sum(model(x, training=True))

    def gradients(training: bool) -> Any:
        @tf.function(autograph=False)
        def run() -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=training))
            grads = tape.gradient(loss, weights)
            return tf.add_n([tf.reduce_sum(g) for g in grads])

        return run

    recipe = default_recipe()
    optimizer = make_optimizer(recipe, model, make_schedule(recipe, 1000))
    zeros = [tf.zeros_like(w) for w in weights]

    @tf.function(autograph=False)
    def update() -> Any:
        optimizer.apply(zeros, weights)
        return optimizer.iterations

    train, infer = gradients(True), gradients(False)
    return {
        "forward (BN training)": lambda: forward().numpy(),
        "forward+backward (BN training)": lambda: train().numpy(),
        "forward+backward (BN inference)": lambda: infer().numpy(),
        "optimizer update only": lambda: update().numpy(),
    }


def interleaved(
    variants: dict[str, Callable[[], Any]], rounds: int, steps: int, warmup: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = collections.defaultdict(list)
    for name, fn in variants.items():
        t = time.perf_counter()
        for _ in range(warmup):
            fn()
        print(f"  warm-up {name}: {time.perf_counter() - t:.1f} s", flush=True)
    for r in range(rounds):
        for name, fn in variants.items():
            for _ in range(steps):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def report(times: dict[str, list[float]], base: str | None = None) -> dict[str, float]:
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in medians.items():
        ratio = ""
        if base is not None and name != base:
            ratio = f"  ({medians[base] / m:.2f}x {base})"
        print(f"  {name:34s} {m * 1000:8.1f} ms/step  {BATCH / m:7.1f} img/s{ratio}")
    return medians


def profile(model: Any, x: Any, y: Any, steps: int, top: int) -> None:
    """Op types of the full ghostspec step, summed op time per step (ops on the two cores
    overlap, so the sum can exceed the wall time)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    by_type: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if "/" not in name or ":" not in name:
                    continue
                kind = name.rsplit(":", 1)[1]
                by_type[kind] += event.duration_ps / 1e9 / steps  # ms per step
                count[kind] += 1
    total = sum(by_type.values())
    grouped: collections.Counter[str] = collections.Counter()
    for kind, ms in by_type.items():
        grouped[op_group(kind)] += ms
    print(f"  summed op time {total:.1f} ms per step; by group:")
    for label, ms in grouped.most_common():
        print(f"    {label:44s} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  top {top} op types:")
    for kind, ms in by_type.most_common(top):
        print(
            f"    {kind:36s} {ms:8.1f} ms  {100 * ms / total:5.1f}%  ({count[kind] // steps}/step)"
        )


def op_group(kind: str) -> str:
    """A coarse class of a TensorFlow (oneDNN: _Mkl...) op type."""
    if "Depthwise" in kind:
        return "depthwise convolutions (+ gradients)"
    if "Conv2D" in kind:
        return "1x1 and stem convolutions (+ gradients)"
    if "BatchNorm" in kind:
        return "fused BatchNorm"
    if "Concat" in kind or "Slice" in kind:
        return "concat/slice (ghost modules and their gradients)"
    if kind in ("Mean", "Sum", "Tile", "SquaredDifference", "Rsqrt", "RsqrtGrad"):
        return "reductions (BatchNorm statistics, pooling)"
    if "Variable" in kind or kind.startswith("Assign"):
        return "variable reads and writes"
    if kind in ("Mul", "AddV2", "Add", "Sub", "RealDiv", "Neg", "Sqrt", "Square", "Maximum"):
        return "elementwise arithmetic (BatchNorm, optimizer)"
    if "Relu" in kind or "Sigmoid" in kind or "Hard" in kind:
        return "activations (+ gradients)"
    return "other"


def timm_figures(rounds: int, steps: int) -> None:
    try:
        import timm
        import torch
    except ImportError:
        print("timm ghostnet_100: skipped (torch and timm are not installed)")
        return
    torch.set_num_threads(os.cpu_count() or 1)
    model = timm.create_model("ghostnet_100", num_classes=CLASSES)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, CLASSES, (BATCH,))

    def step(inputs: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), y).backward()
        optimizer.step()

    import copy

    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    optimizer_cl = torch.optim.AdamW(channels_last.parameters(), lr=0.002, weight_decay=0.05)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def step_cl() -> None:
        optimizer_cl.zero_grad(set_to_none=True)
        loss_fn(channels_last(x_cl), y).backward()
        optimizer_cl.step()

    variants = {"timm ghostnet_100 eager": lambda: step(x), "timm channels_last": step_cl}
    print("timm ghostnet_100 (PyTorch, AdamW, label smoothing 0.1):")
    report(interleaved(variants, rounds, steps, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant a round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--xla", action="store_true", help="also time jit_compile=True (compiling takes minutes)"
    )
    parser.add_argument("--no-parts", action="store_true", help="skip the step decomposition")
    parser.add_argument("--profile", action="store_true", help="op-type profile of one step")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    from ghostspec.quiet import quiet_tensorflow

    with quiet_tensorflow():
        run(args)


def run(args: argparse.Namespace) -> None:
    import keras

    keras.utils.set_random_seed(0)
    x, y = batch()
    print(f"batch {BATCH} at {SIZE}x{SIZE}, {CLASSES} classes, CPU threads: {os.cpu_count()}")
    ghost = compiled(ghostspec_model())
    variants = {
        "ghostspec large": step_fn(ghost, x, y),
        "MobileNetV3Large": step_fn(compiled(mobilenet_model()), x, y),
        "ghostspec large, Keras BatchNorm": step_fn(compiled(ghostspec_model(False)), x, y),
        "MobileNetV3Large, fused BatchNorm": step_fn(compiled(mobilenet_model(True)), x, y),
    }
    if args.xla:
        variants["ghostspec large, XLA"] = step_fn(compiled(ghostspec_model(), jit=True), x, y)
    print("training step (train_on_batch), interleaved:")
    medians = report(
        interleaved(variants, args.rounds, args.steps, args.warmup), "MobileNetV3Large"
    )
    mnv3, fused = medians["MobileNetV3Large"], medians["MobileNetV3Large, fused BatchNorm"]
    ghost_s = medians["ghostspec large"]
    print(
        f"images/s ratios, ghostspec / MobileNetV3Large: as Keras builds it {mnv3 / ghost_s:.2f}; "
        f"like for like (both on the fused BatchNorm) {fused / ghost_s:.2f}; both on Keras' "
        f"BatchNorm {mnv3 / medians['ghostspec large, Keras BatchNorm']:.2f}"
    )
    if not args.no_parts:
        print("parts of the ghostspec step (each its own tf.function), interleaved:")
        parts = report(interleaved(part_fns(ghost, x, y), args.rounds, args.steps, args.warmup))
        step = medians["ghostspec large"]
        fb, fb_inf = (
            parts["forward+backward (BN training)"],
            parts["forward+backward (BN inference)"],
        )
        print(
            f"  of a {step * 1000:.0f} ms step: forward {parts['forward (BN training)'] * 1000:.0f}"
            f" ms, backward {(fb - parts['forward (BN training)']) * 1000:.0f} ms, optimizer "
            f"{parts['optimizer update only'] * 1000:.0f} ms; BatchNorm's training mode costs "
            f"{(fb - fb_inf) * 1000:.0f} ms ({100 * (fb - fb_inf) / step:.0f}% of the step)"
        )
    if args.profile:
        print("op-type profile of the ghostspec step:")
        profile(ghost, x, y, max(2, args.steps // 2), args.top)
    timm_figures(args.rounds, args.steps)


if __name__ == "__main__":
    main()
