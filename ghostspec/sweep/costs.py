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
from ghostspec.language.spec import Block, Spec
from ghostspec.language.sweep import LoadedSweep
from ghostspec.language.validate import semantic_problems
from ghostspec.plan.checks import network_problems, size_problems
from ghostspec.plan.ir import Plan, reference_size
from ghostspec.plan.lower import BlockMemo, lower
from ghostspec.plan.memory import FLOAT, ActivationMemo, plan_footprint
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


MEMO_LIMIT = 50_000  # entries in each memo before it starts afresh (a bound on memory)


class CostModel:
    """Costs variants of one sweep's base spec. Variants share most of their blocks, so the
    bottlenecks lowered (and their activations counted) for one are reused by the next: the
    plan's own nodes, shared, so every figure is the plan's exactly."""

    def __init__(self, loaded: LoadedSweep) -> None:
        self.source = loaded.spec_source
        self.doc: Document = loaded.doc  # positions are never read on the fast path
        self.cache: dict[str, Cost] = {}
        self.blocks: BlockMemo = {}
        self.activations: ActivationMemo = {}
        self.rows: dict[Any, Any] = {}  # a block's data -> its validated Block (or the data)
        # the same by the row object itself (kept alive, so its id stays its own): variants
        # share the base spec's rows, which are never written (space.py copies on write)
        self.row_ids: dict[int, tuple[Any, Any]] = {}

    def cost(self, variant: Variant) -> Cost:
        """The variant's figures; a variant seen before (same overrides) is not lowered again."""
        key = variant.text
        if key not in self.cache:
            self.cache[key] = self._cost(variant)
        return self.cache[key]

    def _cost(self, variant: Variant) -> Cost:
        for memo in (self.rows, self.blocks, self.activations):
            if len(memo) > MEMO_LIMIT:
                memo.clear()
        try:
            spec = Spec.model_validate(self._with_blocks(variant.data))
        except ValidationError:
            return self._slow(variant)
        if semantic_problems(spec, self.doc) or network_problems(spec, self.doc):
            return self._slow(variant)
        try:
            plan = lower(spec, memo=self.blocks)
        except (SpecError, ValueError, ZeroDivisionError):
            return self._slow(variant)
        if size_problems(plan, self.doc):
            return self._slow(variant)
        return self._figures(plan, spec)

    def _with_blocks(self, data: dict[str, Any]) -> dict[str, Any]:
        """The variant's data with each block row replaced by its validated Block, validated
        once per distinct row: pydantic takes a model instance as it is, so the Spec is
        validated exactly as from the rows, at a fraction of the cost."""
        stages = data.get("stages")
        if not isinstance(stages, list) or not all(isinstance(s, list) for s in stages):
            return data
        return {**data, "stages": [[self._block(row) for row in stage] for stage in stages]}

    def _block(self, row: Any) -> Any:
        known = self.row_ids.get(id(row))
        if known is not None and known[0] is row:
            return known[1]
        key = _frozen(row)
        if key is None:
            return row
        block = self.rows.get(key)
        if block is None:
            try:
                block = Block.model_validate(row)
            except ValidationError:  # left to the Spec's validation, which locates it
                block = row
            self.rows[key] = block
        if len(self.row_ids) > MEMO_LIMIT:
            self.row_ids.clear()
        self.row_ids[id(row)] = (row, block)
        return block

    def _figures(self, plan: Plan, spec: Spec) -> Cost:
        if plan.macs is None:  # any input size: costed at the reference size, as inspect does
            plan = lower(spec, reference_size(plan.input_shape[:2]), memo=self.blocks)
        footprint = plan_footprint(plan, self.activations)
        memory = FLOAT * (footprint.peak + footprint.weights)
        return Cost(params=plan.params, macs=plan.macs, memory=memory, spec=spec)

    def _slow(self, variant: Variant) -> Cost:
        """`inspect SPEC --set ...` exactly: its first diagnostic is the trial's message."""
        try:
            plan = plan_from_file(self.source, variant.spec)
        except SpecError as err:
            first = err.diagnostics[0]
            where = f"{first.path}: " if first.path else ""
            return Cost(problem=f"{where}{first.message}")
        return self._figures(plan, Spec.model_validate(variant.data))


_SCALARS = frozenset({int, float, str, bool, type(None)})


def _frozen(value: Any) -> Any:
    """A hashable key for plain YAML data, telling 1, 1.0 and true apart; None if it has
    anything else."""
    if type(value) is list:  # the common case, a compact row
        types = tuple(map(type, value))
        if all(t in _SCALARS for t in types):
            return (types, tuple(value))
    if value is None or isinstance(value, bool | int | float | str):
        return (type(value), value)
    if isinstance(value, list):
        items = [_frozen(v) for v in value]
        return None if None in items else (list, tuple(items))
    if isinstance(value, dict):
        pairs = [(k, _frozen(v)) for k, v in value.items() if isinstance(k, str)]
        if len(pairs) != len(value) or any(v is None for _, v in pairs):
            return None
        return (dict, tuple(sorted(pairs)))
    return None


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
