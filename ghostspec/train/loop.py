"""`train`: a spec, a recipe and an image folder become a run folder (see `ghostspec.train.run`).

Two phases. `prepare` checks everything a user can get wrong (spec, recipe, data folder, class
count, weights, run folder) without TensorFlow and without writing anything; `_Session` then
imports TensorFlow, builds the model, optimizer and metrics inside the distribution strategy's
scope, and runs Keras' `fit` with the callbacks that write the run folder.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.plan import Classifier, Plan, fuse_plan
from ghostspec.source import Document, load_document
from ghostspec.spec import Spec
from ghostspec.train.run import (
    DEFAULT_ROOT,
    ExistingRun,
    RunFolder,
    RunState,
    choose_run_folder,
    create_run_folder,
    open_run,
    resolved_recipe_text,
    resolved_spec_text,
    save_state,
    write_inputs,
)
from ghostspec.validate import spec_from_document

Echo = Callable[[str], None]
DEFAULT_SIZE = (224, 224)  # for specs that accept any input size and recipes that name none


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    best_val_top1: float | None
    best_epoch: int | None
    epochs: int  # completed epochs, counting those before a resume
    stopped_early: bool
    resumed_from: int  # epochs already done when this call started (0 for a new run)
    history: tuple[Mapping[str, float], ...]
    files: tuple[Path, ...]


class Interrupted(Exception):
    """Training was stopped with Ctrl-C; the run folder holds a resumable checkpoint."""

    def __init__(self, run_dir: Path, epoch: int, signal: BaseException | None = None) -> None:
        self.run_dir = run_dir
        self.epoch = epoch
        self.signal = signal  # the KeyboardInterrupt (or the CLI's SIGTERM subclass) caught
        super().__init__(f"interrupted after {epoch} completed epoch(s); resume {run_dir}")


# ------------------------------------------------------------------------------------- prepare


@dataclass(frozen=True)
class Setup:
    """Every checked input of a run; made before TensorFlow is imported."""

    spec_file: str
    overrides: tuple[str, ...]
    spec: Spec
    plan: Plan
    recipe: Any  # ghostspec.recipe.Recipe
    recipe_file: str
    images: Any  # ghostspec.data.ImageFolder
    size: tuple[int, int]
    strict_data: bool
    val_split: float | None
    run_dir: Path
    explicit_dir: bool
    spec_text: str
    recipe_text: str
    weights: Mapping[str, np.ndarray] | None = None
    weights_file: str | None = None
    skip: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    existing: ExistingRun | None = None


def _error(file: str | Path, message: str, hint: str | None = None, path: str = "") -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint, path=path)])


def _load_recipe(source: Any, hp: Sequence[str]) -> tuple[Any, Callable[[], Document] | None, str]:
    """(Recipe, a way to get its document for positions, its file name) from a path, short name,
    Recipe or None (the shipped small-data recipe)."""
    from ghostspec.languages import RECIPE
    from ghostspec.recipe import DEFAULT_RECIPE, Recipe, load_recipe, resolve_source

    if isinstance(source, Recipe):
        if hp:
            raise ValueError("hp overrides apply to recipe files; change the Recipe instead")
        return source, None, "recipe"
    path = resolve_source(DEFAULT_RECIPE if source is None else source)
    recipe = load_recipe(path, tuple(hp))
    return recipe, lambda: load_document(path, tuple(hp), language=RECIPE), str(path)


def _recipe_problem(
    document: Callable[[], Document] | None,
    file: str,
    path: tuple[str, ...],
    message: str,
    hint: str,
) -> SpecError:
    if document is not None:
        return SpecError([document().diagnostic(path, message, hint)])
    return _error(file, message, hint, path=".".join(path))


def _unsupported(recipe: Any, document: Callable[[], Document] | None, file: str) -> None:
    """Recipe features this version does not train with: refused up front, never ignored."""
    if recipe.precision != "float32":
        raise _recipe_problem(
            document,
            file,
            ("precision",),
            f"precision {recipe.precision} is not supported by this version of ghostspec train",
            "use precision: float32",
        )
    if recipe.strategy == "multiworker":
        raise _recipe_problem(
            document,
            file,
            ("strategy",),
            "strategy multiworker is not supported by this version of ghostspec train",
            "use strategy: auto, one or mirrored",
        )
    if recipe.distill is not None:
        raise _recipe_problem(
            document,
            file,
            ("distill",),
            "knowledge distillation is not supported by this version of ghostspec train",
            "remove the distill section (distill: null)",
        )


def _input_size(spec: Spec, recipe: Any) -> tuple[int, int]:
    if recipe.input_size is not None:
        return (int(recipe.input_size[0]), int(recipe.input_size[1]))
    h, w = spec.input.shape[0], spec.input.shape[1]
    return DEFAULT_SIZE if h is None or w is None else (int(h), int(w))


def _check_classifier(plan: Plan, doc: Document, classes: Sequence[str], data: str) -> None:
    head = plan.nodes[-1]
    if not isinstance(head, Classifier):
        raise SpecError(
            [
                doc.diagnostic(
                    ("head", "include_top"),
                    "the spec has no classifier (head.include_top is false); training needs one",
                    "--set head.include_top=true",
                )
            ]
        )
    k = len(classes)
    if head.linear.cout != k:
        shown = ", ".join(classes[:6]) + (", ..." if k > 6 else "")
        raise SpecError(
            [
                doc.diagnostic(
                    ("head", "classes"),
                    f"the classifier has {head.linear.cout} outputs, but {data} has {k} classes "
                    f"({shown})",
                    f"--set head.classes={k}",
                )
            ]
        )


def _check_weights(
    plan: Plan, weights: str | Path
) -> tuple[dict[str, np.ndarray], list[str], str | None]:
    """The state dict, the classifier tensors to re-initialise (their class count differs) and
    a note saying so; SpecError for anything else that does not fit."""
    from ghostspec.weights import check_state_dict, read_state_dict

    state = read_state_dict(weights)
    head = plan.nodes[-1]
    skip: list[str] = []
    note = None
    if isinstance(head, Classifier):
        wanted = {t.name: t.shape for t in head.tensors()}
        skip = [n for n, s in wanted.items() if n in state and tuple(state[n].shape) != s]
        if skip:
            kernel = state.get(f"{head.linear.name}.weight")
            theirs = "?" if kernel is None else kernel.shape[0]
            note = (
                f"weights: the classifier is re-initialised ({theirs} classes in {weights}, "
                f"{head.linear.cout} here); skipped {', '.join(skip)}"
            )
    problems = check_state_dict(plan, state, str(weights), skip)
    if problems:
        raise SpecError(problems)
    return state, skip, note


def prepare(
    spec: str | Path | None,
    data: str | Path | None,
    recipe: Any = None,
    *,
    overrides: Sequence[str] = (),
    hp: Sequence[str] = (),
    val_split: float | None = None,
    strict_data: bool = False,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    runs_root: str | Path = DEFAULT_ROOT,
) -> Setup:
    """Check every input and decide the run folder; nothing is written, TensorFlow not loaded."""
    from ghostspec import pipeline
    from ghostspec.data import discover

    if resume is not None:
        given = [
            flag
            for flag, value in (
                ("SPEC", spec),
                ("--set", overrides),
                ("--recipe", recipe),
                ("--hp/--epochs/--batch-size", hp),
                ("--weights", weights),
                ("-o", output),
                ("--val-split", val_split),
            )
            if value
        ]
        if given:
            raise _error(
                "--resume",
                f"a resumed run uses the spec, recipe and data split saved in its folder; "
                f"{', '.join(given)} cannot change them",
                f"drop {', '.join(given)}, or start a new run",
            )
        return _prepare_resume(Path(resume), data, strict_data)
    if spec is None:
        raise _error("SPEC", "name the spec to train", "ghostspec train SPEC --data DIR")
    if data is None:
        raise _error("--data", "name the image folder to train on", "--data DIR")
    spec_doc = load_document(spec, tuple(overrides))
    spec_obj = spec_from_document(spec_doc)
    recipe_obj, recipe_doc, recipe_file = _load_recipe(recipe, hp)
    _unsupported(recipe_obj, recipe_doc, recipe_file)
    size = _input_size(spec_obj, recipe_obj)
    plan = pipeline.plan(spec, tuple(overrides), input_size=size)
    images = discover(data, val_split=val_split, seed=recipe_obj.seed)
    _check_classifier(plan, spec_doc, images.classes, str(data))
    state, skip, note = (None, [], None) if weights is None else _check_weights(plan, weights)
    run_dir = choose_run_folder(plan.name, output, Path(runs_root))
    given = " ".join(f"--set {o}" for o in overrides)
    spec_note = f"resolved by ghostspec train from {spec}{' ' + given if given else ''}"
    recipe_note = f"resolved by ghostspec train from {recipe_file}" + (
        " " + " ".join(f"--hp {h}" for h in hp) if hp else ""
    )
    return Setup(
        spec_file=str(spec),
        overrides=tuple(overrides),
        spec=spec_obj,
        plan=plan,
        recipe=recipe_obj,
        recipe_file=recipe_file,
        images=images,
        size=size,
        strict_data=strict_data,
        val_split=val_split,
        run_dir=run_dir,
        explicit_dir=output is not None,
        spec_text=resolved_spec_text(spec_obj, spec_note),
        recipe_text=resolved_recipe_text(recipe_obj, recipe_note),
        weights=state,
        weights_file=None if weights is None else str(weights),
        skip=tuple(skip),
        notes=(note,) if note else (),
    )


def _prepare_resume(path: Path, data: str | Path | None, strict_data: bool) -> Setup:
    from ghostspec import pipeline
    from ghostspec.data import discover

    run = open_run(path)
    state = run.state
    if state.finished:
        what = "stopped early" if state.stopped_early else f"finished its {state.epoch} epochs"
        raise _error(path, f"this run has {what}; there is nothing to resume", "start a new run")
    spec_doc = load_document(run.folder.spec)
    spec_obj = spec_from_document(spec_doc)
    recipe_obj, recipe_doc, recipe_file = _load_recipe(run.folder.recipe, ())
    _unsupported(recipe_obj, recipe_doc, recipe_file)
    size = _input_size(spec_obj, recipe_obj)
    plan = pipeline.plan(run.folder.spec, input_size=size)
    root = Path(data) if data is not None else Path(state.data)
    images = discover(root, val_split=state.val_split, seed=recipe_obj.seed)
    if tuple(images.classes) != run.classes:
        raise _error(
            root,
            f"the classes here ({', '.join(images.classes[:6])}) differ from the run's "
            f"classes.txt ({', '.join(run.classes[:6])})",
            "resume with the image folder the run was started on (--data DIR)",
        )
    _check_classifier(plan, spec_doc, images.classes, str(root))
    return Setup(
        spec_file=str(run.folder.spec),
        overrides=(),
        spec=spec_obj,
        plan=plan,
        recipe=recipe_obj,
        recipe_file=recipe_file,
        images=images,
        size=size,
        strict_data=strict_data or state.strict_data,
        val_split=state.val_split,
        run_dir=run.folder.path,
        explicit_dir=True,
        spec_text=run.spec_text,
        recipe_text=run.recipe_text,
        existing=run,
    )


# ------------------------------------------------------------------------------------- running


def augment_of(recipe: Any) -> Any:
    from ghostspec.data import Augment

    a = recipe.augment
    crop, ra = a.crop, a.randaugment
    return Augment(
        crop_scale=None if crop is None else tuple(crop.scale),
        crop_ratio=None if crop is None else tuple(crop.ratio),
        flip=a.flip,
        randaugment_magnitude=0.0 if ra is None else float(ra.magnitude),
        randaugment_std=0.0 if ra is None else float(ra.magnitude_std),
        randaugment_layers=None if ra is None else int(ra.layers),
        erasing=float(a.erasing),
    )


def train(
    spec: str | Path | None = None,
    data: str | Path | None = None,
    recipe: Any = None,
    *,
    overrides: Sequence[str] = (),
    hp: Sequence[str] = (),
    val_split: float | None = None,
    strict_data: bool = False,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    runs_root: str | Path = DEFAULT_ROOT,
    echo: Echo = print,
    progress: TextIO | None = None,
) -> RunResult:
    """Train `spec` on the image folder `data` with `recipe` (a path, a short name such as
    "imagenet", a Recipe, or None for the shipped small-data recipe) and write a run folder.

    `overrides` are the spec's `--set`, `hp` the recipe's `--hp`; `resume` continues a run
    folder from its last completed epoch (then spec, recipe and their overrides must be left
    out). Bad input raises SpecError before anything is written; Ctrl-C raises Interrupted after
    the resumable state is saved. `echo` receives the summary lines; the live progress bar goes
    to `progress` (default stderr) when it is a terminal.
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
    )
    return _Session(setup, echo, progress or sys.stderr).run()


