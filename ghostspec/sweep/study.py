"""The local engine's study: Optuna in persistent storage, so a stopped sweep resumes.

The study lives in SQLite in the sweep folder (or a database URL). Each trial's row is kept as
the Optuna trial's user attributes, so the results table is rebuilt from the storage alone;
trials that were running when a sweep stopped are marked interrupted and queued again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from ghostspec.sweep.results import Row, summary
from ghostspec.sweep.space import Space
from ghostspec.sweep.trial import Context, run_trial

STUDY = "study.db"
STUDY_NAME = "ghostspec-sweep"
Echo = Callable[[str], None]


def sampler_of(space: Space, search: str, seed: int) -> Any:
    import optuna

    if search == "grid":
        return optuna.samplers.GridSampler(space.grid_space(), seed=seed)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(ctx: Context, storage: str | None) -> Any:
    """The sweep's Optuna study in its storage (created, or loaded to continue)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = ctx.loaded.sweep
    url = storage or f"sqlite:///{(ctx.folder / STUDY).resolve()}"
    pruner: Any = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if sweep.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        storage=url,
        study_name=STUDY_NAME,
        load_if_exists=True,
        sampler=sampler_of(ctx.space, sweep.search, sweep.seed),
        pruner=pruner,
        directions=list(sweep.objectives.values()),
    )


def requeue_running(study: Any, echo: Echo) -> int:
    """Trials left running by a stopped sweep: marked interrupted and queued to run again."""
    from optuna.trial import TrialState

    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "status", "interrupted")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        count += 1
    if count:
        echo(f"re-running {count} trial(s) that were running when the sweep stopped")
    return count


def rows_of(study: Any) -> list[Row]:
    """The results table, from the storage alone."""
    from optuna.trial import TrialState

    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        status = attrs.get("status")
        if status is None:
            status = "running" if trial.state == TrialState.RUNNING else "failed"
        known = {k: attrs[k] for k in Row.__dataclass_fields__ if k in attrs}
        known.update(trial=trial.number, status=status)
        rows.append(Row(**{"overrides": "", **known}))
    return rows


def run_study(
    ctx: Context, budget: int, storage: str | None, resuming: bool, echo: Echo
) -> list[Row]:
    import optuna
    from optuna.trial import TrialState

    study = open_study(ctx, storage)
    if resuming:
        requeue_running(study, echo)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = max(0, budget - done)
    if ctx.loaded.sweep.search == "grid":
        remaining = min(remaining, max(0, int(min(ctx.space.size(), budget)) - done))
    names = list(ctx.loaded.sweep.objectives)
    progress = Progress(echo, budget, names)

    def objective(trial: Any) -> Any:
        assignment = ctx.space.suggest(trial)

        def report(epoch: int, value: float) -> bool:
            if len(names) > 1:  # Optuna prunes single-objective studies only
                return False
            trial.report(value, epoch)
            return bool(trial.should_prune())

        row = run_trial(ctx, trial.number, assignment, report)
        for key, value in row.__dict__.items():
            if key != "trial" and value is not None:
                trial.set_user_attr(key, value)
        progress.add(row)
        if row.status != "ok":
            raise optuna.TrialPruned(row.message or row.status)
        return tuple(float(row.measure(n) or 0.0) for n in names)

    minutes = ctx.loaded.sweep.budget.minutes
    if remaining:
        study.optimize(
            objective, n_trials=remaining, timeout=None if minutes is None else minutes * 60
        )
    progress.close()
    return rows_of(study)


class Progress:
    """One line per trial: done, pruned, the best so far (a terminal sees it rewritten)."""

    def __init__(self, echo: Echo, budget: int, objectives: Sequence[str]) -> None:
        self.echo, self.budget, self.objectives = echo, budget, objectives
        self.rows: list[Row] = []
        self.tty = echo is print and sys.stdout.isatty()

    def add(self, row: Row) -> None:
        self.rows.append(row)
        counts = summary(self.rows)
        first = self.objectives[0]
        ok = [r for r in self.rows if r.status == "ok" and r.measure(first) is not None]
        best = ""
        if ok:
            top = (
                max(ok, key=lambda r: r.measure(first) or 0.0)
                if first == "val_top1"
                else min(ok, key=lambda r: r.measure(first) or 0.0)
            )
            best = f"; best {first} {top.measure(first):.4g} (trial {top.trial})"
        line = (
            f"trial {len(self.rows)}/{self.budget}: {counts['ok']} ok, {counts['pruned']} pruned, "
            f"{counts['over']} over, {counts['invalid']} invalid{best}"
        )
        if self.tty:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        else:
            self.echo(line)

    def close(self) -> None:
        if self.tty and self.rows:
            sys.stdout.write("\n")


__all__ = ["STUDY", "STUDY_NAME", "Progress", "open_study", "rows_of", "run_study", "sampler_of"]
