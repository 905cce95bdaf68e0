"""pareto.png: every pair of objectives as a scatter, the front joined and labelled by trial.

Rows are taken by their `trial`, `status` and `measure(name)` (results.Row), without importing
results, which calls this module.

Drawn on a bare Figure with the Agg canvas (no pyplot state); matplotlib loads only here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_LABELS = 20


def draw_front(
    path: Path, rows: Sequence[Any], front: Sequence[Any], objectives: Mapping[Any, str]
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(objectives)
    pairs = list(itertools.combinations(names, 2)) or [(names[0], names[0])]
    figure = Figure(figsize=(5.5 * len(pairs), 4.5))
    FigureCanvasAgg(figure)
    ok = [r for r in rows if r.status == "ok"]

    def at(items: Sequence[Any], name: str) -> list[float]:
        return [r.measure(name) or 0.0 for r in items]

    on_front = {r.trial for r in front}
    for index, (x, y) in enumerate(pairs):
        axes = figure.add_subplot(1, len(pairs), index + 1)
        if x == y:  # one objective: the measure against the trial number
            axes.scatter([r.trial for r in ok], at(ok, x), s=10, c="#9bb7d4")
            axes.scatter([r.trial for r in front], at(front, x), s=30, c="#c0621b")
            axes.set_xlabel("trial")
            axes.set_ylabel(f"{x} ({objectives[x]})")
            continue
        rest = [r for r in ok if r.trial not in on_front]
        axes.scatter(at(rest, x), at(rest, y), s=10, c="#9bb7d4")
        line = sorted(front, key=lambda r: (r.measure(x) or 0.0, r.measure(y) or 0.0))
        axes.plot(at(line, x), at(line, y), "-o", color="#c0621b", markersize=4, linewidth=1)
        for row in line[:MAX_LABELS]:
            axes.annotate(
                str(row.trial),
                (row.measure(x) or 0.0, row.measure(y) or 0.0),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        axes.set_xlabel(f"{x} ({objectives[x]})")
        axes.set_ylabel(f"{y} ({objectives[y]})")
        axes.grid(alpha=0.3)
    figure.suptitle(f"{len(ok)} valid trials, {len(front)} on the front")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
