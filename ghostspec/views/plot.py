"""Block diagrams of a Plan: the network drawn left to right, one box per node, with matplotlib.

Like the inspect table, the diagram reads every number from the plan and computes none. Drawing
happens on a bare `Figure` with the Agg canvas (no pyplot state), and matplotlib is imported only
when a figure is drawn, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import write_with
from ghostspec.plan.ir import Bottleneck, Classifier, ConvNode, Head, Plan, Size
from ghostspec.views.report import variant

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = {".svg": "svg", ".png": "png"}
DPI = 150  # PNG resolution: sharp text without megapixel files for the reference networks

# Geometry, in inches (the axes use inches as data units, so text in points lays out predictably).
BOX_MAX = 2.1  # height of the widest node's box
BOX_MIN = 0.12  # the narrowest box stays visible
ROW = 0.155  # one line of text under the boxes
MARGIN = 0.35
MIN_COLUMN = 0.8
MIN_WIDTH = 7.5
NAME_PT, TEXT_PT = 7.5, 7.0

# Colours: stride-2 blocks stand out from stride-1 ones; SE is a hatch, so it combines with both.
STRIDE1 = ("#d6e6f5", "#3b6e9c")
STRIDE2 = ("#f9d3ae", "#c0621b")
CONV = ("#e3e3e3", "#5a5a5a")
HEAD = ("#d3ebcf", "#3e7d38")
INPUT = ("#ffffff", "#5a5a5a")
INNER = "#2f3f52"
IDENTITY = "#9a9a9a"
PROJECTION = "#b8322a"
TAP = "#6a3d9a"  # a feature extractor's outputs
BANDS = ("#f4f4f4", "#fbfbfb")


@dataclass(frozen=True)
class _Column:
    """One drawn box: the channels that size it, its style, and the text lines under it."""

    kind: Literal["input", "conv", "block", "head"]
    channels: int
    lines: tuple[str, ...]
    size: Size
    downsamples: bool = False
    inner: int | None = None
    se: bool = False
    shortcut: str | None = None
    tap: str | None = None  # the output this node's map becomes (feature extractors)


def plot_plan(plan: Plan, path: str | Path) -> None:
    """Draw `plan` to `path` (.svg or .png), atomically: a failed draw leaves no file behind."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError(
            [
                Diagnostic(
                    file=str(path),
                    message=f"cannot plot to a {suffix or 'suffix-less'} file: "
                    "the format is chosen by the suffix",
                    hint="use a .svg or .png output path",
                )
            ]
        )
    figure = _figure(plan)
    fmt = FORMATS[suffix]

    def writer(temp: Path) -> None:
        import matplotlib

        # Text stays text in SVG (searchable, small); fixed ids and no date make output stable.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ghostspec"}):
            figure.savefig(
                temp,
                format=fmt,
                dpi=DPI,
                facecolor="white",
                metadata={"Date": None} if fmt == "svg" else {"Software": None},
            )

    write_with(path, writer)


def _size(size: Size) -> str:
    return "x".join("?" if v is None else str(v) for v in size)


def _short(label: str, limit: int = 14) -> str:
    """Block labels may be 64 characters; a long one must not widen every column."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _columns(plan: Plan) -> list[_Column]:
    """The boxes to draw, in order: input, stem, bottlenecks, last conv, pooling, head convs;
    a tapped node's last text line names the output it feeds."""
    h, w, c = plan.input_shape
    columns = [_Column("input", c, ("input", f"{_size((h, w))}x{c}"), (h, w))]
    taps = {
        tap.node: f"▼ {tap.name}" + (" (pre-BN)" if tap.pre_norm else "") for tap in plan.features
    }
    for node in plan.nodes:
        if isinstance(node, ConvNode):
            conv = node.op.conv
            lines: tuple[str, ...] = (
                node.name,
                f"{node.cin}→{node.cout}",
                f"k{conv.kernel} s{conv.stride}",
            )
            tap = taps.get(node.name)
            lines += ("", "", "", tap or "")  # the tap on the same row as the blocks' taps
            columns.append(
                _Column("conv", node.cout, lines, node.out_size, conv.stride > 1, tap=tap)
            )
        elif isinstance(node, Bottleneck):
            lines = (
                node.name,
                f"{node.cin}→{node.hidden}→{node.cout}",
                f"k{node.kernel} s{node.stride}",
                f"SE {node.se.reduced}" if node.se else "",
                variant(node) or "",  # GhostNetV2 attention (dfc), GhostNetV3 branches (rprN)
                _short(node.label or ""),
                taps.get(node.name, ""),
            )
            columns.append(
                _Column(
                    "block",
                    node.hidden,
                    lines,
                    node.out_size,
                    node.stride > 1,
                    inner=node.cout,
                    se=node.se is not None,
                    shortcut=node.shortcut_kind,
                    tap=taps.get(node.name),
                )
            )
        elif isinstance(node, Head):
            pool = (f"{node.pooling} pool", f"{node.cin}", "global")
            columns.append(_Column("head", node.cin, pool, node.out_size))
            if node.conv is not None:
                lines = (node.name, f"{node.conv.cin}→{node.conv.cout}", "k1 + bias")
                columns.append(_Column("head", node.cout, lines, node.out_size))
        elif isinstance(node, Classifier):
            lines = (node.name, f"{node.cin}→{node.cout}", f"dropout {node.dropout:g}")
            columns.append(_Column("head", node.cout, lines, node.out_size))
    # Drop text rows that no column uses (no SE anywhere, no block labels, no taps).
    rows = max(len(col.lines) for col in columns)
    used = [i for i in range(rows) if any(i < len(col.lines) and col.lines[i] for col in columns)]
    return [
        _Column(
            col.kind,
            col.channels,
            tuple(col.lines[i] if i < len(col.lines) else "" for i in used),
            col.size,
            col.downsamples,
            col.inner,
            col.se,
            col.shortcut,
            col.tap,
        )
        for col in columns
    ]


