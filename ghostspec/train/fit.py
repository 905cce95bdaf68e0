"""Keras' `fit` over the session's epochs, with the callbacks that keep the run folder.

Saves best.keras and last.keras as the epochs go; Ctrl-C leaves a resumable run and raises
`Interrupted` (a second Ctrl-C while it saves leaves the run as it was saved, and still raises
`Interrupted`); a non-finite loss stops the run at its last finite epoch and raises `Diverged`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.train.outcome import Diverged, Echo, Interrupted
from ghostspec.train.run import RunFolder, RunState, read_state

if TYPE_CHECKING:
    import tensorflow as tf

    from ghostspec.keras.modelfile import ModelMetadata
    from ghostspec.train.build import Built
    from ghostspec.train.callbacks import NonFiniteLoss
    from ghostspec.train.inputs import Setup


def fit_run(
    setup: Setup,
    built: Built,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    steps: int,
    folder: RunFolder,
    state: RunState,
    strategy: tf.distribute.Strategy,
    metadata: ModelMetadata,
    echo: Echo,
    stream: TextIO,
) -> None:
    """Train from `state.epoch` to the recipe's last epoch (or an early stop), writing `folder`;
    `echo` receives the run's lines, `stream` the progress bar."""
    from ghostspec.keras.modelfile import save_model_file
    from ghostspec.train.callbacks import (
        EmaValidation,
        EpochClock,
        NonFiniteLoss,
        ProgressBar,
        RunKeeper,
        ScalarLogs,
        StopOnNonFinite,
        Stopping,
        current_lr,
        model_values,
    )
    from ghostspec.train.distribute import describe, multi_worker

    s, recipe = setup, setup.recipe
    model, net, twin = built.model, built.net, built.twin
    inner = getattr(built.optimizer, "inner_optimizer", built.optimizer)

    def save_best() -> None:
        twin.set_weights(model_values(net, inner, ema=True))
        save_model_file(twin, folder.best, metadata, include_optimizer=False)

    def save_last() -> None:
        built.last.set_weights(model_values(net, inner, ema=False))
        save_model_file(built.last, folder.last, metadata, include_optimizer=True)

    stop = recipe.early_stopping
    stopping = None if stop is None else Stopping(stop.monitor, stop.patience, stop.min_delta)
    clock = EpochClock(recipe.batch_size)
    keeper = RunKeeper(
        folder=folder,
        state=state,
        clock=clock,
        schedule=built.schedule,
        epochs=recipe.epochs,
        checkpoint_every=recipe.checkpoint_every,
        stopping=stopping,
        save_best=save_best,
        save_last=save_last,
        echo=echo,
        title=f"{s.plan.name}: {s.run_dir.name}",
        keep=2 if multi_worker(strategy) else 1,
        scalars=ScalarLogs(folder),
        mark_first={"data_changed": 1.0} if s.data_change is not None else None,
    )
    keeper.set_model(model)
    if state.epoch >= recipe.epochs or state.stopped_early:  # done; only files were missing
        if s.best_problem is not None and state.history:  # best.keras anew, from the last epoch
            save_best()
            state.best_epoch, state.best_top1 = state.epoch, state.history[-1].get("val_top1")
        return
    if state.epoch == 0:
        keeper.write_state()  # Ctrl-C in the first epoch leaves a run that resumes
    callbacks = [
        clock,
        StopOnNonFinite(),
        EmaValidation(inner),
        ProgressBar(clock, built.schedule, steps, recipe.epochs, stream),
        keeper,
    ]
    n_train = steps * recipe.batch_size
    where = (
        folder.path
        if s.writer_dir is None
        else f"a copy in {folder.path}; the chief writes {s.run_dir}"
    )
    precision = "" if recipe.precision == "float32" else f", {recipe.precision}"
    echo(
        f"training {s.plan.name} on {len(s.images.classes)} classes: {n_train} images per "
        f"epoch in {steps} steps of {recipe.batch_size}, "
        f"{len(s.images.splits['val'])} validation images, {s.size[0]}x{s.size[1]}, "
        f"{recipe.epochs} epochs ({describe(strategy)}{precision}); writing {where}"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=recipe.epochs,
                steps_per_epoch=steps,
                initial_epoch=state.epoch,
                callbacks=callbacks,
                verbose=0,
            )
    except KeyboardInterrupt as stop:
        with contextlib.suppress(Exception):
            stream.write("\r\033[K" if getattr(stream, "isatty", bool)() else "")
        saved = _back_to_saved(folder, state, keeper.last_written, model, save_last)
        raise Interrupted(s.run_dir, saved, stop) from None
    except NonFiniteLoss as bad:
        keeper.on_train_end()
        saved = _back_to_saved(folder, state, keeper.last_written, model, save_last)
        rate = current_lr(built.schedule, model.optimizer)
        raise _diverged(setup, bad, steps, saved, rate) from None


def _back_to_saved(
    folder: RunFolder,
    state: RunState,
    last_written: int | None,
    model: tf.keras.Model,
    save_last: Callable[[], None],
) -> int:
    """After a stop within an epoch: last.keras made the saved state's epoch (not the half-done
    one) when it is another; the saved epoch. A second Ctrl-C meanwhile leaves last.keras as it
    was (each file is whole: written atomically) and still ends in the saved epoch."""
    try:
        saved = read_state(folder.state)
    except SpecError:
        saved = state
    try:
        checkpoint = folder.checkpoint(saved)
        if last_written != saved.epoch and checkpoint is not None:
            model.load_weights(checkpoint)
            save_last()
    except (KeyboardInterrupt, SpecError):
        pass
    return saved.epoch


def _diverged(setup: Setup, bad: NonFiniteLoss, steps: int, saved: int, rate: float) -> Diverged:
    value = "NaN" if bad.value != bad.value else f"{bad.value}"
    kept = (
        f"the run folder keeps epoch {saved}, the last finite one (best.keras, last.keras)"
        if saved
        else "no epoch completed, so the run folder holds no trained weights"
    )
    return Diverged(
        [
            Diagnostic(
                file=str(setup.run_dir),
                message=(
                    f"the training loss became {value} at epoch {bad.epoch}, step {bad.step} of "
                    f"{steps}; training stopped"
                    if bad.step is not None
                    else f"the validation loss became {value} after epoch {bad.epoch} (the "
                    "weights are no longer finite); training stopped"
                ),
                hint=(
                    f"the learning rate is most likely too high ({rate:.3g} at that step): "
                    f"start a new run with a lower --hp optimizer.lr (or a longer "
                    f"schedule.warmup_epochs); {kept}"
                ),
            )
        ]
    )
