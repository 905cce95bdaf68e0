"""`prepare`: every input of a new or resumed run checked, and its run folder chosen.

Nothing is written and TensorFlow is not imported; the result, a `Setup`, is what a session runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ghostspec.diagnostics import SpecError
from ghostspec.language.fmt import resolved_spec_text
from ghostspec.language.source import load_document
from ghostspec.language.spec import Spec
from ghostspec.plan.ir import Plan
from ghostspec.plan.pipeline import checked_spec
from ghostspec.train.checks import (
    check_classifier,
    check_distill,
    check_run_place,
    check_weights,
    cluster_of,
    input_error,
    input_size,
    load_recipe_source,
    size_source,
)
from ghostspec.train.datarecord import DataRecord, changes, read_record, record_of
from ghostspec.train.run import (
    DEFAULT_ROOT,
    ExistingRun,
    choose_run_folder,
    open_run,
    resolved_recipe_text,
)
from ghostspec.train.state import Network, network_of

if TYPE_CHECKING:
    from ghostspec.data.pipeline import ImageFolder
    from ghostspec.language.recipe import Recipe
    from ghostspec.train.distribute import Cluster


@dataclass(frozen=True)
class Setup:
    """Every checked input of a run; made before TensorFlow is imported."""

    spec_file: str
    overrides: tuple[str, ...]
    spec: Spec
    plan: Plan
    recipe: Recipe
    recipe_file: str
    images: ImageFolder
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
    cluster: Cluster | None = None  # the TF_CONFIG role of a multi-worker run
    writer_dir: Path | None = None  # a worker's own copy of the run folder (not the chief)
    teacher_plan: Plan | None = None  # distill.teacher given as {spec, weights}
    teacher_weights: Mapping[str, np.ndarray] | None = None
    network: Network | None = None  # the fingerprint a resume checks spec.yaml against
    data_record: DataRecord | None = None  # what the images are now (state/data.json)
    data_change: str | None = None  # a resume on changed images, allowed: what changed
    best_problem: str | None = None  # a resume whose best.keras is damaged: why

    @property
    def folder_path(self) -> Path:
        """The folder this process writes: the run folder, or this worker's copy of it."""
        return self.run_dir if self.writer_dir is None else self.writer_dir


def prepare(
    spec: str | Path | None,
    data: str | Path | None,
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
) -> Setup:
    """Check every input and decide the run folder; nothing is written, TensorFlow not loaded.

    `strategy` overrides the recipe's (recorded in a new run's recipe.yaml; for a resumed run it
    applies to this session only, so a run can continue on other hardware); `devices` are the
    devices a one-device or mirrored strategy uses (machine-specific, so never recorded).
    `allow_data_change`: a resumed run continues although its image folder changed since."""
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
            raise input_error(
                "--resume",
                f"a resumed run uses the spec, recipe and data split saved in its folder; "
                f"{', '.join(given)} cannot change them",
                f"drop {', '.join(given)}, or start a new run",
            )
        return _prepare_resume(
            Path(resume), data, strict_data, strategy, tuple(devices), allow_data_change
        )
    if allow_data_change:
        raise input_error(
            "--allow-data-change",
            "applies to a resumed run (--resume RUN_DIR) only",
            "drop --allow-data-change",
        )
    if spec is None:
        raise input_error("SPEC", "name the spec to train", "ghostspec train SPEC --data DIR")
    if data is None:
        raise input_error("--data", "name the image folder to train on", "--data DIR")
    spec_doc = load_document(spec, tuple(overrides))
    spec_obj = checked_spec(spec_doc)
    if strategy is not None and isinstance(recipe, Recipe):
        recipe = recipe.model_copy(update={"strategy": strategy})
    elif strategy is not None:
        hp = [*hp, f"strategy={strategy}"]
    recipe_obj, recipe_doc, recipe_file = load_recipe_source(recipe, hp)
    size = input_size(spec_obj, recipe_obj)
    located = size_source(recipe_obj, recipe_doc, recipe_file)
    plan = pipeline.plan(spec, tuple(overrides), input_size=size, size_from=located)
    images = discover(data, val_split=val_split, seed=recipe_obj.seed)
    check_classifier(plan, spec_doc, images.classes, str(data))
    recipe_obj, teacher_plan, teacher_weights = check_distill(
        recipe_obj, recipe_doc, recipe_file, len(images.classes), size
    )
    state, skip, note = (None, [], None) if weights is None else check_weights(plan, weights)
    cluster = cluster_of(recipe_obj, output)
    writer_dir = None
    if cluster is not None and not cluster.chief:
        from ghostspec.train.distribute import worker_folder

        run_dir = Path(output)  # type: ignore[arg-type]  # the chief's; cluster_of checked it
        writer_dir = worker_folder(run_dir, cluster)
    else:
        run_dir = choose_run_folder(plan.name, output, Path(runs_root))
    check_run_place(run_dir, [data, spec, recipe_file, weights])
    sets = " ".join(f"--set {o}" for o in overrides)
    spec_note = f"resolved by ghostspec train from {spec}{' ' + sets if sets else ''}"
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
        network=network_of(spec_obj, plan.params),
        data_record=record_of(images),
    )


