"""The training-recipe language, version 1: how to train a network, apart from what the network is.

A recipe is read by the spec's own machinery (source.py: positions, `--hp` overrides, located
diagnostics); the pydantic models below are the language and the only place defaults live.
A [low, high] range written backwards is refused on the range itself; rules between fields (a
warm-up that starts above the rate it warms up to, or lasts longer than the run) are
`rule_problems`, reported on the node to change.

Optimizer fields that the chosen `kind` does not read are ignored (rho by sgd, beta_1 by rmsprop,
and so on), so that `--hp optimizer.kind=...` switches optimizers without editing the file;
the one exception is `nesterov: true` written out with rmsprop or adamw, which asks for
something that only sgd has and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StrictBool,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.languages import RECIPE, SPEC
from ghostspec.language.reading import DocPath
from ghostspec.language.source import Document, load_document
from ghostspec.language.spec import Name, _not_bool, integer, number
from ghostspec.language.validate import validation_diagnostics
from ghostspec.resources import shipped_dir

VERSION_KEY = RECIPE.version_key
RECIPES_DIR = shipped_dir("recipes")
SHORT_NAMES: tuple[str, ...] = ("finetune", "imagenet")
DEFAULT_RECIPE = "finetune"
_DEFER_RULES = "ghostspec.language.recipe.defer_rules"


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise PydanticCustomError(
            "range_order",
            "the range [{lo}, {hi}] is backwards: the first value must not exceed the second",
            {"lo": pair[0], "hi": pair[1]},
        )
    return pair


_Item = TypeVar("_Item")
# A [low, high] pair, low <= high: `_Range[Annotated[float, *number(gt=0.0)]]`.
_Range = Annotated[tuple[_Item, _Item], AfterValidator(_ordered)]
Fraction = Annotated[float, *number(ge=0.0, le=1.0)]
_Side = Annotated[int, *integer(ge=1, le=8192)]
Size = tuple[_Side, _Side]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Optimizer(_Model):
    """The optimizer; fields the chosen kind does not use are ignored (see the module docstring)."""

    kind: Literal["sgd", "rmsprop", "adamw"] = Field(
        "sgd",
        description="sgd (momentum, nesterov), rmsprop (TF-style: epsilon inside the square "
        "root, as TensorFlow and timm's rmsproptf) or adamw (decoupled weight decay).",
    )
    lr: Annotated[float, *number(gt=0.0, le=100.0)] = Field(
        0.1,
        description="Peak learning rate at reference_batch images per step; the rate used is "
        "lr * batch_size / reference_batch (the linear scaling rule).",
    )
    reference_batch: Annotated[int, *integer(ge=1, le=1_048_576)] = Field(
        256, description="The global batch size that lr is given for."
    )
    momentum: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.9, description="sgd and rmsprop: momentum."
    )
    nesterov: StrictBool = Field(
        True, description="sgd: Nesterov momentum. true is refused with rmsprop and adamw."
    )
    rho: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.9, description="rmsprop: decay of the moving average of squared gradients."
    )
    epsilon: Annotated[float, *number(gt=0.0, le=1.0)] = Field(
        0.001,
        description="rmsprop: added inside the square root (TF-style); adamw: added to the "
        "denominator as usual.",
    )
    beta_1: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.9, description="adamw: decay of the first moment."
    )
    beta_2: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.999, description="adamw: decay of the second moment."
    )
    weight_decay: Annotated[float, *number(ge=0.0, le=1.0)] = Field(
        1.0e-5,
        description="L2 weight decay (adamw: decoupled, multiplied by the learning rate).",
    )
    decay_norm_and_bias: StrictBool = Field(
        False,
        description="false: BatchNorm parameters and biases get no weight decay, only "
        "convolution and dense kernels do.",
    )


class Schedule(_Model):
    """The learning-rate schedule over epochs, after an optional linear warm-up."""

    kind: Literal["constant", "step", "cosine"] = Field(
        "cosine",
        description="constant; step (lr * decay_rate ** floor(epoch / decay_epochs)); cosine "
        "(from the scaled lr down to min_lr at the last epoch).",
    )
    decay_rate: Annotated[float, *number(gt=0.0, le=1.0)] = Field(
        0.973, description="step: the factor applied every decay_epochs."
    )
    decay_epochs: Annotated[float, *number(gt=0.0, le=100_000.0)] = Field(
        2.4, description="step: the interval in epochs (fractions allowed)."
    )
    min_lr: Annotated[float, *number(ge=0.0, le=100.0)] = Field(
        0.0, description="cosine: the rate at the end; at most the scaled lr."
    )
    warmup_epochs: Annotated[float, *number(ge=0.0, le=100_000.0)] = Field(
        0.0,
        description="Epochs of linear warm-up from warmup_lr to the scaled lr, in place of the "
        "schedule's first epochs (the schedule counts epochs from the start of training, as "
        "timm does); 0 for none.",
    )
    warmup_lr: Annotated[float, *number(ge=0.0, le=100.0)] = Field(
        1.0e-6, description="The rate at the first step of the warm-up; at most the scaled lr."
    )


class Crop(_Model):
    """Random resized crop: a random area fraction and aspect ratio, resized to the input size."""

    scale: _Range[Annotated[float, *number(gt=0.0, le=1.0)]] = Field(
        (0.08, 1.0), description="[low, high] fraction of the image area, 0 < low <= high <= 1."
    )
    ratio: _Range[Annotated[float, *number(gt=0.0, le=100.0)]] = Field(
        (0.75, 1.3333),
        description="[low, high] aspect ratio (width / height) of the crop, 0 < low <= high.",
    )


class RandAugment(_Model):
    """RandAugment: `layers` random operations per image at a (noisy) magnitude."""

    magnitude: Annotated[float, *number(ge=0.0, le=10.0)] = Field(
        9.0, description="Strength on a 0 to 10 scale (timm's m9 is 9)."
    )
    magnitude_std: Annotated[float, *number(ge=0.0, le=10.0)] = Field(
        0.5,
        description="Standard deviation of the magnitude, drawn anew for every image "
        "(timm's mstd0.5); 0 for a fixed magnitude.",
    )
    layers: Annotated[int, *integer(ge=1, le=16)] = Field(
        2, description="Operations applied to each image."
    )


class Augment(_Model):
    """Training-time augmentation (evaluation images are never augmented)."""

    crop: Crop | None = Field(
        Crop(), description="Random resized crop; null resizes the whole image instead."
    )
    flip: StrictBool = Field(True, description="Random horizontal flip.")
    randaugment: RandAugment | None = Field(
        RandAugment(), description="RandAugment settings; null for none."
    )
    erasing: Fraction = Field(
        0.0, description="Random erasing: the probability that a rectangle is replaced by noise."
    )


class Eval(_Model):
    """Evaluation preprocessing (validation split, evaluate, int8 calibration)."""

    crop_pct: Annotated[float, *number(gt=0.0, le=1.0)] = Field(
        0.875,
        description="Resize the shorter side to size / crop_pct, then take the centre crop.",
    )


class Ema(_Model):
    """An exponential moving average of the weights, used for validation and best.keras."""

    decay: Annotated[float, *number(gt=0.0, lt=1.0)] = Field(
        0.9999, description="Per-step decay: ema = decay * ema + (1 - decay) * weights."
    )


class EarlyStopping(_Model):
    """Stop when the monitored validation figure has not improved for `patience` epochs."""

    patience: Annotated[int, *integer(ge=1, le=100_000)] = Field(
        10, description="Epochs without improvement before stopping."
    )
    min_delta: Annotated[float, *number(ge=0.0, le=1_000.0)] = Field(
        0.0, description="The smallest change that counts as an improvement."
    )
    monitor: Literal["val_top1", "val_top5", "val_loss"] = Field(
        "val_top1", description="The figure watched: accuracies rise, the loss falls."
    )


class TeacherSpec(_Model):
    """A teacher built from a spec and its weights."""

    spec: Annotated[str, Field(min_length=1)] = Field(description="The teacher's spec file.")
    weights: Annotated[str, Field(min_length=1)] = Field(
        description="Its weights: a reference state dict (.safetensors, .npz, .pth)."
    )


def _keras_file(value: str) -> str:
    if not value.endswith(".keras"):
        raise PydanticCustomError(
            "keras_path",
            "{value} is not a .keras file; give a saved model (PATH.keras) or {other}",
            {"value": repr(value), "other": "{spec: PATH, weights: PATH}"},
        )
    return value


# Union tags in brackets, which error locations drop like pydantic's own (validate._strip_loc).
FILE_TAG, SPEC_TAG = "teacher[file]", "teacher[spec]"


def _teacher_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return FILE_TAG
    if isinstance(value, dict | TeacherSpec):
        return SPEC_TAG
    return None


KerasPath = Annotated[
    str,
    Strict(),
    Field(json_schema_extra={"pattern": r"\.keras$"}),
    AfterValidator(_keras_file),
]
Teacher = Annotated[
    Annotated[KerasPath, Tag(FILE_TAG)] | Annotated[TeacherSpec, Tag(SPEC_TAG)],
    Discriminator(
        _teacher_kind,
        custom_error_type="teacher",
        custom_error_message="expected a saved model (PATH.keras) or {spec: PATH, weights: PATH}",
    ),
]


class Distill(_Model):
    """Knowledge distillation from a frozen teacher (GhostNetV3's training strategy)."""

    teacher: Teacher = Field(
        description="A saved model (PATH.keras) or {spec: PATH, weights: PATH}."
    )
    weight: Annotated[float, *number(ge=0.0, le=1_000.0)] = Field(
        1.0, description="Weight of the distillation term added to the label cross-entropy."
    )
    temperature: Annotated[float, *number(gt=0.0, le=1_000.0)] = Field(
        1.0, description="Softening temperature of both distributions."
    )
    teacher_input_size: Size | None = Field(
        None,
        description="[H, W] the teacher is fed (the student's batch resized); null = the "
        "student's size.",
    )


class Recipe(_Model):
    """How to train a network: optimizer, schedule, augmentation, and what to keep."""

    ghostspec_recipe: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(
        alias=VERSION_KEY, description="Format version of the recipe language."
    )
    name: Name | None = Field(None, description="A label for the recipe.")
    description: str | None = Field(None, description="Free text.")
    epochs: Annotated[int, *integer(ge=1, le=100_000)] = Field(
        10, description="Passes over the training split."
    )
    batch_size: Annotated[int, *integer(ge=1, le=1_048_576)] = Field(
        64, description="GLOBAL batch size: images per step across every replica and worker."
    )
    input_size: Size | None = Field(
        None,
        description="[H, W] for training and validation; null = the spec's input size (224x224 "
        "if the spec accepts any size).",
    )
    optimizer: Optimizer = Field(Optimizer(), description="The optimizer.")
    schedule: Schedule = Field(Schedule(), description="The learning-rate schedule.")
    label_smoothing: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.1, description="Label smoothing of the cross-entropy with the labels."
    )
    augment: Augment = Field(Augment(), description="Training augmentation.")
    eval: Eval = Field(Eval(), description="Evaluation preprocessing.")
    ema: Ema | None = Field(Ema(), description="Weight EMA; null for none.")
    seed: Annotated[int, *integer(ge=0, le=2**32 - 1)] = Field(
        0, description="Seeds Python, NumPy, TensorFlow and the data order."
    )
    deterministic: StrictBool = Field(
        False, description="Turn on TensorFlow's op determinism (slower, bit-reproducible)."
    )
    checkpoint_every: Annotated[int, *integer(ge=1, le=100_000)] = Field(
        1, description="Write last.keras every this many epochs (and at the end)."
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop early when validation stops improving; null for never."
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32",
        description="Keras dtype policy; the classifier's output, the loss and BatchNorm "
        "statistics stay float32.",
    )
    strategy: Literal["auto", "one", "mirrored", "multiworker"] = Field(
        "auto",
        description="auto: mirrored over every visible GPU when there are several, else one "
        "device; multiworker reads TF_CONFIG.",
    )
    distill: Distill | None = Field(None, description="Knowledge distillation; null for none.")

    @property
    def scaled_lr(self) -> float:
        """The peak learning rate for this batch size: lr * batch_size / reference_batch."""
        return self.optimizer.lr * self.batch_size / self.optimizer.reference_batch

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Recipe:
        if info.context and info.context.get(_DEFER_RULES):
            return self  # load_recipe reports them, each on its own node
        problems = rule_problems(self)
        if problems:
            raise ValueError("; ".join(f"{_dotted(p.path)}: {p.message}" for p in problems))
        return self


