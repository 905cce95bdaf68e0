"""The input pipeline's overhead: a training step fed by ghostspec.data against the same step on
a batch already in memory.

Run from the repository root:
`python benchmarks/bench_pipeline.py [--rounds N] [--steps N] [--images N] [--augment KIND]`.

Model: specs/large.yaml at 160x160, batch 32, SGD, sparse categorical cross-entropy from logits,
one `train_on_batch` per step (the loop the training throughput figures use). "pipeline" steps
take each batch from `train_dataset` (files read and decoded, cached after the first epoch, then
random resized crop, flip, RandAugment m9-mstd0.5 and, with `--augment imagenet`, random
erasing 0.2, all in tf.data with prefetch); "in memory" steps reuse one batch of tensors. Rounds
alternate the two so that load from other processes hits both alike; a round is long against
the prefetch buffer, so the buffer filled while the other kind ran does not flatter the pipeline.
The figure is the median step time and their ratio (goal: pipeline / in memory <= 1.10).
The images are generated once (tests/imagegen.py, JPEG and PNG, 200-260 px, a folder in /tmp).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "tests"))

SPEC = ROOT / "specs" / "large.yaml"
SIZE, BATCH = 160, 32


def make_images(folder: Path, count: int) -> Path:
    """`count` images of six shape classes, sizes varying like photos (200-260 px)."""
    import numpy as np
    from imagegen import SHAPES, _write, draw

    rng = np.random.default_rng(0)
    for i in range(count):
        name, shape = SHAPES[i % len(SHAPES)]
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        image = draw(shape, rng, int(rng.integers(200, 261)))
        _write(image, target / f"{i:05d}{'.png' if i % 4 == 0 else '.jpg'}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="train steps per round and kind")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--augment", choices=["default", "imagenet", "none"], default="default")
    args = parser.parse_args()

    import keras

    import ghostspec
    from ghostspec import data
    from ghostspec.data import Augment

    augment = {
        "default": Augment(),
        "imagenet": Augment(erasing=0.2),
        "none": Augment(None, None, False, 0.0, 0.0, None, 0.0),
    }[args.augment]
    folder = Path(tempfile.gettempdir()) / f"ghostspec-bench-pipeline-{args.images}"
    if not folder.is_dir():
        make_images(folder, args.images)
    samples = data.discover(folder, val_split=0.01).splits["train"]

    plan = ghostspec.plan(SPEC, [f"input.shape=[{SIZE}, {SIZE}, 3]"])
    model = ghostspec.build(plan)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    dataset = data.train_dataset(
        samples,
        size=SIZE,
        channels=3,
        mean=plan.mean,
        std=plan.std,
        batch=BATCH,
        augment=augment,
        seed=0,
    ).repeat()
    batches = iter(dataset)
    x_memory, y_memory = next(batches)

    def pipeline_step() -> None:
        x, y = next(batches)
        model.train_on_batch(x, y)

    def memory_step() -> None:
        model.train_on_batch(x_memory, y_memory)

    start = time.perf_counter()
    steps_per_epoch = len(samples) // BATCH
    for _ in range(steps_per_epoch + 2):  # the first epoch decodes and fills the cache
        pipeline_step()
    print(
        f"{len(samples)} images ({steps_per_epoch} steps an epoch), augment {args.augment}; "
        f"warm-up incl. the first (decoding) epoch {time.perf_counter() - start:.1f} s"
    )
    for _ in range(3):
        memory_step()

    times: dict[str, list[float]] = {"pipeline": [], "in memory": []}
    kinds: dict[str, Any] = {"pipeline": pipeline_step, "in memory": memory_step}
    for r in range(args.rounds):
        for name, step in kinds.items():
            for _ in range(args.steps):
                t = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t)
        print(
            f"round {r + 1}: "
            + ", ".join(
                f"{k} {statistics.median(v[-args.steps :]) * 1e3:.0f} ms" for k, v in times.items()
            )
        )
    pipe, memory = (statistics.median(times[k]) for k in ("pipeline", "in memory"))
    print(f"median step: pipeline {pipe * 1e3:.0f} ms, in memory {memory * 1e3:.0f} ms")
    print(f"images/s: pipeline {BATCH / pipe:.1f}, in memory {BATCH / memory:.1f}")
    print(f"ratio pipeline / in memory: {pipe / memory:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
