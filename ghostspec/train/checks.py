"""The checks `prepare` runs on a run's inputs before TensorFlow is imported.

Recipe, classifier, weights, distillation teacher, cluster role and input size: each fails with
a SpecError that points into the file at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.source import Document, load_document
from ghostspec.language.spec import Spec
from ghostspec.plan.ir import Classifier, Plan

if TYPE_CHECKING:
    from ghostspec.language.recipe import Recipe, TeacherSpec
    from ghostspec.plan.checks import SizeLocator
    from ghostspec.train.distribute import Cluster

DEFAULT_SIZE = (224, 224)  # for specs that accept any input size and recipes that name none


def input_error(
    file: str | Path, message: str, hint: str | None = None, path: str = ""
) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint, path=path)])


def load_recipe_source(
    source: str | Path | Recipe | None, hp: Sequence[str]
) -> tuple[Recipe, Callable[[], Document] | None, str]:
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


def recipe_problem(
    document: Callable[[], Document] | None,
    file: str,
    path: tuple[str | int, ...],
    message: str,
    hint: str,
) -> SpecError:
    if document is not None:
        return SpecError([document().diagnostic(path, message, hint)])
    return input_error(file, message, hint, path=".".join(map(str, path)))


def check_distill(
    recipe: Recipe,
    document: Callable[[], Document] | None,
    file: str,
    classes: int,
    size: tuple[int, int],
) -> tuple[Recipe, Plan | None, Mapping[str, np.ndarray] | None]:
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
            raise recipe_problem(
                document,
                file,
                where,
                f"the teacher {teacher} is not a file"
                + ("" if path.is_absolute() else f" (relative to {Path.cwd()})"),
                "give a .keras file saved by ghostspec train or build (relative to the current "
                "folder), or {spec: PATH, weights: PATH}",
            )
        resolved: str | TeacherSpec = str(path.resolve())
        plan, state = None, None
    else:
        for key, value in (("spec", teacher.spec), ("weights", teacher.weights)):
            if not Path(value).is_file():
                raise recipe_problem(
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
        sized_by: tuple[str, ...] = (
            ("distill", "teacher_input_size") if distill.teacher_input_size else ("input_size",)
        )
        plan = pipeline.plan(
            teacher.spec,
            input_size=(teacher_size[0], teacher_size[1]),
            size_from=size_source(recipe, document, file, sized_by),
        )
        head = plan.nodes[-1]
        if not isinstance(head, Classifier) or head.linear.cout != classes:
            got = head.linear.cout if isinstance(head, Classifier) else "no"
            raise recipe_problem(
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


def cluster_of(recipe: Recipe, output: str | Path | None) -> Cluster | None:
    """The TF_CONFIG role of a multi-worker run (None for other strategies); such a run needs
    the same -o RUN_DIR on every worker, which names each worker's own copy too."""
    if recipe.strategy != "multiworker":
        return None
    from ghostspec.train.distribute import read_tf_config

    cluster = read_tf_config(required=True)
    if cluster.workers > 1 and output is None:
        raise input_error(
            "-o",
            "a multi-worker run needs its run folder named, the same on every worker",
            "add -o RUN_DIR (the chief writes it; the others keep a temporary copy)",
        )
    return cluster


def check_run_place(run_dir: Path, inputs: Sequence[str | Path | None]) -> None:
    """The run folder is none of the run's inputs and lies in none of their folders: inside the
    image folder it would become a class of the next training on that folder."""
    from ghostspec.files import check_not_an_input

    check_not_an_input(
        run_dir,
        inputs,
        what="run folder",
        hint="put the run outside the image folder (-o RUN_DIR): inside it, the run folder "
        "would become a class of the next training on that folder",
    )


def size_source(
    recipe: Recipe,
    document: Callable[[], Document] | None,
    file: str,
    key: tuple[str, ...] = ("input_size",),
) -> SizeLocator:
    """Where the size a run trains at comes from, for the planner's size checks: the recipe's
    `key` when it names one (its --hp override too), else the default for a spec of any size."""
    from ghostspec.plan.checks import on_flag

    if key == ("input_size",) and recipe.input_size is None:
        return on_flag(f"{file}: input_size (null: the spec's size, 224x224 for any size)")

    def locate(axis: int, message: str, hint: str) -> Diagnostic:
        return recipe_problem(document, file, (*key, axis), message, hint).diagnostics[0]

    return locate


def input_size(spec: Spec, recipe: Recipe) -> tuple[int, int]:
    if recipe.input_size is not None:
        return (int(recipe.input_size[0]), int(recipe.input_size[1]))
    h, w = spec.input.shape[0], spec.input.shape[1]
    return DEFAULT_SIZE if h is None or w is None else (int(h), int(w))


def check_classifier(plan: Plan, doc: Document, classes: Sequence[str], data: str) -> None:
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


def check_weights(
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
