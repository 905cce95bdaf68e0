"""What int8 quantization costs in accuracy: the int8 TFLite model's top-1 on a labelled image
folder's validation split against the float Keras model's, on the same images.

Both models see the same tensors (`data.pipeline.eval_dataset`: the evaluation preprocessing of
`data.images`), and both are scored by `ghostspec.evaluate.metrics`, the one computation of
top-1 that `evaluate` uses too. The images and their classes are checked before any model is
built; the class check against the model follows as soon as the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghostspec.data.pipeline import DEFAULT_VAL_SPLIT, Checked, ImageFolder, check_samples, discover
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.needs import require_tensorflow

SPLIT = "val"


@dataclass(frozen=True)
class EvalData:
    """The validation images of a labelled folder, checked, and where they came from."""

    folder: ImageFolder
    checked: Checked
    flag: str  # the argument that named the folder, for messages
    held_out: str | None = None  # how val was split off, when it is not a val/ folder


@dataclass(frozen=True)
class QuantizedAccuracy:
    """int8 and float top-1 (and top-5) on the same `count` validation images."""

    data: str
    held_out: str | None
    count: int
    int8_top1: float
    float_top1: float
    int8_top5: float
    float_top5: float
    agreement: float  # share of images where both models predict the same class
    skipped: int = 0  # images that could not be decoded

    @property
    def points(self) -> float:
        """The int8 model's top-1 minus the float model's, in percentage points."""
        return (self.int8_top1 - self.float_top1) * 100.0

    def line(self) -> str:
        skipped = f", {self.skipped} unreadable skipped" if self.skipped else ""
        held_out = f", {self.held_out}" if self.held_out else ""
        return (
            f"int8 top-1 {self.int8_top1:.3f} vs float {self.float_top1:.3f} on {self.count} "
            f"{SPLIT} images of {self.data}{held_out} ({self.points:+.1f} points{skipped})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "split": SPLIT,
            "held_out": self.held_out,
            "images": self.count,
            "skipped": self.skipped,
            "int8_top1": self.int8_top1,
            "float_top1": self.float_top1,
            "top1_points": self.points,
            "int8_top5": self.int8_top5,
            "float_top5": self.float_top5,
            "agreement": self.agreement,
        }


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def eval_data(
    root: str | Path, *, flag: str, val_split: float | None = None, seed: int = 0
) -> EvalData:
    """The validation split of a labelled image folder (`data.pipeline.discover`), every image
    checked up front (unreadable ones are reported and skipped). Raises SpecError."""
    folder = discover(root, val_split=val_split, seed=seed)
    samples = folder.splits.get(SPLIT, ())
    if not samples:
        raise _error(
            folder.root,
            f"the {SPLIT} split holds no images, so int8 and float accuracy cannot be compared",
            f"add {folder.root}/{SPLIT}/<class>/ images, or pass --val-split 0.2",
        )
    held_out = None
    if folder.layout == "flat" or val_split is not None:
        share = DEFAULT_VAL_SPLIT if val_split is None else val_split
        held_out = f"a {share:g} share held out with seed {seed}"
    return EvalData(folder, check_samples(samples), flag, held_out)


def is_classifier(model: Any) -> bool:
    """True when the model has one output of class scores [N, classes]: not a backbone's
    feature maps, nor its pooled features (`keras.modelfile.pooled_output`)."""
    from ghostspec.keras.modelfile import pooled_output

    if len(model.outputs) != 1:
        return False
    shape = model.outputs[0].shape
    return len(shape) == 2 and shape[-1] is not None and pooled_output(model) is None


def label_map(data: EvalData, model: Any, classes: tuple[str, ...] | None) -> np.ndarray:
    """Data label -> model output index, or a SpecError when the model's classes and the data's
    differ (in count, or by name when the model knows its class names)."""
    from ghostspec.data import scoring as evaluate

    if not is_classifier(model):
        raise _error(
            data.flag,
            "the model does not end in class scores (it is a backbone), so its accuracy on "
            f"{data.folder.root} cannot be measured",
            "drop --eval-data, or export a classifier",
        )
    try:
        outputs = int(model.outputs[0].shape[-1])
        _, mapping = evaluate.label_map(classes, data.folder.classes, outputs, data.folder.root)
    except SpecError as err:
        first = err.diagnostics[0]
        known = first.hint if first.hint and first.hint.startswith("the model knows") else None
        hint = "compare on images of the model's own classes: --eval-data DIR"
        raise _error(
            f"{data.flag} {data.folder.root}", first.message, f"{hint}; {known}" if known else hint
        ) from None
    return mapping


def compare(
    float_model: Any,
    tflite: bytes,
    data: EvalData,
    mapping: np.ndarray,
    *,
    size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    crop_pct: float,
    batch: int = 32,
) -> QuantizedAccuracy:
    """Run the float Keras model and the int8 TFLite model on the same preprocessed validation
    images and score both with `ghostspec.evaluate.metrics`."""
    require_tensorflow("int8 accuracy (TFLite)")
    import tensorflow as tf

    from ghostspec.data import scoring as evaluate
    from ghostspec.data.pipeline import eval_dataset
    from ghostspec.deploy.tflite import tflite_runner

    channels = int(float_model.inputs[0].shape[-1])
    dataset = eval_dataset(
        data.checked,
        size=size,
        channels=channels,
        mean=mean,
        std=std,
        crop_pct=crop_pct,
        batch=batch,
    )
    step = tf.function(lambda x: float_model(x, training=False), reduce_retracing=True)
    run = tflite_runner(tflite)
    floats, quantized, labels = [], [], []
    for x, y in dataset:
        floats.append(np.asarray(step(x), np.float32))
        quantized.append(run(x.numpy()))
        labels.append(y.numpy())
    if not labels:
        raise _error(data.folder.root, f"none of the {SPLIT} images could be decoded")
    y = mapping[np.concatenate(labels)]
    f_out, q_out = np.concatenate(floats), np.concatenate(quantized)
    names = tuple(str(i) for i in range(f_out.shape[1]))
    # only top-1 and top-5 are used, which do not depend on logits or probabilities; logits
    # keep the unused loss finite when int8 rounds every probability of an image to zero
    f = evaluate.metrics(f_out, y, names, from_logits=True)
    q = evaluate.metrics(q_out, y, names, from_logits=True)
    agreement = float(np.mean(f_out.argmax(1) == q_out.argmax(1)))
    return QuantizedAccuracy(
        data=str(data.folder.root),
        held_out=data.held_out,
        count=f.count,
        int8_top1=q.top1,
        float_top1=f.top1,
        int8_top5=q.top5,
        float_top5=f.top5,
        agreement=agreement,
        skipped=len(data.folder.splits[SPLIT]) - f.count,
    )
