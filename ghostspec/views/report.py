"""Cost reports read from a Plan: one row per node, plus totals. No numbers are computed here.

A network that accepts any input size has no sizes or multiply-adds of its own; `inspect` lowers
it at the reference size (`plan.reference_size`) and passes the spec's own shape as `accepts`, so
every report says which size its numbers are at.
"""

from __future__ import annotations

from typing import Any

from ghostspec.plan.features import Tap
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Bottleneck, Classifier, ConvNode, Head, Node, Plan, Reparam, Size


def _size(size: Size) -> str:
    h, w = size
    return f"{'?' if h is None else h}x{'?' if w is None else w}"


def node_row(node: Node) -> dict[str, Any]:
    """The fields of one inspect row, as plain data."""
    row: dict[str, Any] = {
        "name": node.name,
        "kind": node.kind,
        "label": None,
        "in": node.cin,
        "hidden": None,
        "out": node.cout,
        "kernel": None,
        "stride": None,
        "se": None,
        "shortcut": None,
        "activation": None,
        "variant": None,
        "output": list(node.out_size),
        "params": node.params,
        "macs": node.macs,
    }
    if isinstance(node, ConvNode):
        row.update(kernel=node.op.conv.kernel, stride=node.op.conv.stride)
        row["activation"] = node.op.activation
    elif isinstance(node, Bottleneck):
        row.update(
            label=node.label,
            hidden=node.hidden,
            kernel=node.kernel,
            stride=node.stride,
            se=node.se.reduced if node.se else None,
            shortcut=node.shortcut_kind,
            activation=node.activation,
            variant=variant(node),
        )
    elif isinstance(node, Head):
        row.update(kernel=1 if node.conv else None, activation=node.activation)
        row["pooling"] = node.pooling
    elif isinstance(node, Classifier):
        row.update(activation=node.activation, output=[node.cout])
    return row


def variant(block: Bottleneck) -> str | None:
    """'dfc' for GhostNetV2 attention, 'rpr3' for three GhostNetV3 branches, both joined by '+'."""
    parts = []
    if block.ghost1.attention is not None:
        parts.append("dfc")
    if isinstance(block.ghost1.primary, Reparam):
        parts.append(f"rpr{len(block.ghost1.primary.branches)}")
    return "+".join(parts) or None


def deploy_params(plan: Plan) -> int | None:
    """Parameters after re-parameterised branches are fused, where there are any."""
    fused = fuse_plan(plan)
    return fused.params if fused != plan else None


Shape = tuple[int | None, int | None, int]


def _shape(shape: tuple[int | None, ...]) -> str:
    return "x".join("?" if v is None else str(v) for v in shape)


def costed_at(plan: Plan) -> tuple[int, int] | None:
    """The input size the plan's sizes and multiply-adds are at (None: any size, no counts)."""
    h, w, _ = plan.input_shape
    return None if h is None or w is None else (h, w)


def plan_report(plan: Plan, accepts: Shape | None = None) -> dict[str, Any]:
    """`accepts`: the spec's own input shape, where `plan` was lowered at another size."""
    return {
        "name": plan.name,
        "input_shape": list(accepts or plan.input_shape),
        "costed_at": None if (at := costed_at(plan)) is None else list(at),
        "output_shape": list(plan.output_shape),
        "width": plan.width,
        "params": plan.params,
        "deploy_params": deploy_params(plan),
        "buffers": plan.buffers,
        "macs": plan.macs,
        "nodes": [node_row(n) for n in plan.nodes],
        "features": [feature_row(t) for t in plan.features],
    }


def feature_row(tap: Tap) -> dict[str, Any]:
    """One tapped map of a feature extractor, as plain data."""
    return {
        "output": tap.name,
        "node": tap.node,
        "point": "before BatchNorm" if tap.pre_norm else "output",
        "level": tap.level,
        "reduction": tap.reduction,
        "channels": tap.channels,
        "size": list(tap.size),
    }


FEATURE_COLUMNS = ["output", "node", "level", "stride", "channels", "size"]


