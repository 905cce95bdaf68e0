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
from ghostspec.language.source import Document, load_document
from ghostspec.language.spec import Spec
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Classifier, Plan
from ghostspec.plan.pipeline import checked_spec
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
    recipe: Any  # ghostspec.language.recipe.Recipe
    recipe_file: str
    images: Any  # ghostspec.data.pipeline.ImageFolder
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
    devices: tuple[str, ...] = ()
    cluster: Any = None  # ghostspec.train.distribute.Cluster of a multi-worker run, else None
    writer_dir: Path | None = None  # a worker's own copy of the run folder (not the chief)
    teacher_plan: Plan | None = None  # distill.teacher given as {spec, weights}
    teacher_weights: Mapping[str, np.ndarray] | None = None

    @property
    def folder_path(self) -> Path:
        """The folder this process writes: the run folder, or this worker's copy of it."""
        return self.run_dir if self.writer_dir is None else self.writer_dir


def _error(file: str | Path, message: str, hint: str | None = None, path: str = "") -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint, path=path)])


def _load_recipe(source: Any, hp: Sequence[str]) -> tuple[Any, Callable[[], Document] | None, str]:
    """(Recipe, a way to get its document for positions, its file name) from a path, short name,
    Recipe or None (the shipped small-data recipe)."""
    from ghostspec.language.languages import RECIPE
    from ghostspec.language.recipe import DEFAULT_RECIPE, Recipe, load_recipe, resolve_source

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


def _check_distill(
    recipe: Any,
    document: Callable[[], Document] | None,
    file: str,
    classes: int,
    size: tuple[int, int],
) -> tuple[Any, Plan | None, Mapping[str, np.ndarray] | None]:
    """The teacher checked without TensorFlow: a .keras file that exists, or a spec with a
    classifier for the data's classes and weights that fit it. Relative paths are resolved
    against the current folder and written absolute into the run's recipe (so a resumed run
    finds them anywhere). Returns the recipe with those paths, the teacher's plan and weights."""
    from ghostspec.keras.weights import check_state_dict, read_state_dict
    from ghostspec.language.recipe import TeacherSpec
    from ghostspec.plan import pipeline

    distill = recipe.distill
    if distill is None:
        return recipe, None, None
    where = ("distill", "teacher")
    teacher = distill.teacher
    if isinstance(teacher, str):
        path = Path(teacher)
        if not path.is_file():
            raise _recipe_problem(
                document,
                file,
                where,
                f"the teacher {teacher} is not a file"
                + ("" if path.is_absolute() else f" (relative to {Path.cwd()})"),
                "give a .keras file saved by ghostspec train or build (relative to the current "
                "folder), or {spec: PATH, weights: PATH}",
            )
        resolved: Any = str(path.resolve())
        plan, state = None, None
    else:
        for key, value in (("spec", teacher.spec), ("weights", teacher.weights)):
            if not Path(value).is_file():
                raise _recipe_problem(
                    document,
                    file,
                    (*where, key),
                    f"the teacher's {key} file {value} does not exist",
                    "paths are relative to the current folder",
                )
        own = pipeline.load(teacher.spec).input.shape
        teacher_size = distill.teacher_input_size or (
            size if own[0] is None or own[1] is None else (int(own[0]), int(own[1]))
        )
        plan = pipeline.plan(teacher.spec, input_size=tuple(teacher_size))
        head = plan.nodes[-1]
        if not isinstance(head, Classifier) or head.linear.cout != classes:
            got = head.linear.cout if isinstance(head, Classifier) else "no"
            raise _recipe_problem(
                document,
                file,
                (*where, "spec"),
                f"the teacher {teacher.spec} has {got} classifier outputs; the data has "
                f"{classes} classes",
                "distil from a teacher trained on the same classes",
            )
        state = read_state_dict(teacher.weights)
        problems = check_state_dict(plan, state, teacher.weights)
        if problems:
            raise SpecError(problems)
        resolved = TeacherSpec(
            spec=str(Path(teacher.spec).resolve()), weights=str(Path(teacher.weights).resolve())
        )
    recipe = recipe.model_copy(update={"distill": distill.model_copy(update={"teacher": resolved})})
    return recipe, plan, state


