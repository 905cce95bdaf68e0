"""`train`: one call from checked inputs to a finished run folder, stage by stage.

`prepare` checks the inputs (`inputs`); `_Session` imports TensorFlow, makes the strategy, starts
or resumes the run folder and hands on to `datasets`, `build`, `fit` and `finish`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ghostspec.train.build import Built, build_training
from ghostspec.train.checks import input_error
from ghostspec.train.datasets import make_datasets
from ghostspec.train.finish import finish_run, model_metadata
from ghostspec.train.fit import fit_run
from ghostspec.train.inputs import Setup, prepare
from ghostspec.train.outcome import Echo, RunResult
from ghostspec.train.run import (
    DEFAULT_ROOT,
    RunFolder,
    RunState,
    create_run_folder,
    save_state,
    write_inputs,
)

if TYPE_CHECKING:
    import tensorflow

    from ghostspec.language.recipe import Recipe


def train(
    spec: str | Path | None = None,
    data: str | Path | None = None,
    recipe: str | Path | Recipe | None = None,
    *,
    overrides: Sequence[str] = (),
    hp: Sequence[str] = (),
    val_split: float | None = None,
    strict_data: bool = False,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    runs_root: str | Path = DEFAULT_ROOT,
    strategy: str | None = None,
    devices: Sequence[str] = (),
    echo: Echo = print,
    progress: TextIO | None = None,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Train `spec` on the image folder `data` with `recipe` (a path, a short name such as
    "imagenet", a Recipe, or None for the shipped small-data recipe) and write a run folder.

    `overrides` are the spec's `--set`, `hp` the recipe's `--hp`; `resume` continues a run
    folder from its last completed epoch (then spec, recipe and their overrides must be left
    out). `strategy` and `devices` choose the tf.distribute strategy (see `prepare`). Bad input
    raises SpecError before anything is written; Ctrl-C raises Interrupted after the resumable
    state is saved. `echo` receives the summary lines; the live progress bar goes to `progress`
    (default stderr) when it is a terminal. `callbacks`: more Keras callbacks, run after the
    run folder's own each epoch (a sweep reads val_top1 there and may set stop_training).
    """
    setup = prepare(
        spec,
        data,
        recipe,
        overrides=overrides,
        hp=hp,
        val_split=val_split,
        strict_data=strict_data,
        output=output,
        resume=resume,
        weights=weights,
        runs_root=runs_root,
        strategy=strategy,
        devices=devices,
    )
    return _Session(setup, echo, progress or sys.stderr, callbacks).run()


