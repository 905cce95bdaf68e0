"""The input pipeline's overhead: a training step fed by data.pipeline against the same step on
a batch already in memory.

Run from the repository root:
`python benchmarks/bench_pipeline.py [--rounds N] [--steps N] [--images N] [--augment KIND]`.

Model: specs/large.yaml at 160x160, batch 32, SGD, sparse categorical cross-entropy from logits,
one `train_on_batch` per step (the loop the training throughput figures use). "pipeline" steps
take each batch from `train_dataset` (files read and decoded, cached after the first epoch, then
the training augmentation, all in tf.data with prefetch: `--augment imagenet` (the default, the
heaviest: random resized crop, flip, RandAugment m9-mstd0.5, random erasing 0.2), `finetune`
(the small-data recipe: crop and flip) or `none`); "in memory" steps reuse one batch of
tensors. Rounds alternate the two so that load from other processes hits both alike; a round is
long against the prefetch buffer, so the buffer filled while the other kind ran does not flatter
the pipeline. On a shared machine the wall-time ratio can flatter the pipeline (its threads win
the process a larger share of the cores), so the CPU-time ratio is printed too.
The figures are the median step times and their ratio (goal: pipeline / in memory <= 1.10),
the same for the process's CPU time a step (steadier on a shared machine), and the cost of a
batch drawn with no training running.
The images are generated once (tests/imagegen.py, JPEG and PNG, 200-260 px, a folder in /tmp).

Every backend: the script runs on the backend KERAS_BACKEND names. `--feed tfdata` (the default)
is ghostspec's tf.data pipeline; on JAX and PyTorch its batches are turned into NumPy arrays, as
Keras' fit does with a tf.data dataset there. `--feed pydataset` is a backend-neutral candidate
that needs no TensorFlow: a Keras PyDataset (`--workers` threads, Keras' own queue) over images
decoded once with Pillow into memory, then per image torchvision's random resized crop (Pillow's
bilinear resize) and the flip, and NumPy's normalisation: the `finetune` augmentation only
(RandAugment and erasing exist in TensorFlow ops alone).
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


def _augments() -> dict[str, Any]:
    from ghostspec.data.pipeline import Augment

    return {
        # the shipped recipes' training augmentation (recipes/imagenet.yaml, finetune.yaml)
        "imagenet": Augment((0.08, 1.0), (0.75, 4 / 3), True, 9.0, 0.5, 2, 0.2),
        "finetune": Augment((0.35, 1.0), (0.75, 4 / 3), True, 9.0, 0.5, None, 0.0),
        "none": Augment.none(),
    }


AUGMENTS = _augments()


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


def neutral_feed(
    samples: Any, augment: Any, mean: Any, std: Any, workers: int, seed: int = 0
) -> Any:
    """The PyDataset candidate (see the module docstring): an endless iterator of NumPy
    (images, labels) batches, drawn through Keras' PyDataset adapter with `workers` threads."""
    import math

    import keras
    import numpy as np
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    from PIL import Image

    images = [np.asarray(Image.open(s.path).convert("RGB")) for s in samples]
    labels = np.array([s.label for s in samples], np.int32)
    m = np.array(mean, np.float32) * 255.0
    d = np.array(std, np.float32) * 255.0
    scale, ratio = augment.crop_scale or (1.0, 1.0), augment.crop_ratio or (1.0, 1.0)

    def crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        for _ in range(10):  # torchvision's RandomResizedCrop.get_params
            area = h * w * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                break
        else:
            ch, cw, top, left = h, w, 0, 0
        window = Image.fromarray(image[top : top + ch, left : left + cw])
        out = np.asarray(window.resize((SIZE, SIZE), Image.BILINEAR), np.float32)
        return out[:, ::-1] if augment.flip and rng.random() < 0.5 else out

    class Feed(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
            self.order = np.random.default_rng(seed).permutation(len(images))

        def __len__(self) -> int:
            return len(images) // BATCH

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rng = np.random.default_rng([seed, index])
            picked = self.order[index * BATCH : (index + 1) * BATCH]
            x = np.stack([crop(images[i], rng) for i in picked])
            return (x - m) / d, labels[picked]

    adapter = PyDatasetAdapter(Feed(), shuffle=False)

    def forever() -> Any:
        while True:
            yield from adapter.get_numpy_iterator()
            adapter.on_epoch_end()

    return forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="train steps per round and kind")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--augment", choices=list(AUGMENTS), default="imagenet")
    parser.add_argument("--feed", choices=["tfdata", "pydataset"], default="tfdata")
    parser.add_argument("--workers", type=int, default=2, help="PyDataset threads")
    args = parser.parse_args()
    if args.feed == "pydataset" and args.augment == "imagenet":
        parser.error("--feed pydataset has the finetune augmentation only (--augment finetune)")

    import keras

    import ghostspec
    from ghostspec.data import pipeline as data

    augment = AUGMENTS[args.augment]
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
    backend = keras.backend.backend()
    if args.feed == "pydataset":
        batches = neutral_feed(samples, augment, plan.mean, plan.std, args.workers)
    else:
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
        # JAX and PyTorch take NumPy arrays (what Keras' fit makes of a tf.data dataset there)
        batches = iter(dataset) if backend == "tensorflow" else dataset.as_numpy_iterator()
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
        f"{backend}, feed {args.feed}: {len(samples)} images ({steps_per_epoch} steps an epoch), "
        f"augment {args.augment}; "
        f"warm-up incl. the first (decoding) epoch {time.perf_counter() - start:.1f} s"
    )
    for _ in range(3):
        memory_step()

    # wall time, and the process's CPU time (all threads: tf.data's and the step's), which
    # load from other processes on a shared machine changes far less than wall time
    wall: dict[str, list[float]] = {"pipeline": [], "in memory": []}
    cpu: dict[str, list[float]] = {"pipeline": [], "in memory": []}
    kinds: dict[str, Any] = {"pipeline": pipeline_step, "in memory": memory_step}
    for r in range(args.rounds):
        for name, step in kinds.items():
            for _ in range(args.steps):
                t, c = time.perf_counter(), time.process_time()
                step()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        print(
            f"round {r + 1}: "
            + ", ".join(
                f"{k} {statistics.median(v[-args.steps :]) * 1e3:.0f} ms" for k, v in wall.items()
            )
        )
    # what the pipeline costs on its own: batches drawn with no training step running
    start, c = time.perf_counter(), time.process_time()
    for _ in range(steps_per_epoch):
        next(batches)
    alone_wall = (time.perf_counter() - start) / steps_per_epoch
    alone_cpu = (time.process_time() - c) / steps_per_epoch
    pipe, memory = (statistics.median(wall[k]) for k in ("pipeline", "in memory"))
    pipe_cpu, memory_cpu = (statistics.median(cpu[k]) for k in ("pipeline", "in memory"))
    print(f"median step: pipeline {pipe * 1e3:.0f} ms, in memory {memory * 1e3:.0f} ms")
    print(f"images/s: pipeline {BATCH / pipe:.1f}, in memory {BATCH / memory:.1f}")
    print(
        f"CPU time a step: pipeline {pipe_cpu * 1e3:.0f} ms, in memory {memory_cpu * 1e3:.0f} ms; "
        f"a batch with no training: {alone_wall * 1e3:.0f} ms wall, {alone_cpu * 1e3:.0f} ms CPU"
    )
    print(f"ratio pipeline / in memory: wall {pipe / memory:.3f}, CPU {pipe_cpu / memory_cpu:.3f}")
    print("goal: wall ratio <= 1.10")


if __name__ == "__main__":
    main()