class _Session:
    """One call of `train` from TensorFlow's import to the final summary."""

    def __init__(self, setup: Setup, echo: Echo, stream: TextIO) -> None:
        self.setup = setup
        self.echo = echo
        self.stream = stream

    def run(self) -> RunResult:
        import keras
        import tensorflow as tf

        from ghostspec.train.strategy import check_batch, make_strategy

        s = self.setup
        recipe = s.recipe
        keras.utils.set_random_seed(recipe.seed)
        if recipe.deterministic:
            tf.config.experimental.enable_op_determinism()
        strategy = make_strategy(recipe.strategy, tf, s.recipe_file)
        check_batch(strategy, recipe.batch_size, s.recipe_file)
        train_ds, val_ds, steps = self._datasets(tf)

        from ghostspec import pipeline
        from ghostspec.train.fastbn import fuse_batch_norm_for_training
        from ghostspec.train.optim import make_optimizer, make_schedule

        plan = s.plan
        head = plan.nodes[-1]
        assert isinstance(head, Classifier)
        classes = len(s.images.classes)
        with strategy.scope():
            model = pipeline.build(plan)
            fuse_batch_norm_for_training(model)  # same function, about 30% faster steps
            if s.weights is not None:
                from ghostspec.weights import load_weights

                load_weights(model, plan, s.weights, skip=s.skip)
            schedule = make_schedule(recipe, steps)
            optimizer = make_optimizer(recipe, model, schedule)
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(
                    from_logits=head.activation == "linear",
                    label_smoothing=recipe.label_smoothing,
                ),
                metrics=[
                    keras.metrics.CategoricalAccuracy(name="top1"),
                    keras.metrics.TopKCategoricalAccuracy(k=min(5, classes), name="top5"),
                ],
            )
        twin = pipeline.build(plan)  # uncompiled, for best.keras: loads without ghostspec
        if [w.path for w in twin.weights] != [w.path for w in model.weights]:
            raise RuntimeError("the saved model's weights do not line up with the trained one's")
        train_ds = strategy.experimental_distribute_dataset(train_ds)

        folder, state = self._folder()
        for note in s.notes:
            self.echo(note)
        if s.existing is not None and state.checkpoint is not None:
            model.load_weights(folder.state_dir / state.checkpoint)
            from ghostspec.train.callbacks import seed_generators

            generators = seed_generators(model)
            for generator, values in zip(generators, state.seed_states, strict=True):
                generator.state.assign(np.asarray(values, generator.state.dtype))
            for _ in range(state.epoch):  # every new iterator starts the next epoch's order
                iter(train_ds)
            self.echo(f"resuming {folder.path} after epoch {state.epoch} of {recipe.epochs}")
        return self._fit(
            keras, model, twin, optimizer, schedule, train_ds, val_ds, steps, folder, state
        )

    def _datasets(self, tf: Any) -> tuple[Any, Any, int]:
        from ghostspec.data import check_samples, eval_dataset, train_dataset

        s, recipe, plan = self.setup, self.setup.recipe, self.setup.plan
        channels = int(plan.input_shape[2])
        common = {"size": s.size, "channels": channels, "mean": plan.mean, "std": plan.std}
        # checked once here (warnings once), so the step count is known before fit
        checked = check_samples(s.images.splits["train"], strict=s.strict_data)
        steps = len(checked.samples) // recipe.batch_size
        train = train_dataset(
            checked.samples,
            batch=recipe.batch_size,
            augment=augment_of(recipe),
            seed=recipe.seed,
            strict=s.strict_data,
            **common,
        )
        val_samples = s.images.splits.get("val") or ()
        if not val_samples:
            raise _error(s.images.root, "the validation split is empty", "add images to val/")
        val = eval_dataset(
            val_samples,
            crop_pct=recipe.eval.crop_pct,
            batch=recipe.batch_size,
            strict=s.strict_data,
            **common,
        )
        k = len(s.images.classes)

        def one_hot(x: Any, y: Any) -> tuple[Any, Any]:
            return x, tf.one_hot(y, k)

        # Repeated, with fit's steps_per_epoch: Keras' fit takes one step too many per epoch on
        # a dataset of unknown length (an optimizer update on no data). Each repetition is one
        # epoch: the data order and augmentation of epoch k depend only on the seed and k.
        train = train.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE).repeat()
        val = val.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
        return train, val, steps

    def _folder(self) -> tuple[RunFolder, RunState]:
        s = self.setup
        if s.existing is not None:
            return s.existing.folder, s.existing.state
        folder = create_run_folder(s.run_dir, s.plan.name, s.explicit_dir)
        write_inputs(folder, s.spec_text, s.recipe_text, s.images.classes)
        state = RunState(
            data=str(Path(s.images.root).resolve()),
            val_split=s.val_split,
            strict_data=s.strict_data,
            spec_source=s.spec_file,
        )
        save_state(folder, state)
        return folder, state

    def _metadata(self) -> Any:
        from ghostspec.modelfile import ModelMetadata

        s = self.setup
        return ModelMetadata(
            classes=tuple(s.images.classes),
            mean=tuple(s.plan.mean),
            std=tuple(s.plan.std),
            input_size=s.size,
            crop_pct=float(s.recipe.eval.crop_pct),
            spec=s.spec_text,
        )

    def _fit(
        self,
        keras: Any,
        model: Any,
        twin: Any,
        optimizer: Any,
        schedule: Any,
        train_ds: Any,
        val_ds: Any,
        steps: int,
        folder: RunFolder,
        state: RunState,
    ) -> RunResult:
        from ghostspec.modelfile import save_model_file
        from ghostspec.train.callbacks import (
            EmaValidation,
            EpochClock,
            ProgressBar,
            RunKeeper,
            ScalarLogs,
            Stopping,
            model_values,
        )

        s, recipe = self.setup, self.setup.recipe
        metadata = self._metadata()

        def save_best() -> None:
            twin.set_weights(model_values(model, optimizer, ema=True))
            save_model_file(twin, folder.best, metadata, include_optimizer=False)

        def save_last() -> None:
            save_model_file(model, folder.last, metadata, include_optimizer=True)

        stop = recipe.early_stopping
        stopping = None if stop is None else Stopping(stop.monitor, stop.patience, stop.min_delta)
        clock = EpochClock(recipe.batch_size)
        keeper = RunKeeper(
            folder=folder,
            state=state,
            clock=clock,
            schedule=schedule,
            epochs=recipe.epochs,
            checkpoint_every=recipe.checkpoint_every,
            stopping=stopping,
            save_best=save_best,
            save_last=save_last,
            echo=self.echo,
            title=f"{s.plan.name}: {folder.path.name}",
        )
        keeper.set_model(model)
        if state.epoch == 0:
            keeper.write_state()  # Ctrl-C in the first epoch leaves a run that resumes
        callbacks = [
            clock,
            EmaValidation(optimizer),
            ProgressBar(clock, schedule, steps, recipe.epochs, self.stream),
            keeper,
            ScalarLogs(folder, state),
        ]
        n_train = steps * recipe.batch_size
        self.echo(
            f"training {s.plan.name} on {len(s.images.classes)} classes: {n_train} images per "
            f"epoch in {steps} steps of {recipe.batch_size}, "
            f"{len(s.images.splits['val'])} validation images, {s.size[0]}x{s.size[1]}, "
            f"{recipe.epochs} epochs; writing {folder.path}"
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
                self.stream.write("\r\033[K" if getattr(self.stream, "isatty", bool)() else "")
            if keeper.last_written != state.epoch and state.checkpoint is not None:
                # last.keras follows the resume point, not the half-done epoch
                model.load_weights(folder.state_dir / state.checkpoint)
                save_last()
            raise Interrupted(folder.path, state.epoch, stop) from None
        files = self._finish(twin, folder, metadata)
        best = state.best_top1
        self.echo(
            f"best val_top1 {best:.4f} at epoch {state.best_epoch} of {state.epoch}"
            if best is not None
            else "no validation figures"
        )
        self.echo(f"wrote {folder.path}/: " + ", ".join(p.name for p in files))
        return RunResult(
            run_dir=folder.path,
            best_val_top1=best,
            best_epoch=state.best_epoch,
            epochs=state.epoch,
            stopped_early=state.stopped_early,
            resumed_from=0 if self.setup.existing is None else self.setup.existing.state.epoch,
            history=tuple(dict(r) for r in state.history),
            files=tuple(folder.path / p for p in files),
        )

    def _finish(self, twin: Any, folder: RunFolder, metadata: Any) -> list[Path]:
        """GhostNetV3: deploy.keras from best.keras, checked against it. The list of outputs."""
        from ghostspec.fusion import fuse
        from ghostspec.modelfile import save_model_file

        names = [
            folder.spec,
            folder.recipe,
            folder.classes,
            folder.metrics,
            folder.curves,
            folder.last,
            folder.best,
            folder.logs,
        ]
        plan = self.setup.plan
        if fuse_plan(plan) != plan and folder.best.is_file():
            twin.load_weights(folder.best)
            deploy = fuse(twin, plan)
            h, w = self.setup.size
            x = np.random.default_rng(0).normal(size=(2, h, w, int(plan.input_shape[2])))
            x = x.astype("float32")
            expected = np.asarray(twin(x, training=False))
            got = np.asarray(deploy(x, training=False))
            scale = max(1.0, float(np.abs(expected).max()))
            if float(np.abs(expected - got).max()) > 1e-3 * scale:
                raise RuntimeError("the fused deploy model disagrees with best.keras")
            save_model_file(deploy, folder.deploy, metadata, include_optimizer=False)
            names.append(folder.deploy)
        return [Path(p.name) for p in names if p.exists()]
