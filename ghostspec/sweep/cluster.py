"""The Ray engine: the sweep's trials on a Ray cluster, searched by Optuna inside Ray Tune.

Ray is an optional extra (`pip install 'ghostspec[sweep]'`); its absence is said in one line.
Nothing here is home-made distribution: Ray Tune schedules the trials over the cluster's
resources (`--cpus-per-trial`, `--gpus-per-trial`), `ray.tune.search.optuna.OptunaSearch`
proposes them (the same samplers as the local engine, the study in the sweep folder's SQLite),
Tune's FailureConfig retries a trial whose worker dies, and Tune's experiment folder
(SWEEP_DIR/tune/) is what `--resume` restores. A trial is `trial.run_trial`, the function the
local engine runs, so a trial means the same thing on either engine.

Every machine reads the sweep, its spec, recipe and images at the paths the sweep folder's
sweep.json records, and writes trained trials under SWEEP_DIR/trials/<n>/: a shared filesystem,
or the same files at the same paths on each machine.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.sweep import load_sweep
from ghostspec.sweep.results import Row
from ghostspec.sweep.space import suggest
from ghostspec.sweep.study import STUDY, STUDY_NAME, Progress, sampler_of
from ghostspec.sweep.trial import Context, run_trial

EXTRA = "pip install 'ghostspec[sweep]'"
TUNE_DIR = "tune"
MAX_FAILURES = 2  # retries of a trial whose worker died, before it is recorded as failed
# a test or a notebook may run something in the worker before each trial (it is pickled)
Hook = Callable[[int], None]
Echo = Callable[[str], None]
_QUIET = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_TQDM": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def require_ray() -> None:
    """Ray Tune and its Optuna search importable, or a SpecError naming the extra."""
    try:
        import ray
        import ray.tune  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError:
        raise SpecError(
            [Diagnostic(file="--engine ray", message=f"Ray Tune is not installed; {EXTRA} adds it")]
        ) from None


def _connect(address: str | None) -> None:
    import ray

    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(
            address=target,
            log_to_driver=False,
            include_dashboard=False,
            logging_level=logging.ERROR,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SpecError(
            [
                Diagnostic(
                    file="--address" if address else "RAY_ADDRESS",
                    message=f"cannot join the Ray cluster at {target}: {err}".splitlines()[0],
                    hint="start it with `ray start --head`, then pass --address HOST:PORT",
                )
            ]
        ) from None


# ----------------------------------------------------------------------------- in the worker

_CONTEXTS: dict[str, Context] = {}


def _context(record: dict[str, Any]) -> Context:
    """The sweep as every trial sees it, read once per worker process."""
    key = json.dumps(record, sort_keys=True)
    if key not in _CONTEXTS:
        loaded = load_sweep(record["sweep"], record["overrides"])
        data = None if record["data"] is None else Path(record["data"])
        _CONTEXTS[key] = Context.of(loaded, data, Path(record["folder"]))
    return _CONTEXTS[key]


def _metrics(row: Row) -> dict[str, Any]:
    return {k: v for k, v in asdict(row).items() if v is not None}


def trial_function(config: dict[str, Any]) -> None:
    """One trial in a Ray worker: Tune calls it with the search's config and the sweep."""
    from ray import tune

    number = int(config["number"])
    hook = config.get("hook")
    if hook is not None:
        hook(number)
    ctx = _context(config["sweep"])

    def report(epoch: int, value: float) -> bool:  # ASHA, if any, stops the trial from Tune
        tune.report({"val_top1": value, "epochs": epoch + 1, "status": "running"})
        return False

    row = run_trial(ctx, number, dict(config["assignment"]), report)
    tune.report({**_metrics(row), "done": True})


# ------------------------------------------------------------------------------ the driver


def _search(ctx: Context, storage: str) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sweep = ctx.loaded.sweep
    space = ctx.space
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(
        space=_Define(dict(space.decisions)),
        metric=list(sweep.objectives),
        mode=[("min" if d == "minimize" else "max") for d in sweep.objectives.values()],
        sampler=sampler_of(space, sweep.search, sweep.seed),
        storage=optuna.storages.RDBStorage(storage),
        study_name=STUDY_NAME,
    )


