"""Running a sweep: the folder, the study, the engines, and the outputs at the end.

Cost-only grid and random sweeps skip the study: every variant is costed from its plan (in
worker processes when there are many), fast enough to scan thousands a second. Everything else
is an Optuna study in persistent storage (SQLite in the sweep folder, or a URL), so a stopped
sweep resumes: finished trials are kept, trials that were running are run again.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.sweep import LoadedSweep, load_sweep, needs_data
from ghostspec.sweep.results import Row, render_front, summary, write_outputs
from ghostspec.sweep.space import Space
from ghostspec.sweep.study import run_study
from ghostspec.sweep.trial import Context, over, run_trial

DEFAULT_ROOT = Path("sweeps")
RECORD = "sweep.json"  # what --resume needs: the sweep file, its overrides and the data
PARALLEL_FROM = 400  # variants: below this, worker processes cost more than they save
Echo = Callable[[str], None]


@dataclass(frozen=True)
class SweepResult:
    """What `run` returns: the folder, every trial's row, the Pareto front, the files."""

    folder: Path
    rows: tuple[Row, ...]
    front: tuple[Row, ...]
    files: tuple[Path, ...] = field(default=())


def _refuse(target: Any, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(target), message=message, hint=hint)])


def _inside(path: Path, folder: Path) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == top or top in real.parents


def choose_folder(loaded: LoadedSweep, output: Path | None, inputs: Sequence[Path]) -> Path:
    """A new sweep folder: `output` (absent or empty), or the next free sweeps/<name>-<n>."""
    if output is None:
        name = loaded.sweep.name or Path(loaded.doc.name).stem.split(".")[0]
        n = 1
        while (DEFAULT_ROOT / f"{name}-{n}").exists():
            n += 1
        output = DEFAULT_ROOT / f"{name}-{n}"
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise _refuse(
            output,
            "the sweep folder exists and is not empty",
            f"continue it with --resume {output}, or choose another -o SWEEP_DIR",
        )
    for source in inputs:
        if source.is_dir() and _inside(output, source):
            raise _refuse(output, f"is inside the input folder {source}", "write elsewhere")
        if source.exists() and _inside(source, output):
            raise _refuse(output, f"holds the input {source}", "choose another -o SWEEP_DIR")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _refuse(output, f"cannot make the sweep folder: {err.strerror}") from None
    return output


def run(
    sweep: str | Path | None = None,
    *,
    data: str | Path | None = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    trials: int | None = None,
    engine: str = "local",
    overrides: Sequence[str] = (),
    storage: str | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    echo: Echo = print,
    hook: Callable[[int], None] | None = None,
) -> SweepResult:
    """Run (or, with `resume`, continue) a sweep and write its folder. Raises SpecError.

    `engine` "ray" runs the trials on a Ray cluster (`address`, or RAY_ADDRESS; a local Ray
    without either), each with `cpus_per_trial` and `gpus_per_trial`; `hook` (Ray only) runs in
    the worker before each trial, given its number."""
    if resume is not None:
        folder = Path(resume)
        record = _read_record(folder)
        sweep = sweep if sweep is not None else record["sweep"]
        overrides = overrides or tuple(record["overrides"])
        data = data if data is not None else record["data"]
        storage = storage or record.get("storage")
        engine = record.get("engine", engine)
    if sweep is None:
        raise _refuse("sweep", "name a sweep file (or --resume SWEEP_DIR)")
    loaded = load_sweep(sweep, overrides)
    needs_data(loaded, data is not None)
    data_path = None if data is None else Path(data)
    if data_path is not None and not data_path.is_dir():
        raise _refuse(data_path, "the image folder does not exist", "pass --data DIR")
    inputs = [Path(sweep), *([data_path] if data_path else [])]
    if Path(loaded.spec_source).exists():
        inputs.append(Path(loaded.spec_source))
    if engine not in ("local", "ray"):
        raise _refuse("--engine", f"{engine} is not an engine", "use local or ray")
    if engine == "ray":
        from ghostspec.sweep.cluster import require_ray

        require_ray()  # before any folder is made: the extra's name, exit 2
    if resume is None:
        folder = choose_folder(loaded, None if output is None else Path(output), inputs)
        record = {
            "sweep": str(Path(sweep).resolve()),
            "overrides": list(overrides),
            "data": None if data_path is None else str(data_path.resolve()),
            "storage": storage,
            "engine": engine,
        }
        from ghostspec.files import write_text

        write_text(folder / RECORD, json.dumps(record, indent=2) + "\n", inputs=inputs)
    budget = trials or loaded.sweep.budget.trials
    ctx = Context.of(loaded, data_path, folder)
    cost_only = data_path is None and "latency_ms" not in loaded.sweep.measures()
    if engine == "ray":
        from ghostspec.sweep.cluster import run_ray

        rows = run_ray(
            ctx,
            record,
            budget,
            resuming=resume is not None,
            storage=storage,
            address=address,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            echo=echo,
            hook=hook,
        )
    elif cost_only and loaded.sweep.search in ("grid", "random"):
        rows = run_cost_only(ctx, budget, echo)
    else:
        rows = run_study(ctx, budget, storage, resume is not None, echo)
    front, files = write_outputs(folder, loaded, rows, inputs)
    counts = summary(rows)
    shown = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    echo(f"{len(rows)} trials ({shown}); {len(front)} on the Pareto front:")
    if front:
        echo(render_front(front, loaded.sweep.objectives))
    echo(f"wrote {folder}/: " + ", ".join(p.name for p in files))
    return SweepResult(folder, tuple(rows), tuple(front), tuple(files))


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD
    if not path.is_file():
        raise _refuse(folder, "is not a sweep folder (no sweep.json)", "name a folder `sweep` made")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise _refuse(path, "cannot be read as JSON") from None
    if not isinstance(record, dict) or "sweep" not in record:
        raise _refuse(path, "is not a sweep record")
    return record