def _bands(columns: list[_Column]) -> list[tuple[int, int, str]]:
    """Runs of columns at one resolution as (first, last, "HxW"); a stride-2 node starts a run
    even when the size is unknown, so dynamic-input plans still show where they downsample."""
    bands: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(columns) + 1):
        if i == len(columns) or columns[i].size != columns[start].size or columns[i].downsamples:
            bands.append((start, i - 1, _size(columns[start].size)))
            start = i
    return bands


def _text_width(text: str, points: float) -> float:
    """Rough width in inches of `text` in DejaVu Sans (about 0.62 em per character)."""
    return len(text) * 0.62 * points / 72


def _figure(plan: Plan) -> Figure:
    """Lay the columns out in inches and draw them on a fresh Agg figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = _columns(plan)
    rows = len(columns[0].lines)
    column = max(
        MIN_COLUMN,
        *(_text_width(line, NAME_PT) + 0.16 for col in columns for line in col.lines),
    )
    content = column * len(columns)
    width = max(MIN_WIDTH, content + 2 * MARGIN)
    left = (width - content) / 2

    legend_rows = 2 if width < 16 else 1
    legend_top = 0.1 + 0.2 + 0.19 * legend_rows  # bottom margin, key title, key rows
    text_top = legend_top + 0.2 + rows * ROW
    box_bottom = text_top + 0.2  # the shaded bands end 0.1 above the text
    mid = box_bottom + BOX_MAX / 2
    band_top = box_bottom + BOX_MAX + 0.4
    title_bottom = band_top + 0.3
    height = title_bottom + 0.72

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    widest = max(max(col.channels, col.inner or 0) for col in columns)

    def box_height(channels: int) -> float:
        # sqrt keeps 16 and 1280 channels both legible on one figure.
        return max(BOX_MIN, BOX_MAX * (channels / widest) ** 0.5)

    centres = [left + column * (i + 0.5) for i in range(len(columns))]
    box_w = min(0.55, column - 0.3)

    _draw_bands(ax, columns, centres, column, box_bottom - 0.1, band_top)
    _draw_flow(ax, columns, centres, box_w, mid, box_height)
    for col, x in zip(columns, centres, strict=True):
        _draw_box(ax, col, x, mid, box_w, box_height)
        for r, line in enumerate(col.lines):
            ax.text(
                x,
                text_top - r * ROW,
                line,
                ha="center",
                va="top",
                fontsize=NAME_PT if r == 0 else TEXT_PT,
                fontweight="bold" if r == 0 or line == col.tap else "normal",
                color=TAP if line == col.tap else "#222222" if r == 0 else "#444444",
            )
        if col.tap:
            # a tapped map leaves the network here: a marker on the box's outgoing edge
            ax.plot([x + box_w / 2], [mid], marker="v", ms=7, color=TAP, zorder=5)
    _draw_title(ax, plan, MARGIN, height)
    _draw_legend(ax, width, legend_rows, bool(plan.features))
    return figure


def _draw_bands(
    ax: Axes, columns: list[_Column], centres: list[float], column: float, bottom: float, top: float
) -> None:
    """Shade each run of one resolution and write its HxW at the top."""
    from matplotlib.patches import Rectangle

    for k, (first, last, label) in enumerate(_bands(columns)):
        x0 = centres[first] - column / 2
        x1 = centres[last] + column / 2
        ax.add_patch(
            Rectangle((x0, bottom), x1 - x0, top - bottom, facecolor=BANDS[k % 2], edgecolor="none")
        )
        if k:
            ax.plot([x0, x0], [bottom, top], color="#c8c8c8", lw=0.8, ls=(0, (3, 3)), zorder=1)
        ax.text(
            (x0 + x1) / 2,
            top - 0.06,
            label,
            ha="center",
            va="top",
            fontsize=8.5,
            fontweight="bold",
            color="#555555",
        )


def _draw_flow(
    ax: Axes,
    columns: list[_Column],
    centres: list[float],
    box_w: float,
    mid: float,
    box_height: Callable[[int], float],
) -> None:
    """Arrows from box to box, and each bottleneck's shortcut as a bracket over its box."""
    from matplotlib.patches import FancyArrowPatch

    half = box_w / 2
    for a, b in pairwise(centres):
        ax.add_patch(
            FancyArrowPatch(
                (a + half, mid),
                (b - half, mid),
                arrowstyle="-|>",
                mutation_scale=7,
                color="#555555",
                lw=0.9,
                shrinkA=0,
                shrinkB=0,
                zorder=2,
            )
        )
    gap = (centres[1] - centres[0] - box_w) / 2 if len(centres) > 1 else 0.1
    for col, x in zip(columns, centres, strict=True):
        if col.shortcut is None:
            continue
        top = mid + box_height(max(col.channels, col.inner or 0)) / 2 + 0.09
        x0, x1 = x - half - gap * 0.45, x + half + gap * 0.45
        projection = col.shortcut == "projection"
        colour = PROJECTION if projection else IDENTITY
        ax.plot(
            [x0, x0, x1, x1],
            [mid, top, top, mid],
            color=colour,
            lw=1.3 if projection else 0.9,
            solid_joinstyle="round",
            zorder=2,
        )
        ax.plot([x1], [mid], marker="o", ms=3, color=colour, zorder=4)
        if projection:
            ax.plot([x], [top], marker="s", ms=4.5, color=PROJECTION, zorder=4)


