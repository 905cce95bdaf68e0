"""`train`: one call from checked inputs to a finished run folder, stage by stage.

`prepare` checks the inputs (`inputs`); `_Session` imports TensorFlow, makes the strategy, starts
or resumes the run folder and hands on to `datasets`, `build`, `fit` and `finish`.

The session owns the run folder while it runs (`lock`: a resumed run is locked before anything
else, a new one as it is made). From the moment the folder exists, an interrupt is `Interrupted`
with the epoch the saved state holds, and a failed write (a full disk) is a SpecError that says
how to resume.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

import numpy as np

from ghostspec.diagnostics import SpecError
from ghostspec.train.build import Built, build_training
from ghostspec.train.checks import input_error
from ghostspec.train.datarecord import write_record
from ghostspec.train.datasets import make_datasets
from ghostspec.train.finish import finish_run, model_metadata
from ghostspec.train.fit import fit_run
from ghostspec.train.inputs import Setup, prepare
from ghostspec.train.lock import RunLock, acquire
from ghostspec.train.outcome import Diverged, Echo, Interrupted, RunResult
from ghostspec.train.run import (
    DEFAULT_ROOT,
    RunFolder,
    RunState,
    create_run_folder,
    read_state,
    remove_stale_temporaries,
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
    allow_data_change: bool = False,
    echo: Echo = print,
    progress: TextIO | None = None,
) -> RunResult:
    """Train `spec` on the image folder `data` with `recipe` (a path, a short name such as
    "imagenet", a Recipe, or None for the shipped small-data recipe) and write a run folder.

    `overrides` are the spec's `--set`, `hp` the recipe's `--hp`; `resume` continues a run
    folder from its last completed epoch (then spec, recipe and their overrides must be left
    out). `strategy` and `devices` choose the tf.distribute strategy (see `prepare`);
    `allow_data_change` lets a resumed run continue on an image folder that changed since. Bad
    input raises SpecError before anything is written; Ctrl-C raises Interrupted after the
    resumable state is saved; a loss that is no longer finite raises Diverged. `echo` receives
    the summary lines; the live progress bar goes to `progress` (default stderr) when it is a
    terminal.
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
        allow_data_change=allow_data_change,
    )
    return _Session(setup, echo, progress or sys.stderr).run()


