"""ghostspec: compile declarative GhostNet-family specs into Keras 3 models.

Importing this package, loading, validating, lowering and costing never import TensorFlow or
Keras; only `build` and the exporters do, lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec import models
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.source import Document
from ghostspec.language.spec import Spec
from ghostspec.language.validate import load_spec_document as load_document
from ghostspec.models import create_model
from ghostspec.plan.ir import Plan, make_divisible
from ghostspec.plan.lower import lower
from ghostspec.plan.pipeline import load, plan

if TYPE_CHECKING:
    import keras

__all__ = [
    "Diagnostic",
    "Document",
    "Plan",
    "Spec",
    "SpecError",
    "build",
    "create_model",
    "export_state_dict",
    "fuse",
    "load",
    "load_document",
    "lower",
    "make_divisible",
    "models",
    "plan",
    "predict",
]

__version__ = "0.1.0"

SpecSource = str | Path | Spec


def build(
    source: SpecSource | Plan,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    weights: str | Path | None = None,
) -> keras.Model:
    """Compile a spec (path, Spec or Plan) into a keras.Model, optionally loading weights."""
    from ghostspec.keras.build import build as _build

    return _build(source, overrides, weights=weights)


def fuse(
    model: keras.Model, source: SpecSource | Plan | None = None, *, batch_norm: bool = False
) -> keras.Model:
    """The deploy (inference) model: same outputs in inference mode, fewer layers.

    Every GhostNetV3 re-parameterisable branch set becomes one conv; with `batch_norm=True`
    every other BatchNorm is folded into the conv before it too, which leaves a model without
    BatchNorm layers (for inference and export, not for training). `source` is the spec (or
    plan) the model was built from; models from `build` in this process carry their plan and
    need none. A model with nothing to fold is returned unchanged.
    """
    from ghostspec.keras.fusion import fuse as _fuse

    resolved = source if source is None or isinstance(source, Plan) else plan(source)
    return _fuse(model, resolved, batch_norm)


def export_state_dict(model: Any, source: SpecSource | Plan | None = None) -> dict[str, Any]:
    """The model's weights as a reference-layout state dict of numpy arrays (PyTorch layouts)."""
    from ghostspec.keras.weights import export_state_dict as _export

    return _export(model, source)


def predict(
    model: str | Path,
    images: str | Path | list[str | Path] | tuple[str | Path, ...],
    *,
    top_k: int | None = None,
    batch: int = 32,
) -> list[dict[str, Any]]:
    """Top-k classes of images (files, folders, globs) with a run folder, a .keras file or a
    .tflite or .onnx exported by ghostspec: one record per readable image, the same as
    `ghostspec predict --format json` prints (`top_k` None: 5, or all classes when fewer).
    Unreadable files are logged and skipped."""
    from ghostspec.predictor import predict as _predict

    result = _predict(model, images, top_k=top_k, batch=batch)
    return [record.to_json() for record in result.records]
