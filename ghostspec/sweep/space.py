"""The space: decisions drawn into assignments, and an assignment written out as overrides.

A variant is the base spec with `--set` overrides (and the recipe with `--hp` ones), so every
trial is reproduced by typing its overrides: depth changes come first (a whole stage, as YAML
flow), then every other decision at each concrete place its wildcard matches in that variant.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ghostspec.language.sweep import (
    Choice,
    Depth,
    KeyPath,
    LoadedSweep,
    LogRange,
    Range,
    dotted,
    expand,
    parse_key,
)

Assignment = Mapping[str, Any]  # space key -> the value chosen (a choice's value, not its index)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CORE_WORDS = {"null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "~"}


def yaml_value(value: Any) -> str:
    """The value as typed after `--set key=`: YAML 1.2 flow (JSON for lists and mappings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and _PLAIN.fullmatch(value) and value not in _CORE_WORDS:
        return value
    return json.dumps(value, separators=(", ", ": "))


@dataclass(frozen=True)
class Variant:
    """One point of the space as overrides: `spec` for `--set`, `recipe` for `--hp`."""

    spec: tuple[str, ...]
    recipe: tuple[str, ...]
    data: dict[str, Any]  # the spec's plain data with the overrides applied

    @property
    def text(self) -> str:
        return ";".join(self.spec)

    @property
    def hp_text(self) -> str:
        return ";".join(self.recipe)


def _set(tree: Any, path: KeyPath, value: Any, owned: set[int]) -> None:
    """Set a place in a variant's data, copying each container on the way that the variant does
    not own yet: the base spec's data is shared by every variant and never written."""
    node = tree
    for key in path[:-1]:
        child = node[key]
        if id(child) not in owned:
            child = list(child) if isinstance(child, list) else dict(child)
            node[key] = child
            owned.add(id(child))
        node = child
    node[path[-1]] = copy.deepcopy(value) if isinstance(value, list | dict) else value


def _stage_of_depth(stage: list[Any], depth: int) -> list[Any]:
    """The stage's first `depth` blocks; more than it has repeats its last block at stride 1.
    The blocks kept are the base's own (shared, never written: see _set)."""
    if depth <= len(stage):
        return stage[:depth]
    extra = []
    for _ in range(depth - len(stage)):
        last = copy.deepcopy(stage[-1])
        if isinstance(last, list):
            last[3] = 1
        elif isinstance(last, dict):
            last["stride"] = 1
        extra.append(last)
    return [*stage, *extra]


def suggest(decisions: Mapping[str, Any], trial: Any) -> dict[str, Any]:
    """An assignment from an Optuna trial (choices by index, so any YAML value works); a
    function of the decisions alone, so Ray Tune's search can pickle what calls it."""
    out: dict[str, Any] = {}
    for key, decision in decisions.items():
        if isinstance(decision, Choice):
            index = trial.suggest_categorical(key, list(range(len(decision.choice))))
            out[key] = decision.choice[index]
        elif isinstance(decision, Depth):
            out[key] = trial.suggest_categorical(key, list(decision.depth))
        elif isinstance(decision, Range):
            lo, hi = decision.range
            if decision.whole and decision.step:
                out[key] = trial.suggest_int(key, int(lo), int(hi), step=int(decision.step))
            elif decision.step:
                grid = decision.grid()
                out[key] = trial.suggest_float(key, lo, grid[-1], step=decision.step)
                out[key] = min(grid, key=lambda v: abs(v - out[key]))  # float noise
            else:
                out[key] = trial.suggest_float(key, lo, hi)
        else:
            lo, hi = decision.log_range
            out[key] = trial.suggest_float(key, lo, hi, log=True)
    return out


class Space:
    """The sweep's decisions, in the order the file lists them."""

    def __init__(self, loaded: LoadedSweep) -> None:
        self.loaded = loaded
        self.decisions = dict(loaded.sweep.space)
        self.base = loaded.spec_data
        self.paths = {key: parse_key(key) for key in self.decisions}
        # override texts and depth-changed stages, by what they are made of: a sweep of
        # thousands of variants writes the same few hundred over and over
        self.texts: dict[tuple[Any, ...], str] = {}
        self.stages: dict[tuple[Any, ...], tuple[list[Any], str]] = {}
        self.places: dict[tuple[Any, ...], list[KeyPath]] = {}

    def _text(self, place: KeyPath, value: Any) -> str:
        try:
            key = (place, type(value), value)
            text = self.texts.get(key)
        except TypeError:  # an unhashable value (a whole row): written each time
            return f"{dotted(place)}={yaml_value(value)}"
        if text is None:
            if len(self.texts) > 50_000:  # continuous ranges: values rarely repeat
                self.texts.clear()
            text = self.texts[key] = f"{dotted(place)}={yaml_value(value)}"
        return text

    def _stage(self, path: KeyPath, depth: int) -> tuple[list[Any], str]:
        key = (path, depth)
        if key not in self.stages:
            stage = _stage_of_depth(self.base["stages"][path[1]], depth)
            self.stages[key] = (stage, f"{dotted(path)}={yaml_value(stage)}")
        stage, text = self.stages[key]
        return list(stage), text

    def values(self, key: str) -> list[Any]:
        """The finite values of a decision (a grid); [] for a continuous one."""
        decision = self.decisions[key]
        if isinstance(decision, Choice):
            return list(decision.choice)
        if isinstance(decision, Depth):
            return list(decision.depth)
        if isinstance(decision, Range):
            return list(decision.grid())
        return []

    def size(self) -> float:
        """How many variants the grid has (inf when a decision is continuous)."""
        total = 1.0
        for key in self.decisions:
            count = len(self.values(key))
            total *= count if count else math.inf
        return total

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every combination, the first decision varying slowest."""
        keys = list(self.decisions)
        for combo in itertools.product(*(self.values(k) for k in keys)):
            yield dict(zip(keys, combo, strict=True))

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One assignment drawn uniformly (log-uniformly for log_range)."""
        out: dict[str, Any] = {}
        for key, decision in self.decisions.items():
            finite = self.values(key)
            if finite:
                out[key] = finite[rng.randrange(len(finite))]
            elif isinstance(decision, Range):
                out[key] = rng.uniform(*decision.range)
            elif isinstance(decision, LogRange):
                lo, hi = decision.log_range
                out[key] = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return out

    def suggest(self, trial: Any) -> dict[str, Any]:
        """An assignment from an Optuna trial (choices by index, so any YAML value works)."""
        return suggest(self.decisions, trial)

    def grid_space(self) -> dict[str, list[Any]]:
        """Optuna's GridSampler space: the values suggest() asks for."""
        out: dict[str, list[Any]] = {}
        for key, decision in self.decisions.items():
            if isinstance(decision, Choice):
                out[key] = list(range(len(decision.choice)))
            else:
                out[key] = self.values(key)
        return out

    def variant(self, assignment: Assignment) -> Variant:
        """The overrides of an assignment, and the spec data they make (the base's data, with
        only the containers on the way to a changed place copied)."""
        data = dict(self.base)
        owned = {id(data)}
        spec: list[str] = []
        recipe: list[str] = []
        later: list[tuple[KeyPath, Any]] = []
        for key, value in assignment.items():
            target, path = self.paths[key]
            if target == "recipe":
                for place in expand(self.loaded.recipe_data, path):
                    recipe.append(self._text(place, value))
            elif isinstance(self.decisions[key], Depth):
                if id(data["stages"]) not in owned:
                    data["stages"] = list(data["stages"])
                    owned.add(id(data["stages"]))
                stage, text = self._stage(path, int(value))
                data["stages"][path[1]] = stage
                owned.add(id(stage))
                spec.append(text)
            else:
                later.append((path, value))
        # the places a wildcard matches depend on the data's shape, which only depth decisions
        # change while every value set is a plain scalar
        depths = tuple(v for k, v in assignment.items() if isinstance(self.decisions[k], Depth))
        scalars = all(not isinstance(v, list | dict) for _, v in later)
        for path, value in later:
            if scalars:
                shape = (path, depths)
                places = self.places.get(shape)
                if places is None:
                    places = self.places[shape] = expand(data, path)
            else:
                places = expand(data, path)
            for place in places:
                _set(data, place, value, owned)
                spec.append(self._text(place, value))
        return Variant(spec=tuple(spec), recipe=tuple(recipe), data=data)


__all__ = ["Assignment", "Space", "Variant", "suggest", "yaml_value"]
