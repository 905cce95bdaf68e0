"""Checks that need the resolved network, reported as located diagnostics through the Document.

Validation (language/) knows the document; these rules need the trunk or the plan: the input
against the total stride, the feature taps of `head.features`, DFC attention with no room to pool
and whole-network bounds. They run after `spec_from_document` in `plan.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ghostspec.diagnostics import Diagnostic
from ghostspec.language.source import Document
from ghostspec.language.spec import Spec
from ghostspec.plan.features import resolve
from ghostspec.plan.ir import Plan
from ghostspec.plan.lower import lower_trunk

MAX_PARAMS = 1_000_000_000
MAX_MACS = 1_000_000_000_000


def total_stride(spec: Spec) -> int:
    stride = spec.stem.stride
    for stage in spec.stages:
        for block in stage:
            stride *= block.stride
    return stride


# Where an input size came from, for its diagnostics: (axis, message, hint) -> a Diagnostic
# pointing at that axis (the spec's input.shape, a recipe's input_size, --input-size).
SizeLocator = Callable[[int, str, str], Diagnostic]


def in_document(doc: Document, path: tuple[str, ...]) -> SizeLocator:
    """Size problems located at `path` (a list [H, W, ...]) in `doc`."""
    return lambda axis, message, hint: doc.diagnostic((*path, axis), message, hint)


def on_flag(flag: str) -> SizeLocator:
    """Size problems of a size given on the command line, or by a caller, named `flag`."""
    return lambda axis, message, hint: Diagnostic(file=flag, message=message, hint=hint)


def input_size_problems(
    spec: Spec, size: Sequence[int | None], locate: SizeLocator
) -> list[Diagnostic]:
    """The input size a network is planned at against its total stride: every size it is built
    at passes here, the spec's own, a recipe's and one typed on the command line alike."""
    problems: list[Diagnostic] = []
    stride = total_stride(spec)
    for axis, side in enumerate(size[:2]):
        if side is not None and side < stride:
            problems.append(
                locate(
                    axis,
                    f"{'height' if axis == 0 else 'width'} {side} is smaller than the network's "
                    f"total stride {stride}",
                    f"use an input of at least {stride}x{stride}, or fewer stride-2 blocks",
                )
            )
    return problems


def network_problems(spec: Spec, doc: Document) -> list[Diagnostic]:
    """The input size against the total stride, and the feature taps against the trunk."""
    problems = input_size_problems(spec, spec.input.shape, in_document(doc, ("input", "shape")))
    head = spec.head
    if head.features is not None and not head.include_top:
        _, _, taps = resolve(head.features, head.taps, lower_trunk(spec))
        problems.extend(doc.diagnostic(p.path, p.message, p.hint) for p in taps)
    return problems


def size_problems(plan: Plan, doc: Document) -> list[Diagnostic]:
    """Refuse absurd networks before any memory is spent on them, and attention with no room."""
    problems = []
    for block in plan.blocks:
        dfc = block.ghost1.attention
        if dfc is not None and any(v is not None and v < 1 for v in dfc.pooled_size):
            h, w = block.in_size
            problems.append(
                doc.diagnostic(
                    block.source,
                    f"DFC attention in {block.name} pools its {h}x{w} input 2x2 to nothing",
                    "start attention later (ghost.attention_from), turn it off for this block "
                    "(ghost: {attention: none}), or use a larger input",
                )
            )
    if plan.params > MAX_PARAMS:
        node = max(plan.nodes, key=lambda n: n.params)
        problems.append(
            doc.diagnostic(
                node.source,
                f"the network would have {plan.params:,} parameters (limit {MAX_PARAMS:,}); "
                f"the largest node, {node.name}, has {node.params:,}",
                "lower the width multiplier or the channel counts",
            )
        )
    if plan.macs is not None and plan.macs > MAX_MACS:
        node = max(plan.nodes, key=lambda n: n.macs or 0)
        problems.append(
            doc.diagnostic(
                node.source,
                f"the network would need {plan.macs:,} multiply-adds (limit {MAX_MACS:,}); "
                f"the largest node, {node.name}, needs {node.macs:,}",
                "lower the input size, the width multiplier or the channel counts",
            )
        )
    return problems
