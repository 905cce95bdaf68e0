"""The sweep language, version 1: a space of variants of one spec (and recipe) to search.

A sweep is the third language on the spec's machinery: read by source.py (positions, `--set`
overrides), validated by pydantic models that hold every default, and reported through the same
located diagnostics. Its `space` maps override paths (exactly what follows `--set`, or `--hp` after
a `recipe.` prefix) to one decision each; `*` in a path applies one decision at every place it
matches. Paths are checked against the base spec and recipe here, so a misspelt place is a located
error before any trial runs; what a variant does to the network is the plan's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.languages import RECIPE, SPEC, SWEEP
from ghostspec.language.recipe import load_recipe, resolve_source
from ghostspec.language.source import Document, load_document
from ghostspec.language.spec import Name, Spec, _not_bool, integer, number
from ghostspec.language.validate import load_spec_document, validation_diagnostics

VERSION_KEY = SWEEP.version_key
WILDCARD = "*"
RECIPE_PREFIX = "recipe"
MAX_VALUES = 10_000  # choices in one decision, or grid points of one range

PathPart = str | int
KeyPath = tuple[PathPart, ...]
Measure = Literal["params", "macs", "memory", "latency_ms", "val_top1"]
Direction = Literal["minimize", "maximize"]
# measures that need a trained model (and so an image folder) or a measured one
NEEDS_DATA: frozenset[str] = frozenset({"val_top1"})
MEASURED: frozenset[str] = frozenset({"latency_ms"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise PydanticCustomError(
            "range_order",
            "the range [{lo}, {hi}] is backwards: the first value must not exceed the second",
            {"lo": pair[0], "hi": pair[1]},
        )
    return pair


Bound = Annotated[float, *number(ge=-1e12, le=1e12)]


class Choice(_Model):
    """One of the listed values (any YAML value: a number, a name, a whole row)."""

    choice: Annotated[list[Any], Field(min_length=1, max_length=MAX_VALUES)] = Field(
        description="The values to choose from."
    )


class Range(_Model):
    """A number between two bounds, both included; with `step`, on the grid lo, lo+step, ..."""

    range: Annotated[tuple[Bound, Bound], AfterValidator(_ordered)] = Field(
        description="[low, high], both included."
    )
    step: Annotated[float, *number(gt=0.0, le=1e12)] | None = Field(
        None,
        description="Grid spacing from low; whole numbers throughout give whole numbers. "
        "null: any value (not for grid search).",
    )

    @property
    def whole(self) -> bool:
        """Whether the values are whole numbers (the bounds and step are written as such)."""
        lo, hi = self.range
        return all(float(v).is_integer() for v in (lo, hi, self.step if self.step else 0.5))

    def grid(self) -> list[float | int]:
        """Every value of the inclusive grid; [] without a step."""
        if self.step is None:
            return []
        lo, hi = self.range
        count = math.floor((hi - lo) / self.step + 1e-9) + 1
        digits = max(0, -math.floor(math.log10(self.step))) + 6 if self.step < 1 else 6
        values = [round(lo + i * self.step, digits) for i in range(count)]
        return [int(v) for v in values] if self.whole else values


class LogRange(_Model):
    """A positive number drawn evenly on a log scale between two bounds (a learning rate)."""

    log_range: Annotated[
        tuple[Annotated[float, *number(gt=0.0)], Annotated[float, *number(gt=0.0)]],
        AfterValidator(_ordered),
    ] = Field(description="[low, high], both positive; not for grid search.")


class Depth(_Model):
    """How many blocks a stage keeps: its first n, or its last block repeated (stride 1)."""

    depth: Annotated[
        list[Annotated[int, *integer(ge=1, le=64)]], Field(min_length=1, max_length=64)
    ] = Field(description="Block counts to choose from; the path names a stage, e.g. stages.6.")


FORMS: dict[str, type[BaseModel]] = {
    "choice": Choice,
    "range": Range,
    "log_range": LogRange,
    "depth": Depth,
}


def _form(value: Any) -> str | None:
    """The union tag, in brackets so that error locations drop it (validate._strip_loc)."""
    if isinstance(value, dict):
        for key in FORMS:
            if key in value:
                return f"decision[{key}]"
    for key, model in FORMS.items():
        if type(value) is model:
            return f"decision[{key}]"
    return None


Decision = Annotated[
    Annotated[Choice, Tag("decision[choice]")]
    | Annotated[Range, Tag("decision[range]")]
    | Annotated[LogRange, Tag("decision[log_range]")]
    | Annotated[Depth, Tag("decision[depth]")],
    Discriminator(
        _form,
        custom_error_type="decision",
        custom_error_message="expected {choice: [...]}, {range: [lo, hi], step: s}, "
        "{log_range: [lo, hi]} or {depth: [n, ...]}",
    ),
]


class Constraints(_Model):
    """Upper bounds a variant must meet; one over any bound is recorded as `over`, not run."""

    params: Annotated[int, *integer(ge=1)] | None = Field(
        None, description="At most this many parameters."
    )
    macs: Annotated[int, *integer(ge=1)] | None = Field(
        None, description="At most this many multiply-adds per image."
    )
    memory: Annotated[int, *integer(ge=1)] | None = Field(
        None, description="At most this many bytes of estimated inference memory (peak)."
    )
    latency_ms: Annotated[float, *number(gt=0.0)] | None = Field(
        None, description="At most this many milliseconds, measured as `latency:` says."
    )


class Latency(_Model):
    """How latency is measured: profile's machinery on the deploy form, in this process."""

    threads: Annotated[int, *integer(ge=1, le=256)] = Field(1, description="Interpreter threads.")
    quantize: Literal["none", "int8"] = Field("none", description="none or int8 (TFLite).")
    repeats: Annotated[int, *integer(ge=1, le=10_000)] = Field(
        20, description="Timed runs per variant."
    )


