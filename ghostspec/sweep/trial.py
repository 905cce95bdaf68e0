"""One trial from an assignment to its record: cost, constraints, latency, then training.

The same function runs in the sweep's process (local engine) and on a cluster worker (Ray), so
a trial means the same thing wherever it runs. Cheap checks come first: a variant the planner
refuses or one past a cost bound is recorded without being measured or trained.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ghostspec.language.sweep import LoadedSweep
from ghostspec.sweep.costs import Cost, CostModel, spec_key
from ghostspec.sweep.results import Row
from ghostspec.sweep.space import Space, Variant

# Called after each trained epoch with (epoch, val_top1); True stops the trial (pruned).
Report = Callable[[int, float], bool]


@dataclass
class Context:
    """What every trial of one sweep shares: the space, the cost model, the latency cache."""

    loaded: LoadedSweep
    space: Space
    costs: CostModel
    data: Path | None
    folder: Path
    latency_cache: dict[str, float]
    measured: bool  # latency_ms is among the measures (read once: every trial asks)

    @classmethod
    def of(cls, loaded: LoadedSweep, data: Path | None, folder: Path) -> Context:
        measured = "latency_ms" in loaded.sweep.measures()
        return cls(loaded, Space(loaded), CostModel(loaded), data, folder, {}, measured)


def over(loaded: LoadedSweep, cost: Cost, latency: float | None = None) -> str | None:
    """The first constraint a variant breaks, said in words; None when it meets them all."""
    bounds = loaded.sweep.constraints
    for name, value in (("params", cost.params), ("macs", cost.macs), ("memory", cost.memory)):
        limit = getattr(bounds, name)
        if limit is not None and value is not None and value > limit:
            return f"{name} {value:,} > {limit:,}"
    if bounds.latency_ms is not None and latency is not None and latency > bounds.latency_ms:
        return f"latency_ms {latency:.3f} > {bounds.latency_ms:g}"
    return None


def measure_latency(ctx: Context, variant: Variant, cost: Cost) -> float:
    """The deploy form's median batch-1 latency (profile's machinery), once per resolved spec."""
    key = spec_key(cost.spec)
    if key not in ctx.latency_cache:
        from ghostspec.deploy.profile import measure

        settings = ctx.loaded.sweep.latency
        profile = measure(
            ctx.loaded.spec_source,
            variant.spec,
            threads=settings.threads,
            quantize=settings.quantize,
            repeats=settings.repeats,
        )
        ctx.latency_cache[key] = float(profile.whole.median_ms)
    return ctx.latency_cache[key]


def run_trial(ctx: Context, number: int, assignment: dict[str, Any], report: Report) -> Row:
    """Cost, check, measure and train one variant; the row records what happened."""
    start = time.perf_counter()
    variant = ctx.space.variant(assignment)
    cost = ctx.costs.cost(variant)
    row = Row(
        trial=number,
        status="ok",
        overrides=variant.text,
        hp=variant.hp_text,
        params=cost.params,
        macs=cost.macs,
        memory=cost.memory,
    )
    if not cost.valid:
        return replace(row, status="invalid", message=cost.problem or "")
    problem = over(ctx.loaded, cost)
    if problem:
        return replace(row, status="over", message=problem)
    if ctx.measured:
        latency = measure_latency(ctx, variant, cost)
        row = replace(row, latency_ms=latency)
        problem = over(ctx.loaded, cost, latency)
        if problem:
            return replace(row, status="over", message=problem)
    if ctx.data is not None:
        row = train_variant(ctx, number, variant, row, report)
    return replace(row, seconds=round(time.perf_counter() - start, 3))


def train_variant(ctx: Context, number: int, variant: Variant, row: Row, report: Report) -> Row:
    """A real `ghostspec train` run under SWEEP_DIR/trials/<n>/, reporting each epoch."""
    import keras

    from ghostspec.train import train

    class Reporter(keras.callbacks.Callback):
        pruned = False

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            top1 = (logs or {}).get("val_top1")
            if top1 is not None and report(epoch, float(top1)):
                self.pruned = True
                self.model.stop_training = True

    reporter = Reporter()
    folder = ctx.folder / "trials" / str(number)
    lines: list[str] = []
    result = train(
        ctx.loaded.spec_source,
        ctx.data,
        ctx.loaded.recipe_source,
        overrides=variant.spec,
        hp=variant.recipe,
        output=folder,
        echo=lines.append,
        progress=io.StringIO(),
        callbacks=[reporter],
    )
    (folder / "sweep-trial.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return replace(
        row,
        status="pruned" if reporter.pruned else "ok",
        val_top1=result.best_val_top1,
        epochs=result.epochs,
    )


__all__ = ["Context", "Report", "measure_latency", "over", "run_trial", "train_variant"]
