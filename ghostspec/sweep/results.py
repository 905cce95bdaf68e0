"""The sweep's record: one row per trial, the Pareto front, and the files written from them.

Rows are rebuilt from the study's storage alone (Optuna keeps each trial's figures as user
attributes), so `--resume` and a crash lose nothing that a finished trial reported.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ghostspec.files import write_text, write_with
from ghostspec.language.fmt import format_text
from ghostspec.language.reading import dump_yaml
from ghostspec.language.sweep import LoadedSweep
from ghostspec.language.validate import load_spec_document

STATUSES = ("ok", "over", "invalid", "pruned", "failed", "interrupted", "running")


@dataclass(frozen=True)
class Row:
    """One trial. `status`: ok (valid and finished), over (past a constraint), invalid (the
    planner refused the variant: `message`), pruned (stopped early), failed, interrupted."""

    trial: int
    status: str
    overrides: str  # `;`-separated, each as typed after --set
    hp: str = ""  # `;`-separated, each as typed after --hp
    params: int | None = None
    macs: int | None = None
    memory: int | None = None
    latency_ms: float | None = None
    val_top1: float | None = None
    epochs: int | None = None
    seconds: float | None = None
    message: str = ""

    def measure(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


COLUMNS = tuple(f.name for f in fields(Row))


def to_csv(rows: Sequence[Row]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in COLUMNS])
    return stream.getvalue()


def pareto_front(rows: Iterable[Row], objectives: Mapping[Any, str]) -> list[Row]:
    """The ok rows no other ok row dominates (at least as good everywhere, better somewhere),
    ordered by the first objective.

    Points are visited best-first in lexicographic order: a point's dominators all come before
    it, and one of them is on the front (dominance is transitive), so each point is compared with
    the front found so far only: thousands of rows in milliseconds, not seconds."""
    names = list(objectives)
    sign = [1.0 if objectives[n] == "minimize" else -1.0 for n in names]
    points: list[tuple[tuple[float, ...], int, Row]] = []
    for row in rows:
        values = [row.measure(n) for n in names]
        if row.status == "ok" and all(v is not None and math.isfinite(v) for v in values):
            point = tuple(s * float(v) for s, v in zip(sign, values, strict=True))  # type: ignore[arg-type]
            points.append((point, row.trial, row))
    points.sort(key=lambda item: (item[0], item[1]))
    front: list[tuple[tuple[float, ...], int, Row]] = []
    for p, trial, row in points:
        if not any(q != p and all(a <= b for a, b in zip(q, p, strict=True)) for q, _, _ in front):
            front.append((p, trial, row))
    return [row for _, _, row in front]


def front_json(front: Sequence[Row], objectives: Mapping[Any, str]) -> str:
    return json.dumps(
        {"objectives": dict(objectives), "front": [asdict(r) for r in front]}, indent=2
    )


def best_spec_text(loaded: LoadedSweep, row: Row, rank: int, objectives: Mapping[Any, str]) -> str:
    """The base spec with the trial's overrides applied, formatted by fmt, with a comment
    naming the trial and its figures."""
    overrides = [o for o in row.overrides.split(";") if o]
    doc = load_spec_document(loaded.spec_source, overrides)
    figures = ", ".join(
        f"{name} {_show(row.measure(name))}"
        for name in dict.fromkeys([*objectives, "params", "macs"])
        if row.measure(name) is not None
    )
    head = (
        f"# best-{rank} of sweep {loaded.sweep.name or Path(loaded.doc.name).stem}: trial "
        f"{row.trial}, {figures}\n# ghostspec inspect {loaded.spec_source}"
        + "".join(f" --set '{o}'" for o in overrides)
        + ("\n# train with:" + "".join(f" --hp '{h}'" for h in row.hp.split(";")) if row.hp else "")
        + "\n"
    )
    body = format_text(dump_yaml(doc.tree), f"best-{rank}.yaml")
    return head + body


def _show(value: float | None) -> str:
    if value is None:
        return "-"
    if value.is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def write_outputs(
    out: Path, loaded: LoadedSweep, rows: Sequence[Row], inputs: Sequence[Path]
) -> tuple[list[Row], list[Path]]:
    """results.csv, pareto.json, pareto.png and best-N.yaml; the front and the files written."""
    from ghostspec.sweep.plot import draw_front

    objectives = loaded.sweep.objectives
    front = pareto_front(rows, objectives)
    written = [out / "results.csv", out / "pareto.json"]
    write_text(out / "results.csv", to_csv(rows), inputs=inputs)
    write_text(out / "pareto.json", front_json(front, objectives), inputs=inputs)
    write_with(out / "pareto.png", lambda p: draw_front(p, rows, front, objectives), inputs=inputs)
    written.append(out / "pareto.png")
    for old in out.glob("best-*.yaml"):
        old.unlink()
    seen: set[str] = set()
    distinct = []  # a variant sampled twice is one best file
    for row in front:
        if row.overrides + "|" + row.hp not in seen:
            seen.add(row.overrides + "|" + row.hp)
            distinct.append(row)
    for rank, row in enumerate(distinct[: loaded.sweep.best], 1):
        path = out / f"best-{rank}.yaml"
        write_text(path, best_spec_text(loaded, row, rank, objectives), inputs=inputs)
        written.append(path)
    return front, written


def render_front(front: Sequence[Row], objectives: Mapping[Any, str], limit: int = 10) -> str:
    """A plain table of the front for the terminal."""
    names = list(dict.fromkeys(["params", "macs", *objectives]))
    header = ["trial", *names, "overrides"]
    lines = [header]
    for row in front[:limit]:
        lines.append([str(row.trial), *(_show(row.measure(n)) for n in names), row.overrides])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [c.rjust(w) for c, w in zip(line[:-1], widths, strict=True)]
        text = line[-1] if len(line[-1]) <= 90 else line[-1][:87] + "..."
        out.append("  ".join([*cells, text]))
    more = f"\n... and {len(front) - limit} more (pareto.json)" if len(front) > limit else ""
    return "\n".join(out) + more


def summary(rows: Sequence[Row]) -> dict[str, Any]:
    counts = {s: 0 for s in STATUSES}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


__all__ = [
    "COLUMNS",
    "Row",
    "best_spec_text",
    "front_json",
    "pareto_front",
    "render_front",
    "summary",
    "to_csv",
    "write_outputs",
]