@dataclass(frozen=True)
class Problem:
    """A rule between fields that the recipe breaks, on the node to change."""

    path: DocPath
    message: str
    hint: str | None = None


def _dotted(path: DocPath) -> str:
    return ".".join(str(k) for k in path)


def rule_problems(recipe: Recipe) -> list[Problem]:
    """Rules no JSON Schema can state; each names the node the user should change."""
    problems: list[Problem] = []
    opt, sched = recipe.optimizer, recipe.schedule
    peak = recipe.scaled_lr
    scaled = (
        f"the scaled lr {peak:g} (lr {opt.lr:g} * batch_size {recipe.batch_size} / "
        f"reference_batch {opt.reference_batch})"
    )
    if opt.kind != "sgd" and opt.nesterov and "nesterov" in opt.model_fields_set:
        problems.append(
            Problem(
                ("optimizer", "nesterov"),
                f"Nesterov momentum is an sgd option; {opt.kind} has none",
                "remove optimizer.nesterov (or set it to false), or use optimizer.kind sgd",
            )
        )
    if sched.warmup_epochs > 0 and sched.warmup_lr > peak:
        problems.append(
            Problem(
                ("schedule", "warmup_lr"),
                f"the warm-up starts at {sched.warmup_lr:g}, above {scaled} it warms up to",
                f"use a warmup_lr of at most {peak:g}, or set schedule.warmup_epochs to 0",
            )
        )
    if sched.warmup_epochs > recipe.epochs:
        problems.append(
            Problem(
                ("schedule", "warmup_epochs"),
                f"the warm-up lasts {sched.warmup_epochs:g} epochs, longer than the whole run "
                f"of {recipe.epochs}",
                f"use at most {recipe.epochs} warm-up epochs",
            )
        )
    if sched.kind == "cosine" and sched.min_lr > peak:
        problems.append(
            Problem(
                ("schedule", "min_lr"),
                f"the cosine floor {sched.min_lr:g} is above {scaled}",
                f"use a min_lr of at most {peak:g}",
            )
        )
    return problems