def _draw_box(
    ax: Axes, col: _Column, x: float, mid: float, box_w: float, box_height: Callable[[int], float]
) -> None:
    """One node's box: height from its channels; bottlenecks get an inner bar for their output."""
    from matplotlib.patches import Rectangle

    if col.kind == "block":
        face, edge = STRIDE2 if col.downsamples else STRIDE1
    else:
        face, edge = {"input": INPUT, "conv": CONV, "head": HEAD}[col.kind]
    h = box_height(col.channels)
    ax.add_patch(
        Rectangle(
            (x - box_w / 2, mid - h / 2),
            box_w,
            h,
            facecolor=face,
            edgecolor=edge,
            lw=1.0,
            hatch="////" if col.se else None,
            zorder=3,
        )
    )
    if col.inner is not None:
        hi = box_height(col.inner)
        bar = box_w * 0.28
        ax.add_patch(
            Rectangle((x - bar / 2, mid - hi / 2), bar, hi, facecolor=INNER, lw=0, zorder=4)
        )


def _draw_title(ax: Axes, plan: Plan, x: float, top: float) -> None:
    """Name, then parameters and multiply-adds exactly as the plan counts them."""
    macs = (
        "multiply-adds unknown (dynamic input size)"
        if plan.macs is None
        else f"{plan.macs:,} multiply-adds ({plan.macs / 1e6:.1f} M)"
    )
    ax.text(x, top - 0.14, plan.name, ha="left", va="top", fontsize=13, fontweight="bold")
    blocks = len(plan.blocks)
    facts = [
        f"{plan.params:,} parameters ({plan.params / 1e6:.2f} M)  ·  {macs}",
        f"input {_size(plan.input_shape[:2])}x{plan.input_shape[2]}  ·  width {plan.width:g}"
        f"  ·  {blocks} ghost bottleneck{'s' if blocks != 1 else ''}"
        f"  ·  {_outputs(plan)}",
    ]
    for i, line in enumerate(facts):
        ax.text(x, top - 0.42 - i * 0.17, line, ha="left", va="top", fontsize=8.5, color="#333333")


def _outputs(plan: Plan) -> str:
    if plan.features:
        shapes = ", ".join(f"{_size(t.size)}x{t.channels}" for t in plan.features)
        return f"{len(plan.features)} feature maps: {shapes}"
    return f"output {'x'.join('?' if v is None else str(v) for v in plan.output_shape)}"


def _draw_legend(ax: Axes, width: float, rows: int, features: bool = False) -> None:
    """A key below the text rows, where it cannot cover a box."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=STRIDE1[0], edgecolor=STRIDE1[1], label="ghost bottleneck, stride 1"),
        Patch(facecolor=STRIDE2[0], edgecolor=STRIDE2[1], label="stride 2 (downsamples)"),
        Patch(facecolor="white", edgecolor="#555555", hatch="////", label="squeeze-excite"),
        Patch(facecolor=INNER, label="inner bar: output channels"),
        Line2D([], [], color=IDENTITY, lw=0.9, label="identity shortcut"),
        Line2D([], [], color=PROJECTION, lw=1.3, marker="s", ms=4.5, label="projection shortcut"),
        Patch(facecolor=CONV[0], edgecolor=CONV[1], label="conv + BN (stem, last 1x1)"),
        Patch(facecolor=HEAD[0], edgecolor=HEAD[1], label="pooling and head"),
    ]
    if features:
        handles.append(
            Line2D([], [], color=TAP, lw=0, marker="v", ms=7, label="tapped: a feature map output")
        )
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(width / 2, 0.08),
        bbox_transform=ax.transData,
        ncol=(len(handles) + rows - 1) // rows,
        frameon=False,
        fontsize=7.5,
        handlelength=1.8,
        columnspacing=1.6,
        title="box height: √ of hidden channels (bottlenecks) or output channels (other nodes)",
        title_fontsize=7.5,
    )
