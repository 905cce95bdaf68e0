"""Keras' `fit` over the session's epochs, with the callbacks that keep the run folder.

Saves best.keras and last.keras as the epochs go; Ctrl-C leaves a resumable run and raises
`Interrupted`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ghostspec.train.outcome import Echo, Interrupted
from ghostspec.train.run import RunFolder, RunState

if TYPE_CHECKING:
    import tensorflow as tf

    from ghostspec.keras.modelfile import ModelMetadata
    from ghostspec.train.build import Built
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
    extra: Sequence[Any] = (),
) -> None:
    """Train from `state.epoch` to the recipe's last epoch (or an early stop), writing `folder`;
    `echo` receives the run's lines, `stream` the progress bar; `extra` callbacks run last."""
    from ghostspec.keras.modelfile import save_model_file
    from ghostspec.train.callbacks import (
        EmaValidation,
        EpochClock,
        ProgressBar,
        RunKeeper,
        ScalarLogs,
        Stopping,
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
    )
    keeper.set_model(model)
    if state.epoch == 0:
        keeper.write_state()  # Ctrl-C in the first epoch leaves a run that resumes
    callbacks = [
        clock,
        EmaValidation(inner),
        ProgressBar(clock, built.schedule, steps, recipe.epochs, stream),
        keeper,
        ScalarLogs(folder, state),
        *extra,
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
        if keeper.last_written != state.epoch and state.checkpoint is not None:
            # last.keras follows the resume point, not the half-done epoch
            model.load_weights(folder.state_dir / state.checkpoint)
            save_last()
        raise Interrupted(s.run_dir, state.epoch, stop) from None
