"""Accuracy of a model on an image folder: top-1, top-5, loss, per-class accuracy, confusion.

The model comes from a run folder (its best.keras and classes), a .keras file, or a spec with
--weights. Images get the evaluation preprocessing (`data.images.eval_preprocess`) with the
model's own mean, std, input size and crop_pct when its metadata has them. The loss is the sparse
categorical cross-entropy, from logits, or from probabilities for a model ending in softmax
(computed as Keras does: rows renormalised and clipped to [1e-7, 1 - 1e-7]).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostspec.data.images import DEFAULT_CROP_PCT
from ghostspec.data.scoring import Evaluation, is_probability_model, label_map, metrics
from ghostspec.diagnostics import Diagnostic, SpecError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from ghostspec.keras.modelfile import ModelMetadata

DEFAULT_SIZE = 224  # for a model that accepts any input size and carries no metadata


@dataclass(frozen=True)
class ModelSource:
    """A model ready to evaluate and what it says about its inputs and classes."""

    model: keras.Model
    name: str
    classes: tuple[str, ...] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    crop_pct: float


def predict(model: Any, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and labels over a dataset of (x, y) batches, in inference mode. The model runs on
    its backend: a tf.function on TensorFlow, Keras' compiled predict step (jit on JAX) on the
    others, which take the batches as NumPy arrays."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() == "tensorflow":
        step = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        batches = iter(dataset)
    else:
        step = model.predict_on_batch
        batches = dataset.as_numpy_iterator()
    outputs, labels = [], []
    for x, y in batches:
        outputs.append(np.asarray(step(x), np.float32))
        labels.append(np.asarray(y))
    if not outputs:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(outputs), np.concatenate(labels)


# loading the model ---------------------------------------------------------------------------


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def load_keras_file(path: Path) -> tuple[Any, ModelMetadata | None]:
    """(model, metadata or None) of a .keras file, through the one loader (bounded archive,
    safe mode, ghostspec's layers registered, one-line errors)."""
    from ghostspec.keras.modelfile import load_model_file

    loaded = load_model_file(path, compile=False)
    return loaded.model, loaded.metadata


def _read_classes_txt(path: Path) -> tuple[str, ...] | None:
    from ghostspec.files import read_regular_file

    if not path.is_file():
        return None
    text = read_regular_file(path, 16 * 2**20, "class list").decode("utf-8", "replace")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    return names or None


def _static_size(model: Any, file: Path) -> tuple[int, int] | None:
    from ghostspec.keras.modelfile import image_input_shape

    h, w, _ = image_input_shape(model, str(file))
    return None if h is None or w is None else (h, w)


def load_source(
    source: str | Path,
    *,
    weights: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> ModelSource:
    """A run folder (best.keras + classes.txt), a .keras file, or a spec with weights."""
    from ghostspec.plan.ir import IMAGENET_MEAN, IMAGENET_STD

    path = Path(source)
    if path.is_dir() or path.suffix.lower() == ".keras":
        if weights or overrides:
            raise _error(
                source,
                "--weights and --set apply to specs, not to a saved model or run folder",
                "drop them, or evaluate the spec with --weights",
            )
        classes_txt = None
        if path.is_dir():
            model_file = path / "best.keras"
            if not model_file.is_file():
                raise _error(
                    path,
                    "is not a run folder: it has no best.keras",
                    "pass a run folder written by `ghostspec train`, a .keras file or a spec",
                )
            classes_txt = _read_classes_txt(path / "classes.txt")
        else:
            model_file = path
        model, meta = load_keras_file(model_file)
        static = _static_size(model, model_file)
        channels = int(model.inputs[0].shape[-1])
        default_mean = IMAGENET_MEAN if channels == 3 else (0.0,) * channels
        default_std = IMAGENET_STD if channels == 3 else (1.0,) * channels
        # a fixed-size model is fed its own size; one that takes any size, the size it was
        # trained at (its metadata), else the usual 224
        size = static or (meta and meta.input_size) or (DEFAULT_SIZE, DEFAULT_SIZE)
        return ModelSource(
            model=model,
            name=model.name,
            classes=(meta and meta.classes) or classes_txt,
            mean=tuple((meta and meta.mean) or default_mean),
            std=tuple((meta and meta.std) or default_std),
            input_size=(int(size[0]), int(size[1])),
            crop_pct=float((meta and meta.crop_pct) or DEFAULT_CROP_PCT),
        )
    from ghostspec.keras.build import build as build_model_from
    from ghostspec.plan import pipeline

    plan = pipeline.plan(str(source), list(overrides))
    if weights is None:
        raise _error(
            source,
            "a spec alone is an untrained model; evaluating it measures nothing",
            "pass --weights PATH, a .keras file or a run folder",
        )
    model = build_model_from(plan, weights=weights)
    h, w, _ = plan.input_shape
    return ModelSource(
        model=model,
        name=plan.name,
        classes=None,
        mean=tuple(plan.mean),
        std=tuple(plan.std),
        input_size=(DEFAULT_SIZE, DEFAULT_SIZE) if h is None or w is None else (h, w),
        crop_pct=DEFAULT_CROP_PCT,
    )


def _output_classes(model: Any) -> int:
    shape = model.outputs[0].shape
    if len(shape) != 2 or shape[-1] is None:
        raise _error(
            model.name,
            f"the model's output has shape {tuple(shape)}, not class scores [N, classes]",
            "evaluate a classifier (a spec with include_top: true)",
        )
    return int(shape[-1])


def evaluate(
    source: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    batch_size: int = 64,
    weights: str | Path | None = None,
    overrides: Sequence[str] = (),
    val_split: float | None = None,
    seed: int = 0,
    strict: bool = False,
) -> Evaluation:
    """Evaluate a model (see `load_source`) on a split of an image folder."""
    from ghostspec.data.pipeline import check_samples, discover, eval_dataset

    if batch_size < 1:
        raise _error("--batch-size", f"{batch_size} is not a positive batch size")
    folder = discover(data, val_split=val_split, seed=seed)
    if split not in folder.splits:
        raise _error(
            folder.root,
            f"has no {split}/ split (it has {', '.join(sorted(folder.splits))})",
            f"add {folder.root}/{split}/<class>/ images, or choose another --split",
        )
    samples = folder.splits[split]
    if not samples:
        raise _error(folder.root, f"the {split} split holds no images")
    checked = check_samples(samples, strict=strict)  # before loading the model: fail early
    from ghostspec.diagnostics import require_tensorflow

    require_tensorflow("ghostspec evaluate (its tf.data evaluation pipeline)")
    loaded = load_source(source, weights=weights, overrides=overrides)
    outputs = _output_classes(loaded.model)
    names, mapping = label_map(loaded.classes, folder.classes, outputs, folder.root)
    channels = int(loaded.model.inputs[0].shape[-1])
    dataset = eval_dataset(
        checked,
        size=loaded.input_size,
        channels=channels,
        mean=loaded.mean,
        std=loaded.std,
        crop_pct=loaded.crop_pct,
        batch=batch_size,
        strict=strict,
    )
    out, labels = predict(loaded.model, dataset)
    if len(labels) == 0:
        raise _error(folder.root, f"none of the {split} images could be decoded")
    result = metrics(
        out, mapping[labels], names, from_logits=not is_probability_model(loaded.model)
    )
    skipped = len(samples) - result.count
    return Evaluation(**{**result.__dict__, "skipped": skipped})


# output --------------------------------------------------------------------------------------


def render_table(result: Evaluation, title: str = "") -> str:
    width = max([len("class"), *(len(c) for c in result.classes)])
    lines = []
    if title:
        lines.append(title)
    skipped = f" ({result.skipped} unreadable skipped)" if result.skipped else ""
    lines.append(
        f"{result.count} images{skipped}: top-1 {result.top1:.2%}, top-5 {result.top5:.2%}, "
        f"loss {result.loss:.4f}"
    )
    lines.append(f"  {'class':<{width}}  {'images':>6}  accuracy")
    for i, (name, acc) in enumerate(zip(result.classes, result.per_class, strict=True)):
        shown = "-" if acc is None else f"{acc:.2%}"
        lines.append(f"  {name:<{width}}  {int(result.confusion[i].sum()):>6}  {shown:>8}")
    return "\n".join(lines)


def render_json(result: Evaluation) -> str:
    return json.dumps(result.to_json(), indent=2)


def check_png_target(target: str | Path, inputs: Sequence[str | Path | None] = ()) -> Path:
    """Refuse a confusion-matrix path that cannot be written, before any work is done."""
    from ghostspec.files import check_output

    return check_output(target, inputs=inputs, suffixes=(".png",), what="confusion matrix")


def write_confusion(result: Evaluation, target: str | Path) -> Path:
    """The confusion matrix as a PNG (matplotlib, Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ghostspec.files import write_with

    path = check_png_target(target)
    k = len(result.classes)
    side = min(2.0 + 0.45 * k, 40.0)
    fig, ax = plt.subplots(figsize=(side, side))
    try:
        rows = result.confusion.sum(axis=1, keepdims=True)
        shares = result.confusion / np.maximum(rows, 1)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"top-1 {result.top1:.2%} on {result.count} images")
        if k <= 50:
            ax.set_xticks(range(k), result.classes, rotation=90)
            ax.set_yticks(range(k), result.classes)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    value = int(result.confusion[i, j])
                    if value:
                        colour = "white" if shares[i, j] > 0.5 else "black"
                        ax.text(j, i, str(value), ha="center", va="center", color=colour)
        fig.tight_layout()
        write_with(path, lambda temp: fig.savefig(temp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