def _cluster_of(recipe: Any, output: str | Path | None) -> Any:
    """The TF_CONFIG role of a multi-worker run (None for other strategies); such a run needs
    the same -o RUN_DIR on every worker, which names each worker's own copy too."""
    if recipe.strategy != "multiworker":
        return None
    from ghostspec.train.distribute import read_tf_config

    cluster = read_tf_config(required=True)
    if cluster.workers > 1 and output is None:
        raise _error(
            "-o",
            "a multi-worker run needs its run folder named, the same on every worker",
            "add -o RUN_DIR (the chief writes it; the others keep a temporary copy)",
        )
    return cluster


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
    from ghostspec.keras.weights import check_state_dict, read_state_dict

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
    strategy: str | None = None,
    devices: Sequence[str] = (),
) -> Setup:
    """Check every input and decide the run folder; nothing is written, TensorFlow not loaded.

    `strategy` overrides the recipe's (recorded in a new run's recipe.yaml; for a resumed run it
    applies to this session only, so a run can continue on other hardware); `devices` are the
    devices a one-device or mirrored strategy uses (machine-specific, so never recorded)."""
    from ghostspec.data.pipeline import discover
    from ghostspec.language.recipe import Recipe
    from ghostspec.plan import pipeline

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
        return _prepare_resume(Path(resume), data, strict_data, strategy, tuple(devices))
    if spec is None:
        raise _error("SPEC", "name the spec to train", "ghostspec train SPEC --data DIR")
    if data is None:
        raise _error("--data", "name the image folder to train on", "--data DIR")
    spec_doc = load_document(spec, tuple(overrides))
    spec_obj = checked_spec(spec_doc)
    if strategy is not None and isinstance(recipe, Recipe):
        recipe = recipe.model_copy(update={"strategy": strategy})
    elif strategy is not None:
        hp = [*hp, f"strategy={strategy}"]
    recipe_obj, recipe_doc, recipe_file = _load_recipe(recipe, hp)
    size = _input_size(spec_obj, recipe_obj)
    plan = pipeline.plan(spec, tuple(overrides), input_size=size)
    images = discover(data, val_split=val_split, seed=recipe_obj.seed)
    _check_classifier(plan, spec_doc, images.classes, str(data))
    recipe_obj, teacher_plan, teacher_weights = _check_distill(
        recipe_obj, recipe_doc, recipe_file, len(images.classes), size
    )
    state, skip, note = (None, [], None) if weights is None else _check_weights(plan, weights)
    cluster = _cluster_of(recipe_obj, output)
    writer_dir = None
    if cluster is not None and not cluster.chief:
        from ghostspec.train.distribute import worker_folder

        run_dir = Path(output)  # type: ignore[arg-type]  # the chief's; _cluster_of checked it
        writer_dir = worker_folder(run_dir, cluster)
    else:
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
        devices=tuple(devices),
        cluster=cluster,
        writer_dir=writer_dir,
        teacher_plan=teacher_plan,
        teacher_weights=teacher_weights,
    )


def _resume_source(path: Path, strategy: str | None) -> tuple[ExistingRun, Any, Path | None]:
    """The run to continue, this worker's TF_CONFIG role (multi-worker runs) and its own copy.

    The chief continues RUN_DIR itself. Another worker continues its copy of the run, which it
    kept when it stopped; a worker without one (a new machine) starts its copy from RUN_DIR
    when RUN_DIR is readable there (a shared filesystem)."""
    from ghostspec.language.recipe import load_recipe
    from ghostspec.train.distribute import Cluster, read_tf_config, worker_folder

    try:
        guess: Cluster | None = read_tf_config()
    except SpecError:
        guess = None  # reported below if the run turns out to be a multi-worker one
    copy = None if guess is None or guess.chief else worker_folder(path, guess)
    own = None
    if copy is not None:
        with contextlib.suppress(SpecError):
            own = open_run(copy)
    run = own or open_run(path)
    chosen = strategy or load_recipe(run.folder.recipe).strategy
    if chosen != "multiworker":
        return (open_run(path) if own is not None else run), None, None
    cluster = read_tf_config(required=True)
    if cluster.chief:
        return (open_run(path) if own is not None else run), cluster, None
    copy = worker_folder(path, cluster)
    if own is None:
        import shutil

        shutil.rmtree(copy, ignore_errors=True)
        (copy / "state").mkdir(parents=True)
        for name in ("spec.yaml", "recipe.yaml", "classes.txt"):
            shutil.copy2(path / name, copy / name)
        for item in (path / "state").iterdir():
            if item.is_file():
                shutil.copy2(item, copy / "state" / item.name)
        own = open_run(copy)
    return own, cluster, copy


