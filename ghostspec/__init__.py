"""ghostspec: compile declarative GhostNet-family specs into Keras 3 models.

Importing this package, loading, validating, lowering and costing never import TensorFlow or
Keras; only `build` and the exporters do, lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec import models
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.models import create_model
from ghostspec.plan import Plan, lower, make_divisible
from ghostspec.source import Document, load_document
from ghostspec.spec import Spec
from ghostspec.validate import size_problems, spec_from_document

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
]

__version__ = "0.1.0"

SpecSource = str | Path | Spec


def load(
    source: str | Path, overrides: list[str] | tuple[str, ...] = (), *, text: str | None = None
) -> Spec:
    """Read and validate a spec file (or `text`, named `source`). Raises SpecError."""
    return _load(source, overrides, text)[0]


def _load(
    source: str | Path, overrides: list[str] | tuple[str, ...], text: str | None
) -> tuple[Spec, Document]:
    doc = load_document(source, overrides, text=text)
    return spec_from_document(doc), doc


def plan(
    source: SpecSource,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    input_size: tuple[int | None, int | None] | None = None,
) -> Plan:
    """Load, validate and lower a spec (a path or a Spec) into a Plan. Raises SpecError."""
    if isinstance(source, Spec):
        if overrides:
            raise ValueError("overrides apply to spec files; change the Spec object instead")
        return lower(source, input_size)
    spec, doc = _load(source, overrides, None)
    result = lower(spec, input_size)
    problems = size_problems(result, doc)
    if problems:
        raise SpecError(problems)
    return result


def build(
    source: SpecSource | Plan,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    weights: str | Path | None = None,
) -> keras.Model:
    """Compile a spec (path, Spec or Plan) into a keras.Model, optionally loading weights."""
    result = source if isinstance(source, Plan) else plan(source, overrides)
    from ghostspec.keras import build_model

    model = build_model(result)
    if weights is not None:
        from ghostspec.weights import load_weights

        load_weights(model, result, weights)
    from ghostspec.fusion import PLAN_ATTRIBUTE

    setattr(model, PLAN_ATTRIBUTE, result)  # lets fuse() match branches without the spec
    return model


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
    from ghostspec.fusion import fuse as _fuse

    return _fuse(model, source, batch_norm)


def export_state_dict(model: Any, source: SpecSource | Plan | None = None) -> dict[str, Any]:
    """The model's weights as a reference-layout state dict of numpy arrays (PyTorch layouts)."""
    from ghostspec.weights import export_state_dict as _export

    return _export(model, source)
