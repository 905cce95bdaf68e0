"""The feature-extractor head: which feature maps a backbone returns (`head.features`).

A level is log2 of a map's reduction (its stride from the input): level 1 is stride 2, level 5
stride 32, as detectors count C1 to C5. `head.taps` says which map stands for a level:

- `last` (default): the output of the LAST node at that reduction, the stem or a bottleneck (for
  GhostNet 1.0x blocks.0.0, blocks.2.0, blocks.4.0, blocks.6.4, blocks.8.3: 16, 24, 40, 112, 160
  channels), so every refining block of a level is part of its feature.
- `timm`: what timm's `features_only=True` GhostNet returns: the stem conv BEFORE its BatchNorm,
  then the end of every stage whose last block has stride 2 (blocks.1, blocks.3, blocks.5,
  blocks.7: 24, 40, 80, 160). timm's `out_indices` 0 to 4 are levels 1 to 5.

An entry of `head.features` may also name a node: `conv_stem` (the stem's output), `blocks.S.I`
(a bottleneck, or `blocks.N.0`, the last 1x1 conv) or `blocks.S` (stage S's output, as timm names
it). Resolution reads the plan's nodes only (`kind`, strides, channels, sizes); it imports nothing
from the plan module, which imports `Tap` from here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

TapMode = Literal["last", "timm"]
Size = tuple[int | None, int | None]


@dataclass(frozen=True)
class Tap:
    """One output of a feature extractor: the map of `node` (its output, or with `pre_norm` its
    conv's output before the BatchNorm), with the numbers the plan knows about it."""

    name: str  # the model output's name: features_<level>, or features_<node> for a named entry
    node: str
    level: int  # log2 of the reduction
    reduction: int
    channels: int
    size: Size
    source: tuple[str | int, ...]  # the entry in the spec: ("head", "features", i)
    pre_norm: bool = False  # timm's stem map: conv_stem before bn1

    @property
    def shape(self) -> tuple[int | None, int | None, int]:
        return (self.size[0], self.size[1], self.channels)


@dataclass(frozen=True)
class Problem:
    """A head.features entry (`index`) or another head field (`key`) that cannot be resolved."""

    path: tuple[str | int, ...]
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class _Point:
    """A node that can be tapped, with its reduction and the stage it closes (if any)."""

    index: int  # position in the plan's node list
    node: Any
    reduction: int
    stage_end: int | None  # the spec stage whose last block this is (the final conv: len(stages))


def level_of(reduction: int) -> int:
    return int(math.log2(reduction))


def _stride(node: Any) -> int:
    return int(node.stride if node.kind == "bottleneck" else node.op.conv.stride)


def _points(nodes: Sequence[Any]) -> list[_Point]:
    """Stem, bottlenecks and the last 1x1 conv, each with its reduction and stage."""
    points: list[_Point] = []
    reduction = 1
    trunk = [(i, n) for i, n in enumerate(nodes) if n.kind in ("stem", "bottleneck", "conv")]
    for k, (i, node) in enumerate(trunk):
        reduction *= _stride(node)
        stage_end = None
        if node.kind == "bottleneck":
            stage = int(node.name.split(".")[1])
            following = trunk[k + 1][1].name if k + 1 < len(trunk) else ""
            if not following.startswith(f"blocks.{stage}."):
                stage_end = stage
        elif node.kind == "conv":
            stage_end = int(node.name.split(".")[1])
        points.append(_Point(i, node, reduction, stage_end))
    return points


def _level_points(points: list[_Point], mode: TapMode) -> dict[int, tuple[_Point, bool]]:
    """The map standing for each level: (point, pre_norm)."""
    chosen: dict[int, tuple[_Point, bool]] = {}
    for p in points:
        if p.node.kind == "conv":  # the last 1x1 conv is a head layer, only tapped by name
            continue
        level = level_of(p.reduction)
        if mode == "last":
            chosen[level] = (p, False)  # later nodes at the same reduction win
        elif p.node.kind == "stem":
            chosen[level] = (p, True)
        elif p.stage_end is not None and p.node.stride > 1:
            chosen[level] = (p, False)
    return chosen


def _level_range(points: list[_Point]) -> str:
    levels = sorted({level_of(p.reduction) for p in points if p.node.kind != "conv"})
    lo, hi = levels[0], levels[-1]
    return f"{lo} (stride {2**lo}) to {hi} (stride {2**hi})"


def _named(points: list[_Point], name: str) -> _Point | None:
    parts = name.split(".")
    for p in points:
        if p.node.name == name or (len(parts) == 2 and p.stage_end == int(parts[1])):
            return p
    return None


def _names(points: list[_Point]) -> list[str]:
    stages = sorted({f"blocks.{p.stage_end}" for p in points if p.stage_end is not None})
    return [p.node.name for p in points] + stages


def resolve(
    entries: Sequence[int | str], mode: TapMode, nodes: Sequence[Any]
) -> tuple[tuple[Tap, ...], int, list[Problem]]:
    """The taps of `entries` over the plan `nodes`, the index of the last node any tap needs,
    and every problem (an unknown level or node, a map tapped twice)."""
    points = _points(nodes)
    by_level = _level_points(points, mode)
    taps: list[Tap] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, bool], int] = {}
    last = 0
    for i, entry in enumerate(entries):
        path = ("head", "features", i)
        if isinstance(entry, int):
            if entry not in by_level:
                problems.append(_level_problem(entry, mode, points, path))
                continue
            point, pre_norm = by_level[entry]
            name = f"features_{entry}"
        else:
            found = _named(points, entry)
            if found is None:
                close = difflib.get_close_matches(entry, _names(points), n=1)
                problems.append(
                    Problem(
                        path,
                        f"this network has no node {entry!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else "name conv_stem, blocks.S (a stage) or blocks.S.I (a block)",
                    )
                )
                continue
            point, pre_norm = found, False
            name = f"features_{entry.replace('.', '_')}"
        key = (point.node.name, pre_norm)
        if key in seen:
            problems.append(
                Problem(
                    path,
                    f"taps {point.node.name}, already tapped by head.features[{seen[key]}]",
                    "list every map once",
                )
            )
            continue
        seen[key] = i
        node = point.node
        if pre_norm:
            channels, size = node.op.conv.cout, node.op.conv.out_size
        else:
            channels, size = node.cout, node.out_size
        taps.append(
            Tap(
                name=name,
                node=node.name,
                level=level_of(point.reduction),
                reduction=point.reduction,
                channels=channels,
                size=size,
                source=path,
                pre_norm=pre_norm,
            )
        )
        last = max(last, point.index)
    return tuple(taps), last, problems


def _level_problem(level: int, mode: TapMode, points: list[_Point], path: Any) -> Problem:
    known = {level_of(p.reduction) for p in points if p.node.kind != "conv"}
    if level in known and mode == "timm":
        have = sorted(_level_points(points, "timm"))
        last = _level_points(points, "last")[level][0].node.name
        return Problem(
            path,
            f"taps: timm has no map at level {level} (stride {2**level}): timm taps the stem and "
            "the end of every stage whose last block has stride 2, here levels "
            + ", ".join(map(str, have)),
            f"use taps: last, or name the node to tap, e.g. {last}",
        )
    return Problem(
        path,
        f"level {level} (stride {2**level}) does not exist in this network: its levels are "
        f"{_level_range(points)}",
        "a level is log2 of the stride: 2 is stride 4, 5 is stride 32",
    )