def _prepare_resume(
    path: Path,
    data: str | Path | None,
    strict_data: bool,
    strategy: str | None = None,
    devices: tuple[str, ...] = (),
) -> Setup:
    from ghostspec.data.pipeline import discover
    from ghostspec.plan import pipeline

    run, cluster, copy = _resume_source(path, strategy)
    state = run.state
    if state.finished:
        what = "stopped early" if state.stopped_early else f"finished its {state.epoch} epochs"
        raise _error(path, f"this run has {what}; there is nothing to resume", "start a new run")
    spec_doc = load_document(run.folder.spec)
    spec_obj = checked_spec(spec_doc)
    recipe_obj, recipe_doc, recipe_file = _load_recipe(run.folder.recipe, ())
    if strategy is not None:
        recipe_obj = recipe_obj.model_copy(update={"strategy": strategy})
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
    recipe_obj, teacher_plan, teacher_weights = _check_distill(
        recipe_obj, recipe_doc, recipe_file, len(images.classes), size
    )
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
        run_dir=path,
        explicit_dir=True,
        spec_text=run.spec_text,
        recipe_text=run.recipe_text,
        existing=run,
        devices=devices,
        cluster=cluster,
        writer_dir=copy,
        teacher_plan=teacher_plan,
        teacher_weights=teacher_weights,
    )


# ------------------------------------------------------------------------------------- running


def augment_of(recipe: Any) -> Any:
    from ghostspec.data.pipeline import Augment

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


