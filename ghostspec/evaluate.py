"""Accuracy of a model on an image folder: top-1, top-5, loss, per-class accuracy, confusion.

The model comes from `ghostspec.deploy.source.resolve`: a run folder (its best.keras and
classes), a .keras file, an exported .tflite or .onnx, or a spec with --weights. Images get the
evaluation preprocessing (`data.images.eval_preprocess`) with the model's own mean, std, input
size and crop_pct when its metadata has them. It must end in class scores (a backbone's pooled
features are refused). A trained model evaluated on the folder it was validated on is scored on
exactly that validation split (`data.splits`). The loss is the sparse
categorical cross-entropy, from logits, or from probabilities for a model ending in softmax
(computed as Keras does: rows renormalised and clipped to [1e-7, 1 - 1e-7]).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ghostspec.data.scoring import Evaluation, label_map, metrics
from ghostspec.deploy.source import ResolvedModel, resolve
from ghostspec.diagnostics import Diagnostic, SpecError

if TYPE_CHECKING:
    import tensorflow as tf

    from ghostspec.keras.modelfile import ValidationSplit


def predict(
    run: Callable[[np.ndarray], np.ndarray], dataset: tf.data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and labels over a dataset of (x, y) batches, `run` being the model's runner."""
    outputs, labels = [], []
    for x, y in dataset:
        outputs.append(np.asarray(run(x.numpy()), np.float32))
        labels.append(y.numpy())
    if not outputs:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(outputs), np.concatenate(labels)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def load_source(
    source: str | Path,
    *,
    weights: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> ResolvedModel:
    """A run folder, a .keras file, an exported .tflite or .onnx, or a spec with weights
    (`ghostspec.deploy.source.resolve`, the one answer to "what model is this?")."""
    return resolve(source, weights=weights, overrides=overrides)


def _output_classes(loaded: ResolvedModel) -> int:
    """The number of class scores the model outputs; SpecError for anything but a classifier."""
    from ghostspec.keras.modelfile import pooled_output

    pooled = None if loaded.model is None else pooled_output(loaded.model)
    if pooled is not None:
        shape = tuple(loaded.model.outputs[0].shape)
        raise _error(
            loaded.path,
            f"the model has no classifier head: its {shape[-1]} outputs are the pooled features "
            f"of its {pooled!r} layer, not class scores, so any top-1 would mean nothing",
            "evaluate a classifier: a run folder, or a model built from a spec with "
            "head.include_top: true (a backbone needs a classifier trained on top first)",
        )
    if loaded.outputs is None:
        raise _error(
            loaded.path,
            "the model's output is not class scores [N, classes]",
            "evaluate a classifier (a spec with include_top: true)",
        )
    return loaded.outputs


def _recorded_split(source: str | Path) -> ValidationSplit | None:
    """The validation split a run folder's or .keras file's metadata records, if any."""
    from ghostspec.keras.modelfile import read_model_metadata

    path = Path(source)
    model_file = path / "best.keras" if path.is_dir() else path
    if model_file.suffix.lower() != ".keras" or not model_file.is_file():
        return None
    meta = read_model_metadata(model_file)
    return None if meta is None else meta.validation


def evaluate(
    source: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    batch_size: int = 64,
    weights: str | Path | None = None,
    overrides: Sequence[str] = (),
    val_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    confusion: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate a model (see `load_source`) on a split of an image folder.

    `val_split` and `seed` draw the val split of a folder without val/ (by default 0.2 and 0);
    a model that records the split it was validated on gets that one (`data.splits`).
    `confusion`: where the confusion matrix will go, checked against every image read."""
    from ghostspec.data.pipeline import check_samples, eval_dataset
    from ghostspec.data.splits import split_for_model
    from ghostspec.files import check_not_an_input

    if batch_size < 1:
        raise _error("--batch-size", f"{batch_size} is not a positive batch size")
    record = _recorded_split(source) if split == "val" else None
    chosen = split_for_model(data, record, val_split=val_split, seed=seed, model=str(source))
    folder = chosen.folder
    if chosen.note:
        (echo or _stderr)(chosen.note)
    if split not in folder.splits:
        raise _error(
            folder.root,
            f"has no {split}/ split (it has {', '.join(sorted(folder.splits))})",
            f"add {folder.root}/{split}/<class>/ images, or choose another --split",
        )
    samples = folder.splits[split]
    if not samples:
        raise _error(folder.root, f"the {split} split holds no images")
    if confusion is not None:  # every image of the folder, by inode: a hard link is one too
        check_not_an_input(confusion, [s.path for split in folder.splits.values() for s in split])
    checked = check_samples(samples, strict=strict)  # before loading the model: fail early
    loaded = load_source(source, weights=weights, overrides=overrides)
    outputs = _output_classes(loaded)
    names, mapping = label_map(loaded.classes, folder.classes, outputs, folder.root)
    dataset = eval_dataset(
        checked,
        size=loaded.input_size,
        channels=loaded.channels,
        mean=loaded.mean,
        std=loaded.std,
        crop_pct=loaded.crop_pct,
        batch=batch_size,
        strict=strict,
    )
    out, labels = predict(loaded.run, dataset)
    if len(labels) == 0:
        raise _error(folder.root, f"none of the {split} images could be decoded")
    result = metrics(out, mapping[labels], names, from_logits=not loaded.probabilities)
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


def write_confusion(
    result: Evaluation, target: str | Path, inputs: Sequence[str | Path | None] = ()
) -> Path:
    """The confusion matrix as a PNG (matplotlib, Agg), written atomically; never over one of
    `inputs` or inside one of their folders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ghostspec.files import write_with

    path = check_png_target(target, inputs)
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
        write_with(path, lambda temp: fig.savefig(temp, format="png", dpi=100), inputs=inputs)
    finally:
        plt.close(fig)
    return path
