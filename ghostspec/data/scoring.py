"""Scoring model outputs against labels: top-1, top-5, loss, per-class accuracy, confusion.

The one computation every accuracy figure comes from (evaluate, export's int8 comparison,
predict on a labelled split). It takes numpy outputs and labels and imports no framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError

EPSILON = 1e-7  # Keras' backend epsilon, used to clip probabilities


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


@dataclass(frozen=True)
class Evaluation:
    """The figures of one evaluation; `confusion[i, j]` counts images of class i predicted j."""

    classes: tuple[str, ...]
    count: int
    top1: float
    top5: float
    loss: float
    per_class: tuple[float | None, ...]  # accuracy per class; None where it has no images
    confusion: np.ndarray
    from_logits: bool
    skipped: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "skipped": self.skipped,
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "from_logits": self.from_logits,
            "classes": list(self.classes),
            "per_class": [
                {"class": name, "images": int(self.confusion[i].sum()), "accuracy": acc}
                for i, (name, acc) in enumerate(zip(self.classes, self.per_class, strict=True))
            ],
            "confusion": self.confusion.tolist(),
        }


def is_probability_model(model: Any) -> bool:
    """True when the model's last layer ends in softmax (its outputs are probabilities)."""
    layer = model.layers[-1] if model.layers else None
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    return name == "softmax" or type(layer).__name__ == "Softmax"


def metrics(
    outputs: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, from_logits: bool
) -> Evaluation:
    """The figures from model outputs [N, K] and integer labels [N] (float64 throughout)."""
    out = np.asarray(outputs, np.float64)
    y = np.asarray(labels, np.int64)
    n, k = out.shape
    if from_logits:
        shifted = out - out.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    else:
        probs = out / out.sum(axis=1, keepdims=True)
        log_probs = np.log(np.clip(probs, EPSILON, 1.0 - EPSILON))
    loss = float(-log_probs[np.arange(n), y].mean())
    predicted = out.argmax(axis=1)
    top = min(5, k)
    # in top 5: fewer than 5 classes score strictly higher than the true one (ties count in)
    true_score = out[np.arange(n), y][:, None]
    top5 = float(((out > true_score).sum(axis=1) < top).mean())
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (y, predicted), 1)
    per_class = tuple(
        float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None
        for i in range(len(classes))
    )
    return Evaluation(
        classes=tuple(classes),
        count=n,
        top1=float((predicted == y).mean()),
        top5=top5,
        loss=loss,
        per_class=per_class,
        confusion=confusion,
        from_logits=from_logits,
    )


def label_map(
    model_classes: tuple[str, ...] | None, data_classes: tuple[str, ...], outputs: int, data: Path
) -> tuple[tuple[str, ...], np.ndarray]:
    """The class names in the model's index order and data label -> model index."""
    if model_classes is not None:
        if len(model_classes) != outputs:
            raise _error(
                data,
                f"the model has {outputs} outputs but its class list names {len(model_classes)}",
            )
        unknown = [c for c in data_classes if c not in model_classes]
        if unknown:
            raise _error(
                data,
                f"the data has classes the model was not trained on: "
                f"{', '.join(map(repr, unknown[:10]))}",
                f"the model knows {', '.join(map(repr, model_classes[:10]))}"
                + (" ..." if len(model_classes) > 10 else ""),
            )
        index = {name: i for i, name in enumerate(model_classes)}
        return model_classes, np.array([index[c] for c in data_classes], np.int64)
    if len(data_classes) != outputs:
        raise _error(
            data,
            f"the data has {len(data_classes)} classes but the model has {outputs} outputs",
            "evaluate on the data the model was trained for, or build the spec with "
            f"--set head.classes={len(data_classes)} and train it",
        )
    return data_classes, np.arange(len(data_classes))