def resolve_source(source: str | Path) -> Path:
    """A path as given, or a shipped recipe's file for a short name (`imagenet`, `finetune`)."""
    text = str(source)
    if text in SHORT_NAMES and not Path(text).exists():
        return RECIPES_DIR / f"{text}.yaml"
    return Path(source)


def load_recipe(
    source: str | Path, overrides: Sequence[str] = (), *, text: str | None = None
) -> Recipe:
    """Read and validate a recipe file, a short name or `text` named `source`. Raises SpecError."""
    path = source if text is not None else resolve_source(source)
    if text is None and not Path(path).exists():
        raise SpecError(
            [
                Diagnostic(
                    file=str(source),
                    message="no such recipe file",
                    hint=f"check the path, or name a shipped recipe: {', '.join(SHORT_NAMES)}",
                )
            ]
        )
    doc = load_document(path, tuple(overrides), text=text, language=RECIPE, others=(SPEC,))
    return recipe_from_document(doc)


def recipe_from_document(doc: Document) -> Recipe:
    """Validate a loaded document as a recipe: schema errors, then the rules between fields."""
    data = doc.data()
    try:
        recipe = Recipe.model_validate(data, context={_DEFER_RULES: True})
    except ValidationError as exc:
        raise SpecError(validation_diagnostics(exc, doc, Recipe)) from None
    problems = rule_problems(recipe)
    if problems:
        raise SpecError([doc.diagnostic(p.path, p.message, p.hint) for p in problems])
    return recipe


def default_recipe() -> Recipe:
    """The shipped small-data recipe, used when `train` is given none."""
    return load_recipe(DEFAULT_RECIPE)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe fully resolved, as YAML that `load_recipe` reads back to an equal Recipe."""
    from ghostspec.language.fmt import format_text
    from ghostspec.language.reading import dump_yaml

    data: dict[str, Any] = recipe.model_dump(mode="json", by_alias=True)
    if recipe.optimizer.kind != "sgd":
        data["optimizer"].pop("nesterov")  # unused, and `true` is refused outside sgd
    return format_text(dump_yaml(data), "recipe.yaml")


__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES_DIR",
    "VERSION_KEY",
    "Augment",
    "Crop",
    "Distill",
    "EarlyStopping",
    "Ema",
    "Eval",
    "Optimizer",
    "Problem",
    "RandAugment",
    "Recipe",
    "Schedule",
    "TeacherSpec",
    "default_recipe",
    "dump_recipe",
    "load_recipe",
    "recipe_from_document",
    "resolve_source",
    "rule_problems",
]