@dataclass
class _Built:
    """What the session builds inside the strategy's scope."""

    net: Any  # the student as Keras builds it (mixed precision: float32 logits appended)
    model: Any  # the compiled training model fit runs (ghostspec.train.distill.training_model)
    twin: Any  # the student in float32, uncompiled: what best.keras and deploy.keras hold
    last: Any  # the student in float32, compiled with the optimizer: what last.keras holds
    optimizer: Any  # the recipe's optimizer (inside Keras' LossScaleOptimizer for mixed_float16)
    schedule: Any


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

    def _agree(self, strategy: Any, state: RunState | None) -> RunState | None:
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
            raise _error(
                folder,
                f"the workers' resume points differ: this worker is at epoch {mine}, another "
                f"at {epoch}, and this worker has no checkpoint of epoch {epoch}",
                "resume every worker with --resume RUN_DIR, or start a new run",
            )
        self.echo(f"stepping back to epoch {epoch}, the last one every worker saved")
        earlier = read_state(snapshot)
        if earlier.checkpoint != checkpoint_name(epoch):
            raise _error(snapshot, "the resume state does not name its own checkpoint")
        return earlier

    def _datasets(self, tf: Any, start_epoch: int, shard: bool) -> tuple[Any, Any, int]:
        from ghostspec.data.pipeline import check_samples, eval_dataset, train_dataset
        from ghostspec.train.distribute import shard_by_data

        s, recipe, plan = self.setup, self.setup.recipe, self.setup.plan
        channels = int(plan.input_shape[2])
        common = {"size": s.size, "channels": channels, "mean": plan.mean, "std": plan.std}
        # checked once here (warnings once), so the step count is known before fit
        checked = check_samples(s.images.splits["train"], strict=s.strict_data)
        steps = len(checked.samples) // recipe.batch_size
        train = train_dataset(
            checked,  # already probed: the pipeline does not read the headers again
            batch=recipe.batch_size,
            augment=augment_of(recipe),
            seed=recipe.seed,
            strict=s.strict_data,
            start_epoch=start_epoch,  # a resumed run continues the data order of its epoch
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
        if shard:  # each worker keeps its share of every global batch
            train, val = shard_by_data(train), shard_by_data(val)
        return train, val, steps

    def _build(
        self, keras: Any, strategy: Any, steps: int, replicas: int, multi: bool, train_ds: Any
    ) -> _Built:
        from ghostspec.keras.build import build as build_model_from
        from ghostspec.train.distill import training_model
        from ghostspec.train.distribute import synchronize_batch_norm
        from ghostspec.train.fastbn import fuse_batch_norm_for_training
        from ghostspec.train.optim import make_optimizer, make_schedule
        from ghostspec.train.precision import float32_logits, policy

        s, recipe, plan = self.setup, self.setup.recipe, self.setup.plan
        head = plan.nodes[-1]
        assert isinstance(head, Classifier)
        probabilities = head.activation != "linear"
        classes = len(s.images.classes)

        def compile_(model: Any, optimizer: Any) -> None:
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(
                    from_logits=not probabilities, label_smoothing=recipe.label_smoothing
                ),
                metrics=[
                    keras.metrics.CategoricalAccuracy(name="top1"),
                    keras.metrics.TopKCategoricalAccuracy(k=min(5, classes), name="top5"),
                ],
            )

        distill = recipe.distill
        with strategy.scope():
            with policy(recipe.precision):
                net = build_model_from(plan)
            net = float32_logits(net)  # the loss and softmax in float32 (mixed precision)
            synchronize_batch_norm(net, replicas)  # before fusing: synchronised layers stay
            fuse_batch_norm_for_training(net)  # same function, about 30% faster steps
            if s.weights is not None:
                from ghostspec.keras.weights import load_weights

                load_weights(net, plan, s.weights, skip=s.skip)
            teacher = None if distill is None else self._teacher()
            schedule = make_schedule(recipe, steps)
            optimizer = make_optimizer(recipe, net, schedule)
            with policy(recipe.precision):  # mixed_float16: compile adds loss scaling
                model = training_model(
                    net,
                    teacher=teacher,
                    weight=1.0 if distill is None else float(distill.weight),
                    temperature=1.0 if distill is None else float(distill.temperature),
                    probabilities=probabilities,
                    multi_worker=multi,
                )
            compile_(model, optimizer)
            # Build the model's metrics and optimizer from the data's shapes now: fit would
            # draw a batch to do it under a strategy (shifting the data order, and failing
            # across workers: tensorflow/tensorflow#72388).
            specs = train_ds.element_spec
            model._symbolic_build(data_batch=specs)
        model._maybe_symbolic_build = lambda *args, **kwargs: None
        twin = build_model_from(plan)  # float32, uncompiled config: loads without ghostspec
        if [w.path for w in twin.weights] != [w.path for w in net.weights] or [
            w.path for w in twin.trainable_weights
        ] != [w.path for w in model.trainable_weights]:
            raise RuntimeError("the saved model's weights do not line up with the trained one's")
        inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        last = build_model_from(plan)
        compile_(last, inner)  # last.keras carries the optimizer's state with the weights
        return _Built(
            net=net,
            model=model,
            twin=twin,
            last=last,
            optimizer=model.optimizer,
            schedule=schedule,
        )

    def _teacher(self) -> Any:
        """The distillation teacher, loaded (inside the strategy's scope) and checked against the
        student: the same classes and channels; its input resized and re-normalised to its own."""
        from ghostspec.train.distill import Teacher, renormalisation

        s = self.setup
        distill = s.recipe.distill
        plan = s.plan
        student_norm = (tuple(plan.mean), tuple(plan.std))
        if s.teacher_plan is not None:
            from ghostspec.keras.build import build as build_model_from
            from ghostspec.keras.weights import load_weights

            tplan = s.teacher_plan
            model = build_model_from(tplan)
            assert s.teacher_weights is not None
            load_weights(model, tplan, s.teacher_weights)
            size = (int(tplan.input_shape[0]), int(tplan.input_shape[1]))
            norm = renormalisation(student_norm, (tuple(tplan.mean), tuple(tplan.std)))
            head = tplan.nodes[-1]
            probabilities = isinstance(head, Classifier) and head.activation != "linear"
            source = str(distill.teacher.spec)
        else:
            from ghostspec.keras.modelfile import image_input_shape, load_model_file

            source = str(distill.teacher)
            loaded = load_model_file(source, compile=False)
            model = loaded.model
            h, w, c = image_input_shape(model, source)
            outputs = int(model.outputs[0].shape[-1])
            if outputs != len(s.images.classes) or c != int(plan.input_shape[2]):
                raise _error(
                    source,
                    f"the teacher takes {c} channels and has {outputs} outputs; the student "
                    f"takes {plan.input_shape[2]} and the data has {len(s.images.classes)} "
                    "classes",
                    "distil from a teacher trained on the same classes and channels",
                )
            own = None if h is None or w is None else (h, w)
            size = tuple(distill.teacher_input_size) if distill.teacher_input_size else own
            meta = loaded.metadata
            theirs = None if meta is None or meta.mean is None or meta.std is None else meta
            norm = (
                None if theirs is None else renormalisation(student_norm, (theirs.mean, theirs.std))
            )
            probabilities = _ends_in_softmax(model)
        if size == s.size:
            size = None
        self.echo(
            f"distilling from {source}"
            + ("" if size is None else f" at {size[0]}x{size[1]}")
            + f": weight {distill.weight}, temperature {distill.temperature}"
        )
        return Teacher(
            model=model,
            size=size,
            scale=None if norm is None else norm[0],
            shift=None if norm is None else norm[1],
            probabilities=probabilities,
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

    def _metadata(self) -> Any:
        from ghostspec.keras.modelfile import ModelMetadata

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
        built: _Built,
        train_ds: Any,
        val_ds: Any,
        steps: int,
        folder: RunFolder,
        state: RunState,
        strategy: Any,
    ) -> RunResult:
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

        s, recipe = self.setup, self.setup.recipe
        metadata = self._metadata()
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
            echo=self.echo,
            title=f"{s.plan.name}: {s.run_dir.name}",
            keep=2 if multi_worker(strategy) else 1,
        )
        keeper.set_model(model)
        if state.epoch == 0:
            keeper.write_state()  # Ctrl-C in the first epoch leaves a run that resumes
        callbacks = [
            clock,
            EmaValidation(inner),
            ProgressBar(clock, built.schedule, steps, recipe.epochs, self.stream),
            keeper,
            ScalarLogs(folder, state),
            *self.extra,
        ]
        n_train = steps * recipe.batch_size
        where = (
            folder.path
            if s.writer_dir is None
            else f"a copy in {folder.path}; the chief writes {s.run_dir}"
        )
        precision = "" if recipe.precision == "float32" else f", {recipe.precision}"
        self.echo(
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
                self.stream.write("\r\033[K" if getattr(self.stream, "isatty", bool)() else "")
            if keeper.last_written != state.epoch and state.checkpoint is not None:
                # last.keras follows the resume point, not the half-done epoch
                model.load_weights(folder.state_dir / state.checkpoint)
                save_last()
            raise Interrupted(s.run_dir, state.epoch, stop) from None
        files = self._finish(twin, folder, metadata)
        best = state.best_top1
        self.echo(
            f"best val_top1 {best:.4f} at epoch {state.best_epoch} of {state.epoch}"
            if best is not None
            else "no validation figures"
        )
        if s.writer_dir is not None:
            import shutil

            shutil.rmtree(s.writer_dir, ignore_errors=True)
            self.echo(f"done; the chief wrote {s.run_dir}, this worker's copy is removed")
            files = []
        else:
            self.echo(f"wrote {folder.path}/: " + ", ".join(p.name for p in files))
        return RunResult(
            run_dir=s.run_dir,
            best_val_top1=best,
            best_epoch=state.best_epoch,
            epochs=state.epoch,
            stopped_early=state.stopped_early,
            resumed_from=0 if self.setup.existing is None else self.setup.existing.state.epoch,
            history=tuple(dict(r) for r in state.history),
            files=tuple(s.run_dir / p for p in files),
        )

    def _finish(self, twin: Any, folder: RunFolder, metadata: Any) -> list[Path]:
        """GhostNetV3: deploy.keras from best.keras, checked against it. The list of outputs."""
        from ghostspec.keras.fusion import fuse
        from ghostspec.keras.modelfile import save_model_file

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


def _ends_in_softmax(model: Any) -> bool:
    """Whether a loaded classifier's output is softmax probabilities rather than logits (its
    last layer applies a softmax: ghostspec's `classifier_activation: softmax`)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"