class Budget(_Model):
    """When the search stops: after `trials` trials or `minutes` of wall time."""

    trials: Annotated[int, *integer(ge=1, le=10_000_000)] = Field(100, description="Trials to run.")
    minutes: Annotated[float, *number(gt=0.0)] | None = Field(
        None, description="Stop starting trials after this."
    )


class Sweep(_Model):
    """A search over variants of one spec (and recipe)."""

    ghostspec_sweep: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(
        alias=VERSION_KEY, description="Format version of the sweep language."
    )
    name: Name | None = Field(None, description="A label; the default sweep folder's name.")
    description: str | None = Field(None, description="Free text.")
    spec: Annotated[str, Field(min_length=1)] = Field(
        description="The base spec: a path (relative to this file) or a registered name."
    )
    recipe: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="The recipe for trained trials: a path or a shipped name."
    )
    space: Annotated[dict[str, Decision], Field(min_length=1)] = Field(
        description="Override paths (recipe paths start with `recipe.`; `*` matches every "
        "index) mapped to a decision."
    )
    constraints: Constraints = Field(Constraints(), description="Bounds every variant meets.")
    objectives: Annotated[dict[Measure, Direction], Field(min_length=1)] = Field(
        {"macs": "minimize"}, description="Measures to minimize or maximize."
    )
    budget: Budget = Field(Budget(), description="How many trials, for how long.")
    search: Literal["grid", "random", "tpe", "nsga2"] = Field(
        "tpe",
        description="grid (every combination), random, tpe (Optuna's TPE) or nsga2 "
        "(Optuna's NSGA-II, for several objectives).",
    )
    pruner: Literal["median", "none"] = Field(
        "median", description="Stop trained trials whose val_top1 trails the median (Optuna)."
    )
    seed: Annotated[int, *integer(ge=0, le=2**32 - 1)] = Field(
        0, description="Seed of the sampler."
    )
    latency: Latency = Field(Latency(), description="How latency_ms is measured.")
    best: Annotated[int, *integer(ge=0, le=100)] = Field(
        3, description="How many best-N.yaml files to write."
    )

    def measures(self) -> set[str]:
        """Every measure the sweep reads: objectives and bounded constraints."""
        bounded = {k for k, v in self.constraints.model_dump().items() if v is not None}
        return set(self.objectives) | bounded


@dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep with what it refers to: the base spec's document and the recipe."""

    sweep: Sweep
    doc: Document
    spec_source: str  # what `train`, `inspect` and `--set` take: a path or a registered name
    spec_data: dict[str, Any]  # the base spec as plain data, registered name's settings applied
    spec_overrides: tuple[str, ...]  # a registered name's own settings (name=, width=)
    recipe_source: str | None
    recipe_data: dict[str, Any] | None  # the validated recipe, every default written out


def parse_key(key: str) -> tuple[Literal["spec", "recipe"], KeyPath]:
    """`stages.3.*.2` -> ("spec", ("stages", 3, "*", 2)); `recipe.optimizer.lr` -> recipe."""
    parts: list[PathPart] = [
        int(p) if p.isascii() and p.isdigit() else p for p in key.strip().split(".")
    ]
    if parts and parts[0] == RECIPE_PREFIX:
        return "recipe", tuple(parts[1:])
    return "spec", tuple(parts)


def expand(data: Any, path: KeyPath) -> list[KeyPath]:
    """Every concrete path in `data` that `path` (with `*` wildcards) matches, in order."""
    out: list[KeyPath] = []

    def walk(node: Any, rest: KeyPath, done: KeyPath) -> None:
        if not rest:
            out.append(done)
            return
        head, tail = rest[0], rest[1:]
        if head == WILDCARD:
            items: Iterator[tuple[PathPart, Any]] = (
                iter(enumerate(node)) if isinstance(node, list) else iter(())
            )
            for index, child in items:
                walk(child, tail, (*done, index))
        elif _has(node, head):
            walk(node[head], tail, (*done, head))

    walk(data, path, ())
    return out


def _has(node: Any, key: PathPart) -> bool:
    if isinstance(node, list):
        return isinstance(key, int) and 0 <= key < len(node)
    return isinstance(node, dict) and isinstance(key, str) and key in node


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def _with_defaults(doc_data: Any, full: Any) -> Any:
    """The document's data with the model's defaults filled in where the document has a mapping
    (rows stay rows), so a path to a default value exists."""
    if isinstance(doc_data, dict) and isinstance(full, dict):
        merged = {k: _with_defaults(doc_data.get(k), v) for k, v in full.items()}
        merged.update({k: v for k, v in doc_data.items() if k not in full})
        return merged
    if isinstance(doc_data, list) and isinstance(full, list) and len(doc_data) == len(full):
        return [_with_defaults(a, b) for a, b in zip(doc_data, full, strict=True)]
    return full if doc_data is None else doc_data


def _place_problems(loaded: LoadedSweep) -> list[Diagnostic]:
    """A path the spec or recipe does not have, and depth on something that is not a stage."""
    doc, sweep = loaded.doc, loaded.sweep
    spec_tree = _with_defaults(loaded.spec_data, Spec.model_validate(loaded.spec_data).model_dump())
    problems: list[Diagnostic] = []
    for key, decision in sweep.space.items():
        where = ("space", key)
        target, path = parse_key(key)
        if not path:
            problems.append(doc.diagnostic(where, "the path is empty", at_key=True))
            continue
        if target == "recipe":
            if loaded.recipe_data is None:
                problems.append(
                    doc.diagnostic(
                        where,
                        f"{key} varies the recipe, but the sweep names none",
                        "add `recipe: finetune` (or a recipe file)",
                        at_key=True,
                    )
                )
                continue
            tree: Any = loaded.recipe_data
            noun = f"recipe {loaded.recipe_source}"
        else:
            tree, noun = spec_tree, f"spec {loaded.spec_source}"
        places = expand(tree, path)
        if not places:
            problems.append(
                doc.diagnostic(
                    where,
                    f"{dotted(path)} matches nothing in the {noun}",
                    _nearest(tree, path),
                    at_key=True,
                )
            )
            continue
        if isinstance(decision, Depth) and not (
            target == "spec" and len(path) == 2 and path[0] == "stages"
        ):
            problems.append(
                doc.diagnostic(
                    where,
                    "depth applies to a stage, named as stages.N",
                    "for example stages.6: {depth: [2, 3, 4]}",
                    at_key=True,
                )
            )
        if sweep.search == "grid" and (
            isinstance(decision, LogRange) or (isinstance(decision, Range) and not decision.step)
        ):
            problems.append(
                doc.diagnostic(
                    (*where, "log_range" if isinstance(decision, LogRange) else "range"),
                    "grid search needs a finite set of values",
                    "give the range a step, or use choice",
                )
            )
        if isinstance(decision, Range) and len(decision.grid()) > MAX_VALUES:
            problems.append(
                doc.diagnostic(
                    (*where, "step"),
                    f"the range has more than {MAX_VALUES} grid points",
                    "use a larger step",
                )
            )
    return problems


