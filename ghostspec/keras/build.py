"""A spec, Spec or Plan to a keras.Model: the front phases, then the backend's builder."""

from __future__ import annotations

from pathlib import Path

import keras

from ghostspec.keras.fusion import PLAN_ATTRIBUTE
from ghostspec.keras.model import build_model
from ghostspec.keras.weights import load_weights
from ghostspec.plan.ir import Plan
from ghostspec.plan.pipeline import SpecSource, plan


def build(
    source: SpecSource | Plan,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    weights: str | Path | None = None,
) -> keras.Model:
    """Compile a spec (path, Spec or Plan) into a keras.Model, optionally loading weights."""
    result = source if isinstance(source, Plan) else plan(source, overrides)
    model = build_model(result)
    if weights is not None:
        load_weights(model, result, weights)
    setattr(model, PLAN_ATTRIBUTE, result)  # lets fuse() match branches without the spec
    return model
