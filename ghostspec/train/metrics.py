"""metrics.csv and curves.png: the per-epoch record of a run, rewritten whole after every epoch
(atomically), so either file is always complete. No TensorFlow here; matplotlib only when the
curves are drawn, on a bare Agg figure (no pyplot state)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from ghostspec.files import write_text, write_with

# One row per completed epoch. top5 is the top-min(5, classes) accuracy.
COLUMNS = (
    "epoch",
    "lr",
    "loss",
    "top1",
    "top5",
    "val_loss",
    "val_top1",
    "val_top5",
    "images_per_s",
    "seconds",
)

# Distillation runs add the KL divergence between teacher and student (training batches,
# unweighted, at the recipe's temperature) after the training loss.
DISTILL_COLUMN = "distill"

# A resumed run that continued on a changed image folder (--allow-data-change) marks the first
# epoch it trained on the new images with 1 (the column is there only when some row has it).
DATA_CHANGED_COLUMN = "data_changed"

Row = Mapping[str, float]


def columns(history: Sequence[Row]) -> tuple[str, ...]:
    names: tuple[str, ...] = COLUMNS
    if any(DISTILL_COLUMN in row for row in history):
        at = COLUMNS.index("loss") + 1
        names = (*COLUMNS[:at], DISTILL_COLUMN, *COLUMNS[at:])
    if any(DATA_CHANGED_COLUMN in row for row in history):
        names = (*names, DATA_CHANGED_COLUMN)
    return names


def metrics_csv(history: Sequence[Row]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    names = columns(history)
    writer.writerow(names)
    for row in history:
        writer.writerow([_cell(column, row.get(column)) for column in names])
    return stream.getvalue()


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    if column == "epoch":
        return str(int(value))
    return f"{value:.6g}"


def write_metrics(path: Path, history: Sequence[Row]) -> None:
    write_text(path, metrics_csv(history))


def write_curves(path: Path, history: Sequence[Row], title: str) -> None:
    """Loss and top-1 accuracy per epoch, train and validation, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    epochs = [int(row["epoch"]) for row in history]
    panels = (("loss", "loss", "cross-entropy"), ("top1", "top-1 accuracy", "accuracy"))
    for i, (key, label, unit) in enumerate(panels):
        axes = figure.add_subplot(1, 2, i + 1)
        for prefix, name, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            values = [row.get(prefix + key) for row in history]
            points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
            if points:
                axes.plot(*zip(*points, strict=True), style, label=name, markersize=3)
        axes.set_title(label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(unit)
        if key == "top1":
            axes.set_ylim(0.0, 1.0)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    write_with(
        path, lambda temp: figure.savefig(temp, format="png", dpi=100, metadata={"Software": None})
    )