class _Session:
    """One call of `train` from TensorFlow's import to the final summary."""

    def __init__(self, setup: Setup, echo: Echo, stream: TextIO, extra: Sequence[Any] = ()) -> None:
        self.setup = setup
        self.extra = tuple(extra)
        cluster = setup.cluster
        if cluster is not None and not cluster.chief:
            self.echo: Echo = lambda line: echo(f"[{cluster.name}] {line}")
        else:
            self.echo = echo
        self.stream = stream

    def run(self) -> RunResult:
        import keras
        import tensorflow as tf

        from ghostspec.train import distribute
        from ghostspec.train.precision import check_precision

        s = self.setup
        recipe = s.recipe
        note = distribute.cluster_note(recipe.strategy)
        if note:
            self.echo(note)
        # first: MultiWorkerMirroredStrategy must configure TensorFlow before anything runs
        strategy = distribute.make_strategy(recipe.strategy, s.devices, s.recipe_file)
        keras.utils.set_random_seed(recipe.seed)  # Python, NumPy, TensorFlow, Keras
        if recipe.deterministic:
            tf.config.experimental.enable_op_determinism()
        gpus = len(tf.config.list_logical_devices("GPU"))
        check_precision(recipe.precision, gpus, s.recipe_file)
        replicas = int(strategy.num_replicas_in_sync)
        distribute.check_batch(recipe.batch_size, replicas, s.recipe_file)
        multi = distribute.multi_worker(strategy)
        state = None if s.existing is None else s.existing.state
        if multi:
            state = self._agree(strategy, state)
        start = 0 if state is None else state.epoch
        train_ds, val_ds, steps = self._datasets(tf, start, replicas > 1)
        built = self._build(keras, strategy, steps, replicas, multi, train_ds)
        train_ds = strategy.experimental_distribute_dataset(train_ds)

        folder, state = self._folder(state)
        for line in s.notes:
            self.echo(line)
        if s.existing is not None and state.checkpoint is not None:
            built.model.load_weights(folder.state_dir / state.checkpoint)
            from ghostspec.train.callbacks import seed_generators

            generators = seed_generators(built.model)
            for generator, values in zip(generators, state.seed_states, strict=True):
                generator.state.assign(np.asarray(values, generator.state.dtype))
            self.echo(f"resuming {s.run_dir} after epoch {state.epoch} of {recipe.epochs}")
        return self._fit(built, train_ds, val_ds, steps, folder, state, strategy)

    def _agree(
        self, strategy: tensorflow.distribute.Strategy, state: RunState | None
    ) -> RunState | None:
        """Every worker continues from the same epoch: the earliest any of them saved."""
        from ghostspec.train.distribute import agree_on_epoch
        from ghostspec.train.run import checkpoint_name, read_state, snapshot_name

        mine = 0 if state is None else state.epoch
        epoch = agree_on_epoch(strategy, mine)
        if epoch == mine:
            return state
        folder = self.setup.folder_path
        snapshot = folder / "state" / snapshot_name(epoch)
        if state is None or not snapshot.is_file():
            raise input_error(
                folder,
                f"the workers' resume points differ: this worker is at epoch {mine}, another "
                f"at {epoch}, and this worker has no checkpoint of epoch {epoch}",
                "resume every worker with --resume RUN_DIR, or start a new run",
            )
        self.echo(f"stepping back to epoch {epoch}, the last one every worker saved")
        earlier = read_state(snapshot)
        if earlier.checkpoint != checkpoint_name(epoch):
            raise input_error(snapshot, "the resume state does not name its own checkpoint")
        return earlier

    def _datasets(
        self, tf: ModuleType, start_epoch: int, shard: bool
    ) -> tuple[tensorflow.data.Dataset, tensorflow.data.Dataset, int]:
        return make_datasets(self.setup, tf, start_epoch, shard)

    def _build(
        self,
        keras: ModuleType,
        strategy: tensorflow.distribute.Strategy,
        steps: int,
        replicas: int,
        multi: bool,
        train_ds: tensorflow.data.Dataset,
    ) -> Built:
        return build_training(
            self.setup, keras, strategy, steps, replicas, multi, train_ds, self.echo
        )

    def _folder(self, state: RunState | None) -> tuple[RunFolder, RunState]:
        s = self.setup
        if s.existing is not None:
            assert state is not None
            return s.existing.folder, state
        if s.writer_dir is not None:  # a worker's copy left by an earlier run: not this run's
            import shutil

            shutil.rmtree(s.writer_dir, ignore_errors=True)
        folder = create_run_folder(
            s.folder_path, s.plan.name, s.explicit_dir or s.writer_dir is not None
        )
        write_inputs(folder, s.spec_text, s.recipe_text, s.images.classes)
        state = RunState(
            data=str(Path(s.images.root).resolve()),
            val_split=s.val_split,
            strict_data=s.strict_data,
            spec_source=s.spec_file,
        )
        save_state(folder, state)
        return folder, state

    def _fit(
        self,
        built: Built,
        train_ds: tensorflow.data.Dataset,
        val_ds: tensorflow.data.Dataset,
        steps: int,
        folder: RunFolder,
        state: RunState,
        strategy: tensorflow.distribute.Strategy,
    ) -> RunResult:
        metadata = model_metadata(self.setup)
        fit_run(
            self.setup,
            built,
            train_ds,
            val_ds,
            steps,
            folder,
            state,
            strategy,
            metadata,
            self.echo,
            self.stream,
            self.extra,
        )
        return finish_run(self.setup, built.twin, folder, state, metadata, self.echo)