class _Session:
    """One call of `train` from TensorFlow's import to the final summary."""

    def __init__(self, setup: Setup, echo: Echo, stream: TextIO) -> None:
        self.setup = setup
        cluster = setup.cluster
        if cluster is not None and not cluster.chief:
            self.echo: Echo = lambda line: echo(f"[{cluster.name}] {line}")
        else:
            self.echo = echo
        self.stream = stream
        self.folder: RunFolder | None = None  # once the run folder exists
        self.state: RunState | None = None
        self.lock: RunLock | None = None

    def run(self) -> RunResult:
        s = self.setup
        try:
            if s.existing is not None:
                self._open_existing()
            return self._run()
        except KeyboardInterrupt as stop:
            if self.folder is None:
                raise  # nothing was written
            raise Interrupted(s.run_dir, self._saved_epoch(), stop) from None
        except Diverged:
            raise
        except SpecError as err:
            if self.folder is None:
                raise
            raise self._resumable(err) from None
        finally:
            if self.lock is not None:
                self.lock.release()

    def _open_existing(self) -> None:
        """A resumed run: locked (the chief or a one-machine run), checked to be the state
        `prepare` read, and cleared of the temporaries a killed process left."""
        s = self.setup
        assert s.existing is not None
        folder = s.existing.folder
        if s.writer_dir is None:
            self.lock = acquire(folder.path, resume=True)
        if read_state(folder.state) != s.existing.state:
            raise input_error(
                folder.state,
                "the run changed while it was being opened (another process wrote it)",
                "run the command again",
            )
        self.folder, self.state = folder, s.existing.state
        removed = remove_stale_temporaries(folder)
        if removed:
            self.echo(
                f"removed {len(removed)} temporary file(s) an interrupted save left: "
                + ", ".join(p.name for p in removed[:4])
                + (" ..." if len(removed) > 4 else "")
            )

    def _saved_epoch(self) -> int:
        """The epoch the run folder's state holds now (what a resume continues from)."""
        assert self.folder is not None
        try:
            return read_state(self.folder.state).epoch
        except SpecError:
            return 0 if self.state is None else self.state.epoch

    def _resumable(self, err: SpecError) -> SpecError:
        """A failure after the run folder exists (a full disk, say): the same message, and
        how to continue from the last saved epoch in its hint."""
        import dataclasses

        resume = (
            f"resume with: ghostspec train --resume {self.setup.run_dir} (the run is saved "
            f"after {self._saved_epoch()} completed epoch(s))"
        )
        *rest, last = err.diagnostics
        hint = f"{last.hint}; then {resume}" if last.hint else resume
        return SpecError([*rest, dataclasses.replace(last, hint=hint)])

    def _run(self) -> RunResult:
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
        self.folder, self.state = folder, state
        for line in s.notes:
            self.echo(line)
        if s.existing is not None:
            self._continue(built, folder, state)
        return self._fit(built, train_ds, val_ds, steps, folder, state, strategy)

    def _continue(self, built: Built, folder: RunFolder, state: RunState) -> None:
        """A resumed run's weights, optimizer and random state from its checkpoint; a damaged
        or foreign checkpoint is refused, a damaged best.keras chosen anew, a changed image
        folder (allowed) recorded."""
        from ghostspec.train.callbacks import seed_generators

        s = self.setup
        checkpoint = folder.checkpoint(state)
        if checkpoint is not None:
            try:
                built.model.load_weights(checkpoint)
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
                reason = " ".join(str(err).split())[:160]
                raise input_error(
                    checkpoint,
                    f"the checkpoint cannot be read as this run's network ({reason})",
                    "the file is damaged or belongs to another run; restore it, or start a new "
                    "run (best.keras and last.keras keep the weights saved so far)",
                ) from None
            generators = seed_generators(built.model)
            if len(generators) != len(state.seed_states):
                raise input_error(
                    folder.state,
                    f"the resume state has {len(state.seed_states)} random states for "
                    f"{len(generators)} dropout layers: it is not this network's",
                    "restore the run's spec.yaml and state, or start a new run",
                )
            for generator, values in zip(generators, state.seed_states, strict=True):
                generator.state.assign(np.asarray(values, generator.state.dtype))
        if s.best_problem is not None:
            state.best_top1 = state.best_epoch = None
        if s.data_record is not None and (
            s.data_change is not None or not folder.data_record.exists()
        ):
            write_record(folder.data_record, s.data_record)
        epochs = s.recipe.epochs
        if state.epoch >= epochs or state.stopped_early:
            self.echo(f"completing {s.run_dir}: its {state.epoch} epochs are done, not its files")
        else:
            self.echo(f"resuming {s.run_dir} after epoch {state.epoch} of {epochs}")

    def _agree(
        self, strategy: tensorflow.distribute.Strategy, state: RunState | None
    ) -> RunState | None:
        """Every worker continues from the same epoch: the earliest any of them saved."""
        from ghostspec.train.distribute import agree_on_epoch
        from ghostspec.train.run import snapshot_name

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
        if earlier.epoch != epoch or earlier.checkpoint is None:
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
        state = RunState(
            data=str(Path(s.images.root).resolve()),
            val_split=s.val_split,
            strict_data=s.strict_data,
            spec_source=s.spec_file,
            network=s.network,
        )

        def populate(folder: RunFolder) -> None:
            write_inputs(folder, s.spec_text, s.recipe_text, s.images.classes)
            if s.data_record is not None:
                write_record(folder.data_record, s.data_record)
            save_state(folder.state_dir, state)  # last: from here the folder is a run

        folder, self.lock = create_run_folder(
            s.folder_path,
            s.plan.name,
            s.explicit_dir or s.writer_dir is not None,
            populate,
            lock=s.writer_dir is None,
        )
        self.folder, self.state = folder, state  # from here an interrupt leaves a run
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
        )
        return finish_run(self.setup, built.twin, folder, state, metadata, self.echo)