# ------------------------------------------------------------------------------ cost only


_WORKER: dict[str, Any] = {}


def _init_worker(sweep: str, overrides: Sequence[str]) -> None:
    loaded = load_sweep(sweep, overrides)
    _WORKER["ctx"] = Context.of(loaded, None, Path("."))


def _cost_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> list[Row]:
    return cost_many(_WORKER["ctx"], chunk)


GC_EVERY = 2000  # variants between the young-generation collections of cost_many


def cost_many(ctx: Context, numbered: Sequence[tuple[int, dict[str, Any]]]) -> list[Row]:
    """Cost-only trials with the cyclic garbage collector paused: a plan makes no cycles (its
    memory goes back by reference counting), yet the collector, walking the cost model's
    memos again and again, took about 40% of the time. It runs between batches instead."""
    rows: list[Row] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for n, assignment in numbered:
            rows.append(run_trial(ctx, n, assignment, _never))
            if len(rows) % GC_EVERY == 0:
                gc.collect(1)
    finally:
        if enabled:
            gc.enable()
    return rows


def _never(epoch: int, value: float) -> bool:
    return False


def assignments(space: Space, search: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """The variants a grid or random search visits, in order."""
    if search == "grid":
        out: list[dict[str, Any]] = []
        for a in space.grid():
            if len(out) >= budget:
                break
            out.append(a)
        return out
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(budget)]


def run_cost_only(ctx: Context, budget: int, echo: Echo) -> list[Row]:
    """Cost every variant; repeated variants are costed once."""
    loaded = ctx.loaded
    start = time.perf_counter()
    todo = assignments(ctx.space, loaded.sweep.search, budget, loaded.sweep.seed)
    numbered = list(enumerate(todo))
    workers = min(os.cpu_count() or 1, 8)
    if len(numbered) >= PARALLEL_FROM and workers > 1:
        size = max(50, len(numbered) // (workers * 4))
        chunks = [numbered[i : i + size] for i in range(0, len(numbered), size)]
        method = "fork" if "tensorflow" not in sys.modules and os.name == "posix" else "spawn"
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(loaded.doc.name, tuple(o.text for o in loaded.doc.overrides)),
        ) as pool:
            rows = [row for part in pool.map(_cost_chunk, chunks) for row in part]
    else:
        rows = cost_many(ctx, numbered)
    seconds = time.perf_counter() - start
    echo(f"costed {len(rows)} variants in {seconds:.2f} s ({len(rows) / seconds:,.0f}/s)")
    return rows


__all__ = [
    "DEFAULT_ROOT",
    "SweepResult",
    "assignments",
    "choose_folder",
    "cost_many",
    "over",
    "run",
]