def feature_cells(plan: Plan) -> list[list[str]]:
    """Cells of the features table (terminal and Markdown)."""
    return [
        [
            tap.name,
            tap.node + (" (before BatchNorm)" if tap.pre_norm else ""),
            str(tap.level),
            str(tap.reduction),
            str(tap.channels),
            _size(tap.size),
        ]
        for tap in plan.features
    ]


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def table_rows(plan: Plan) -> list[list[str]]:
    """Cells of the inspect table, shared by the terminal and Markdown renderings."""
    rows = []
    for node in plan.nodes:
        r = node_row(node)
        channels = (
            f"{r['in']} -> {r['hidden']} -> {r['out']}"
            if r["hidden"]
            else (f"{r['in']} -> {r['out']}")
        )
        output = "x".join("?" if v is None else str(v) for v in r["output"])
        rows.append(
            [
                r["name"] + (f" ({r['label']})" if r["label"] else ""),
                channels,
                "-" if r["kernel"] is None else str(r["kernel"]),
                "-" if r["stride"] is None else str(r["stride"]),
                "-" if r["se"] is None else str(r["se"]),
                r["shortcut"] or "-",
                r["variant"] or "-",
                output,
                _int(r["params"]),
                _int(r["macs"]),
            ]
        )
    return rows


COLUMNS = [
    "node",
    "in -> hidden -> out",
    "k",
    "s",
    "SE",
    "shortcut",
    "variant",
    "output",
    "params",
    "MACs",
]


def size_note(plan: Plan, accepts: Shape | None = None) -> str:
    """Which size the numbers are at, where the spec accepts any size."""
    at = costed_at(plan)
    if at is None:
        return "any input size: pass --input-size H W for output sizes and multiply-adds"
    if accepts is None or accepts == plan.input_shape:
        return ""
    return (
        f"any input size; output sizes and multiply-adds at {at[0]}x{at[1]}, the reference size "
        "(--input-size H W for another)"
    )


def totals_line(plan: Plan, accepts: Shape | None = None) -> str:
    if plan.macs is None:
        macs = "unknown multiply-adds (dynamic input; pass --input-size H W)"
    else:
        at = costed_at(plan)
        assert at is not None  # multiply-adds are counted at a fixed input size only
        macs = f"{plan.macs:,} ({plan.macs / 1e6:.1f} M) multiply-adds at {at[0]}x{at[1]}"
    deploy = deploy_params(plan)
    fused = "" if deploy is None else f" ({deploy:,} after fusing the branches)"
    outputs = f", {len(plan.features)} feature maps" if plan.features else ""
    return (
        f"{plan.name}: input {_shape(accepts or plan.input_shape)}, {plan.params:,} parameters "
        f"({plan.params / 1e6:.2f} M){fused} + {plan.buffers:,} BatchNorm statistics, {macs}"
        f"{outputs}"
    )


def render_table(plan: Plan, accepts: Shape | None = None) -> str:
    """A terminal table through rich (imported here: only inspect pays for it)."""
    from rich.console import Console
    from rich.table import Table

    note = size_note(plan, accepts)
    table = Table(title=plan.name, title_justify="left")
    for i, column in enumerate(COLUMNS):
        table.add_column(column, justify="right" if i >= 8 else "left", no_wrap=True)
    for row in table_rows(plan):
        table.add_row(*row)
    table.add_section()
    table.add_row("total", *[""] * 7, _int(plan.params), _int(plan.macs))
    console = Console(width=140, record=True, force_terminal=False, color_system=None)
    with console.capture() as capture:
        console.print(table)
        if plan.features:
            features = Table(title="features", title_justify="left")
            for i, column in enumerate(FEATURE_COLUMNS):
                features.add_column(column, justify="right" if i >= 2 else "left", no_wrap=True)
            for row in feature_cells(plan):
                features.add_row(*row)
            console.print(features)
    head = f"{plan.name}: {note}\n" if note else ""
    return head + capture.get() + totals_line(plan, accepts)


def render_markdown(plan: Plan, accepts: Shape | None = None) -> str:
    """The inspect table as GitHub-flavoured Markdown, for READMEs and papers."""
    note = size_note(plan, accepts)
    lines = [f"{plan.name}: {note}", ""] if note else []
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(plan)]
    blanks = " |" * 7
    lines.append(f"| **total** |{blanks} {_int(plan.params)} | {_int(plan.macs)} |")
    if plan.features:
        lines += ["", "| " + " | ".join(FEATURE_COLUMNS) + " |", "|" + "---|" * 6]
        lines += ["| " + " | ".join(row) + " |" for row in feature_cells(plan)]
    return "\n".join(lines) + "\n\n" + totals_line(plan, accepts)