def _nearest(tree: Any, path: KeyPath) -> str | None:
    """What the deepest matching part of the path offers instead."""
    node = tree
    for i, part in enumerate(path):
        if part == WILDCARD and isinstance(node, list) and node:
            node = node[0]
        elif _has(node, part):
            node = node[part]
        else:
            at = dotted(path[:i]) or "the top"
            if isinstance(node, dict):
                return f"{at} has: {', '.join(sorted(map(str, node)))}"
            if isinstance(node, list):
                return f"{at} is a list of {len(node)} (indices 0..{len(node) - 1}, or *)"
            return f"{at} is a single value"
    return None


def _sibling(sweep_file: Path, source: str) -> Path | None:
    """A path written in the sweep, read relative to the sweep's folder."""
    candidate = sweep_file.parent / source
    return candidate if candidate.exists() else None


def load_sweep(source: str | Path, overrides: Sequence[str] = ()) -> LoadedSweep:
    """Read and validate a sweep file and the spec and recipe it names. Raises SpecError."""
    doc = load_document(source, tuple(overrides), language=SWEEP, others=(SPEC, RECIPE))
    try:
        sweep = Sweep.model_validate(doc.data())
    except ValidationError as exc:
        raise SpecError(validation_diagnostics(exc, doc, Sweep)) from None
    sweep_file = Path(source)
    near = _sibling(sweep_file, sweep.spec)
    spec_source = str(near) if near is not None else sweep.spec
    try:
        spec_doc = load_spec_document(spec_source)
        spec_data = spec_doc.data()
        Spec.model_validate(spec_data)
    except SpecError as err:
        raise SpecError(
            [
                doc.diagnostic(
                    ("spec",), f"the base spec is not usable: {err.diagnostics[0].message}"
                ),
                *err.diagnostics,
            ]
        ) from None
    except ValidationError:
        raise SpecError([doc.diagnostic(("spec",), "the base spec is not a valid spec")]) from None
    recipe_source = recipe_data = None
    if sweep.recipe is not None:
        near = _sibling(sweep_file, sweep.recipe)
        recipe_source = str(near) if near is not None else str(resolve_source(sweep.recipe))
        try:
            recipe = load_recipe(recipe_source)
        except SpecError as err:
            raise SpecError(
                [doc.diagnostic(("recipe",), "the recipe is not usable"), *err.diagnostics]
            ) from None
        recipe_data = recipe.model_dump(mode="json", by_alias=True)
    loaded = LoadedSweep(
        sweep=sweep,
        doc=doc,
        spec_source=spec_source,
        spec_data=spec_data,
        spec_overrides=tuple(o.text for o in spec_doc.overrides),
        recipe_source=recipe_source,
        recipe_data=recipe_data,
    )
    problems = _place_problems(loaded)
    if problems:
        raise SpecError(problems)
    return loaded


def needs_data(loaded: LoadedSweep, has_data: bool) -> None:
    """An objective or constraint that needs a trained model without an image folder: located."""
    if has_data:
        return
    for measure in loaded.sweep.objectives:
        if measure in NEEDS_DATA:
            raise SpecError(
                [
                    loaded.doc.diagnostic(
                        ("objectives", measure),
                        f"{measure} needs trained trials, and no image folder was given",
                        "pass --data DIR (an image folder), or drop this objective",
                        at_key=True,
                    )
                ]
            )


__all__ = [
    "MEASURED",
    "NEEDS_DATA",
    "VERSION_KEY",
    "Budget",
    "Choice",
    "Constraints",
    "Depth",
    "Latency",
    "LoadedSweep",
    "LogRange",
    "Range",
    "Sweep",
    "dotted",
    "expand",
    "load_sweep",
    "needs_data",
    "parse_key",
]
