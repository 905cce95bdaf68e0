"""Cost of a variant from its plan: parameters, multiply-adds and the memory estimate.

The fast path validates the variant's plain data and lowers it, skipping the file reading that
`inspect` does (the base spec was read once); the slow path, taken only when a check fails, runs
`inspect`'s own pipeline on the base spec with the variant's `--set` overrides, so an invalid
variant is reported with the planner's located message. Neither imports a framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ghostspec.diagnostics import SpecError
from ghostspec.language.source import Document
from ghostspec.language.spec import Spec
from ghostspec.language.sweep import LoadedSweep
from ghostspec.language.validate import semantic_problems
from ghostspec.plan.checks import network_problems, size_problems
from ghostspec.plan.ir import Plan, reference_size
from ghostspec.plan.lower import lower
from ghostspec.plan.memory import FLOAT, plan_footprint
from ghostspec.plan.pipeline import plan as plan_from_file
from ghostspec.sweep.space import Variant


@dataclass(frozen=True)
class Cost:
    """What the plan says about a variant; `problem` (the planner's message) when it is invalid."""

    params: int | None = None
    macs: int | None = None
    memory: int | None = None  # bytes: the peak activations and the weights, float32
    problem: str | None = None
    spec: Spec | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None


def _figures(plan: Plan, spec: Spec) -> Cost:
    if plan.macs is None:  # any input size: costed at the reference size, as inspect does
        plan = lower(spec, reference_size(plan.input_shape[:2]))
    footprint = plan_footprint(plan)
    memory = FLOAT * (footprint.peak + footprint.weights)
    return Cost(params=plan.params, macs=plan.macs, memory=memory, spec=spec)


class CostModel:
    """Costs variants of one sweep's base spec."""

    def __init__(self, loaded: LoadedSweep) -> None:
        self.source = loaded.spec_source
        self.doc: Document = loaded.doc  # positions are never read on the fast path
        self.cache: dict[str, Cost] = {}

    def cost(self, variant: Variant) -> Cost:
        """The variant's figures; a variant seen before (same overrides) is not lowered again."""
        key = variant.text
        if key not in self.cache:
            self.cache[key] = self._cost(variant)
        return self.cache[key]

    def _cost(self, variant: Variant) -> Cost:
        try:
            spec = Spec.model_validate(variant.data)
        except ValidationError:
            return self._slow(variant)
        if semantic_problems(spec, self.doc) or network_problems(spec, self.doc):
            return self._slow(variant)
        try:
            plan = lower(spec)
        except (SpecError, ValueError, ZeroDivisionError):
            return self._slow(variant)
        if size_problems(plan, self.doc):
            return self._slow(variant)
        return _figures(plan, spec)

    def _slow(self, variant: Variant) -> Cost:
        """`inspect SPEC --set ...` exactly: its first diagnostic is the trial's message."""
        try:
            plan = plan_from_file(self.source, variant.spec)
        except SpecError as err:
            first = err.diagnostics[0]
            where = f"{first.path}: " if first.path else ""
            return Cost(problem=f"{where}{first.message}")
        return _figures(plan, Spec.model_validate(variant.data))


def cost_batch(loaded: LoadedSweep, variants: list[Variant]) -> list[Cost]:
    """Costs of many variants (a worker process's share), specs dropped for the trip back."""
    model = CostModel(loaded)
    out = []
    for variant in variants:
        c = model.cost(variant)
        out.append(Cost(c.params, c.macs, c.memory, c.problem))
    return out


def spec_key(spec: Any) -> str:
    """A key for the resolved spec (latency is cached by it)."""
    import hashlib
    import json

    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["Cost", "CostModel", "cost_batch", "spec_key"]