def _resume_source(
    path: Path, strategy: str | None
) -> tuple[ExistingRun, Cluster | None, Path | None]:
    """The run to continue, this worker's TF_CONFIG role (multi-worker runs) and its own copy.

    The chief continues RUN_DIR itself. Another worker continues its copy of the run, which it
    kept when it stopped; a worker without one (a new machine) starts its copy from RUN_DIR
    when RUN_DIR is readable there (a shared filesystem)."""
    from ghostspec.language.recipe import load_recipe
    from ghostspec.train.distribute import read_tf_config, worker_folder

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
        for name in ("spec.yaml", "recipe.yaml", "classes.json", "classes.txt"):
            if (path / name).is_file():
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
    allow_data_change: bool = False,
) -> Setup:
    from ghostspec.data.classnames import shown
    from ghostspec.data.pipeline import discover
    from ghostspec.plan import pipeline

    run, cluster, copy = _resume_source(path, strategy)
    state = run.state
    if state.finished:
        what = "stopped early" if state.stopped_early else f"finished its {state.epoch} epochs"
        raise input_error(
            path, f"this run has {what}; there is nothing to resume", "start a new run"
        )
    spec_doc = load_document(run.folder.spec)
    spec_obj = checked_spec(spec_doc)
    recipe_obj, recipe_doc, recipe_file = load_recipe_source(run.folder.recipe, ())
    if strategy is not None:
        recipe_obj = recipe_obj.model_copy(update={"strategy": strategy})
    if state.epoch > recipe_obj.epochs:
        raise input_error(
            run.folder.state,
            f"the resume state says {state.epoch} epochs are done, but the run's recipe has "
            f"{recipe_obj.epochs}: the state or recipe.yaml was changed",
            "restore the run's recipe.yaml and state, or start a new run",
        )
    size = input_size(spec_obj, recipe_obj)
    located = size_source(recipe_obj, recipe_doc, recipe_file)
    plan = pipeline.plan(run.folder.spec, input_size=size, size_from=located)
    network = network_of(spec_obj, plan.params)
    if state.network is not None and state.network != network:
        raise input_error(
            run.folder.spec,
            f"this is not the network the run trained: it has {plan.params:,} parameters and "
            f"another digest, the run's had {state.network.params:,}",
            "restore the run's spec.yaml (best.keras and last.keras carry a copy in their "
            "metadata), or start a new run with this spec",
        )
    root = Path(data) if data is not None else Path(state.data)
    check_run_place(path, [root])
    images = discover(root, val_split=state.val_split, seed=recipe_obj.seed)
    if tuple(images.classes) != run.classes:
        here = ", ".join(shown(c) for c in images.classes[:6])
        theirs = ", ".join(shown(c) for c in run.classes[:6])
        raise input_error(
            root,
            f"the classes here ({here}) differ from the run's ({theirs})",
            "resume with the image folder the run was started on (--data DIR)",
        )
    check_classifier(plan, spec_doc, images.classes, str(root))
    recipe_obj, teacher_plan, teacher_weights = check_distill(
        recipe_obj, recipe_doc, recipe_file, len(images.classes), size
    )
    record = record_of(images)
    change = _data_change(run, record, root, allow_data_change)
    notes = [] if change is None else [f"the image folder changed since: {change}"]
    best_problem = _best_problem(run)
    if best_problem is not None:
        notes.append(
            f"best.keras {best_problem}; the best epoch is chosen again from epoch "
            f"{state.epoch + 1} on and best.keras rewritten"
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
        notes=tuple(notes),
        network=network,
        data_record=record,
        data_change=change,
        best_problem=best_problem,
    )


def _data_change(run: ExistingRun, now: DataRecord, root: Path, allow: bool) -> str | None:
    """What changed in the image folder since the run recorded it (None: nothing, or a run of
    an earlier version without a record); SpecError unless `allow`."""
    before = read_record(run.folder.data_record)
    found = [] if before is None else changes(before, now)
    if not found:
        return None
    what = "; ".join(found)
    if not allow:
        raise input_error(
            root,
            f"the image folder changed since the run was trained on it: {what}",
            "resume with the data the run started on (--data DIR), or continue on these "
            "images with --allow-data-change (metrics.csv notes it), or start a new run",
        )
    return what


def _best_problem(run: ExistingRun) -> str | None:
    """Why the run's best.keras cannot be trusted (missing, truncated, damaged), or None."""
    import zipfile

    if run.state.best_epoch is None:
        return None
    best = run.folder.best
    if not best.is_file():
        return "is missing"
    try:
        with zipfile.ZipFile(best) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f"is damaged ({bad} fails its checksum)"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return "is truncated or damaged (not a complete zip archive)"
    return None