@dataclass(frozen=True)
class _Define:
    """Optuna's define-by-run space for OptunaSearch: the trial's number and assignment go to
    the worker as its config (a class, not a closure: Tune pickles the searcher's state)."""

    decisions: dict[str, Any]

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {"number": trial.number, "assignment": suggest(self.decisions, trial)}


def _scheduler(ctx: Context) -> Any:
    """ASHA on val_top1 for a trained single-objective sweep (the median pruner's place)."""
    sweep = ctx.loaded.sweep
    if ctx.data is None or sweep.pruner == "none" or list(sweep.objectives) != ["val_top1"]:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = int((ctx.loaded.recipe_data or {}).get("epochs", 1))
    return ASHAScheduler(
        time_attr="epochs", metric="val_top1", mode="max", max_t=max(1, epochs), grace_period=1
    )


def run_ray(
    ctx: Context,
    record: dict[str, Any],
    budget: int,
    *,
    resuming: bool,
    storage: str | None,
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    echo: Echo,
    hook: Hook | None = None,
) -> list[Row]:
    """Run (or continue) the sweep's trials on a Ray cluster; every trial's row."""
    require_ray()
    os.environ.update({k: v for k, v in _QUIET.items() if k not in os.environ})
    from ray import tune

    _connect(address)
    import ray

    folder = ctx.folder.resolve()
    trainable = tune.with_resources(trial_function, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    experiment = folder / TUNE_DIR
    try:
        if resuming and tune.Tuner.can_restore(str(experiment)):
            echo(f"resuming the Ray Tune experiment in {experiment} (its own trial budget)")
            tuner = tune.Tuner.restore(
                str(experiment), trainable, resume_unfinished=True, restart_errored=True
            )
        else:
            url = storage or f"sqlite:///{folder / STUDY}"
            tuner = tune.Tuner(
                trainable,
                param_space={"sweep": {**record, "folder": str(folder)}, "hook": hook},
                tune_config=tune.TuneConfig(
                    search_alg=_search(ctx, url),
                    scheduler=_scheduler(ctx),
                    num_samples=budget,
                    time_budget_s=(
                        None
                        if ctx.loaded.sweep.budget.minutes is None
                        else ctx.loaded.sweep.budget.minutes * 60
                    ),
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR,
                    storage_path=str(folder),
                    failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                    verbose=0,
                    callbacks=[_Progress(ctx, budget, echo)],
                ),
            )
        grid = tuner.fit()
        results = [grid[i] for i in range(len(grid))]
        return _rows(ctx, [(r.config, r.metrics, r.error) for r in results])
    finally:
        ray.shutdown()


def _rows(ctx: Context, results: Sequence[tuple[Any, Any, Any]]) -> list[Row]:
    """One row per Tune trial, from its config and its last report."""
    names = {f.name for f in fields(Row)}
    rows = []
    for config, metrics, error in results:
        if not config or "number" not in config:
            continue
        number = int(config["number"])
        variant = ctx.space.variant(dict(config["assignment"]))
        known = {k: v for k, v in (metrics or {}).items() if k in names and k != "trial"}
        base: dict[str, Any] = {"overrides": variant.text, "hp": variant.hp_text}
        if error is not None and not known.get("status"):
            row = Row(trial=number, status="failed", message=str(error).splitlines()[0], **base)
        else:
            if known.get("status") == "running":  # stopped by the scheduler between epochs
                known["status"] = "pruned"
            known.setdefault("status", "failed")
            row = Row(trial=number, **{**base, **known})
        rows.append(row)
    return sorted(rows, key=lambda r: r.trial)


class _Progress:
    """Tune's callback: one line per finished trial, as the local engine prints."""

    def __new__(cls, ctx: Context, budget: int, echo: Echo) -> Any:
        from ray.tune import Callback

        class Reporter(Callback):
            def __init__(self) -> None:
                self.progress = Progress(echo, budget, list(ctx.loaded.sweep.objectives))

            def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **_: Any) -> None:
                rows = _rows(ctx, [(trial.config, trial.last_result, None)])
                for row in rows:
                    self.progress.add(row)

            def on_experiment_end(self, trials: Any, **_: Any) -> None:
                self.progress.close()

        return Reporter()


__all__ = ["EXTRA", "require_ray", "run_ray", "trial_function"]
