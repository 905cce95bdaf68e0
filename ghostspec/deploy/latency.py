"""Measured latency: the saved profile's format, its tables, and its join into inspect's table.

`ghostspec profile` (ghostspec/profile.py) measures; this module only reads, writes and renders,
so `inspect --latency PROFILE.json` runs without TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file
from ghostspec.plan.ir import Plan

FORMAT_VERSION: Final = 1
MAX_PROFILE_BYTES = 4 << 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timing(_Model):
    """Batch-1 latency over the repeats: median and interquartile range, in milliseconds."""

    median_ms: float = Field(ge=0)
    p25_ms: float = Field(ge=0)
    p75_ms: float = Field(ge=0)
    min_ms: float = Field(ge=0, description="The fastest run: the least disturbed by other work.")


class Segment(_Model):
    """One plan node converted and timed on its own (its input is the previous node's output)."""

    name: str
    kind: str
    output: list[int | None]
    params: int = Field(ge=0)
    macs: int | None = Field(ge=0)
    time: Timing
    share: float = Field(ge=0, le=1, description="Of the sum of every segment's median.")

    @property
    def macs_per_ms(self) -> float | None:
        if self.macs is None or self.time.median_ms <= 0:
            return None
        return self.macs / self.time.median_ms


class Profile(_Model):
    """What `ghostspec profile --save` writes and `inspect --latency` reads."""

    ghostspec_profile: Literal[1] = FORMAT_VERSION
    model: str
    form: str = Field(description="Which model was converted: 'deploy' is fuse(batch_norm=True).")
    input_size: tuple[int, int]
    quantize: Literal["none", "int8"]
    threads: int = Field(ge=1)
    repeats: int = Field(ge=1)
    cpu: str
    cpu_count: int | None
    load_average: float | None = Field(
        None, description="1-minute load average when the measurement started (Unix)."
    )
    params: int
    macs: int | None
    whole: Timing = Field(description="The whole network converted as one model.")
    segments: list[Segment]

    @property
    def segments_ms(self) -> float:
        return sum(s.time.median_ms for s in self.segments)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def read_profile(path: str | Path) -> Profile:
    """A saved profile, or a SpecError naming the file and what to do."""
    name = str(path)
    hint = "write one with `ghostspec profile SPEC --save PROFILE.json`"
    raw = read_regular_file(path, MAX_PROFILE_BYTES, "profile file", hint)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        message = f"not a JSON profile ({err})"
        raise SpecError([Diagnostic(file=name, message=message, hint=hint)]) from None
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        problems = [
            Diagnostic(
                file=name,
                path=".".join(str(p) for p in e["loc"]),
                message=e["msg"],
                hint=hint if i == 0 else None,
            )
            for i, e in enumerate(err.errors()[:10])
        ]
        raise SpecError(problems) from None


# ------------------------------------------------------------------------------------- rendering


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_ms(value: float) -> str:
    """Milliseconds with three decimals, four below 0.1 ms (tiny networks run in microseconds)."""
    return f"{value:.3f}" if value >= 0.1 else f"{value:.4f}"


def _size(output: list[int | None]) -> str:
    return "x".join("?" if v is None else str(v) for v in output)


def _rate(segment: Segment) -> str:
    rate = segment.macs_per_ms
    return "-" if rate is None else f"{rate / 1e6:.1f}"


def _quantize(profile: Profile) -> str:
    return "int8 (calibrated on random inputs)" if profile.quantize == "int8" else "fp32"


def header(profile: Profile) -> str:
    """Which model, how, and on what: the lines above every profile table."""
    h, w = profile.input_size
    threads = f"{profile.threads} thread{'s' if profile.threads != 1 else ''}"
    cpus = "" if profile.cpu_count is None else f" ({profile.cpu_count} logical CPUs)"
    whole = profile.whole
    spread = f"{format_ms(whole.p25_ms)}-{format_ms(whole.p75_ms)}"
    lines = [
        f"{profile.model} ({profile.form} form), TFLite {_quantize(profile)}, batch 1, {h}x{w}, "
        f"{threads} on {profile.cpu}{cpus}; median of {profile.repeats} runs",
        f"whole network {format_ms(whole.median_ms)} ms (IQR {spread}, fastest "
        f"{format_ms(whole.min_ms)}); its {len(profile.segments)} nodes timed one by one sum to "
        f"{format_ms(profile.segments_ms)} ms",
    ]
    load, count = profile.load_average, profile.cpu_count
    if load is not None and count and load >= count / 2:
        lines.append(
            f"the machine was busy (load average {load:.1f} on {count} CPUs): other processes "
            "preempt long runs more often than short ones, so the whole network's median is "
            "inflated most; its fastest run is the better estimate"
        )
    return "\n".join(lines)


PROFILE_COLUMNS = ["node", "output", "params", "MACs", "ms", "IQR ms", "share", "MMAC/ms"]


def profile_rows(profile: Profile) -> list[list[str]]:
    return [
        [
            s.name,
            _size(s.output),
            _int(s.params),
            _int(s.macs),
            format_ms(s.time.median_ms),
            f"{format_ms(s.time.p25_ms)}-{format_ms(s.time.p75_ms)}",
            f"{s.share:.1%}",
            _rate(s),
        ]
        for s in profile.segments
    ]


def _total_row(profile: Profile) -> list[str]:
    macs = sum(s.macs or 0 for s in profile.segments)
    return [
        "total",
        "",
        _int(profile.params),
        _int(macs),
        format_ms(profile.segments_ms),
        "",
        "100%",
    ]


def _rich(
    title: str, columns: list[str], rows: list[list[str]], total: list[str], left: int
) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    table.add_section()
    table.add_row(*total, *[""] * (len(columns) - len(total)))
    console = Console(width=160, record=True, force_terminal=False, color_system=None)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def _markdown(columns: list[str], rows: list[list[str]], total: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    cells = [f"**{total[0]}**", *total[1:], *[""] * (len(columns) - len(total))]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_profile_table(profile: Profile) -> str:
    rows, total = profile_rows(profile), _total_row(profile)
    return header(profile) + "\n" + _rich(profile.model, PROFILE_COLUMNS, rows, total, 2)


def render_profile_markdown(profile: Profile) -> str:
    rows, total = profile_rows(profile), _total_row(profile)
    return header(profile) + "\n\n" + _markdown(PROFILE_COLUMNS, rows, total)


# ------------------------------------------------------------------------- the join with inspect


def join_notes(plan: Plan, profile: Profile) -> list[str]:
    """What the reader must know about the join: other model, size or nodes."""
    notes = []
    if profile.model != plan.name:
        notes.append(f"the profile was measured on {profile.model}; joined by node name")
    h, w = plan.input_shape[:2]
    if (h, w) != profile.input_size:
        size = "x".join("?" if v is None else str(v) for v in (h, w))
        ph, pw = profile.input_size
        notes.append(f"latency measured at {ph}x{pw}, the costs are at {size}")
    names = {n.name for n in plan.nodes}
    unknown = [s.name for s in profile.segments if s.name not in names]
    if unknown:
        notes.append(f"measured nodes not in this network: {', '.join(unknown)}")
    missing = [n.name for n in plan.nodes if n.name not in {s.name for s in profile.segments}]
    if missing:
        notes.append(f"nodes without a measurement: {', '.join(missing)}")
    return notes


def _latency_cells(plan: Plan, profile: Profile) -> list[list[str]]:
    measured = {s.name: s for s in profile.segments}
    cells = []
    for node in plan.nodes:
        s = measured.get(node.name)
        if s is None:
            cells.append(["-", "-"])
        else:
            cells.append([format_ms(s.time.median_ms), f"{s.share:.1%}"])
    return cells


def _joined(plan: Plan, profile: Profile) -> tuple[list[str], list[list[str]], list[str]]:
    """inspect's columns, rows and total line with the measured ms and share added."""
    from ghostspec.views import report

    rows = [
        row + extra
        for row, extra in zip(report.table_rows(plan), _latency_cells(plan, profile), strict=True)
    ]
    columns = [*report.COLUMNS, "ms", "share"]
    total = [
        "total",
        *[""] * 7,
        _int(plan.params),
        _int(plan.macs),
        format_ms(profile.segments_ms),
    ]
    return columns, rows, total


def render_joined_table(plan: Plan, profile: Profile) -> str:
    """inspect's table with the measured ms and share of each node."""
    from ghostspec.views import report

    columns, rows, total = _joined(plan, profile)
    text = _rich(plan.name, columns, rows, total, 8)
    return text + report.totals_line(plan) + "\n" + _footer(plan, profile)


def render_joined_markdown(plan: Plan, profile: Profile) -> str:
    from ghostspec.views import report

    columns, rows, total = _joined(plan, profile)
    return "\n\n".join(
        [_markdown(columns, rows, total), report.totals_line(plan), _footer(plan, profile)]
    )


def _footer(plan: Plan, profile: Profile) -> str:
    lines = ["latency: " + header(profile).replace("\n", "; ")]
    lines += [f"note: {note}" for note in join_notes(plan, profile)]
    return "\n".join(lines)


def joined_report(plan: Plan, profile: Profile) -> dict[str, Any]:
    """inspect's JSON report with a `latency` record per node (null where none was measured)."""
    from ghostspec.views import report

    data = report.plan_report(plan)
    measured = {s.name: s for s in profile.segments}
    for row in data["nodes"]:
        s = measured.get(row["name"])
        row["latency"] = None if s is None else {**s.time.model_dump(), "share": s.share}
    data["latency"] = {
        **{k: v for k, v in profile.model_dump(mode="json").items() if k != "segments"},
        "notes": join_notes(plan, profile),
    }
    return data
