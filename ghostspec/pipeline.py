"""The phases end to end: a spec file (or a Spec) to a Plan, and a Plan to a keras.Model.

The package face (`ghostspec/__init__.py`) re-exports these; modules inside the package call them
here, so no room depends on the face.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ghostspec.diagnostics import SpecError
from ghostspec.plan import Plan, lower
from ghostspec.source import Document
from ghostspec.spec import Spec
from ghostspec.validate import load_spec_document as load_document
from ghostspec.validate import size_problems, spec_from_document

if TYPE_CHECKING:
    import keras

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
