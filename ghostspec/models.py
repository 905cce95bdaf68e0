"""keras.applications-style constructors for the registered networks, plus `create_model`.

`ghostnet_100(include_top=False, pooling="avg")` means what `keras.applications.MobileNetV3Large`
means by the same arguments. Each argument becomes a `--set` override of the registered spec
(`head.include_top`, `head.pooling`, `head.classes`, `input.shape`, ...), so the spec's own
validation checks it and the plan stays the single source of every number. Only `create_model`
imports Keras, when it builds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.names import REGISTRY

if TYPE_CHECKING:
    import keras

POOLINGS = (None, "avg", "max")
CLASSIFIER_ACTIVATIONS = (None, "linear", "softmax")
DEFAULT_CLASSES = 1000


def _problem(argument: str, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(file=argument, message=message, hint=hint)


def overrides_for(
    *,
    include_top: bool = True,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = DEFAULT_CLASSES,
    classifier_activation: str | None = "linear",
    features: Any = None,
    taps: str | None = None,
) -> list[str]:
    """The spec overrides that give keras.applications' arguments their meaning."""
    problems: list[Diagnostic] = []
    if not isinstance(include_top, bool):
        problems.append(_problem("include_top", f"must be True or False, not {include_top!r}"))
    top = include_top is True and features is None  # the model ends in the classifier
    without = "with features=" if features is not None else "with include_top=False"
    if pooling not in POOLINGS:
        problems.append(_problem("pooling", f"{pooling!r} is not one of None, 'avg', 'max'"))
    elif pooling is not None and features is not None:
        message = "does not apply with features=: every feature map is returned unpooled"
        problems.append(_problem("pooling", message, "drop pooling="))
    elif pooling is not None and top:
        problems.append(
            _problem(
                "pooling",
                "applies to feature extraction, with include_top=False (the classifier always "
                "pools the way the spec's head.pooling says)",
                "drop pooling=, or pass include_top=False",
            )
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        problems.append(_problem("classes", f"must be a positive integer, not {classes!r}"))
    elif not top and classes != DEFAULT_CLASSES:
        message = f"is the classifier's width; there is no classifier {without}"
        problems.append(_problem("classes", message, "drop classes="))
    if classifier_activation not in CLASSIFIER_ACTIVATIONS:
        problems.append(
            _problem(
                "classifier_activation",
                f"{classifier_activation!r} is not one of None, 'linear', 'softmax'",
                "None and 'linear' give logits, 'softmax' probabilities",
            )
        )
    elif not top and classifier_activation == "softmax":
        message = f"there is no classifier {without}"
        problems.append(_problem("classifier_activation", message, "drop classifier_activation="))
    if taps not in (None, "last", "timm"):
        message = f"{taps!r} is not one of 'last' (the default) and 'timm'"
        problems.append(_problem("taps", message))
    elif taps is not None and features is None:
        message = "says which maps features= returns, and features= is not given"
        problems.append(_problem("taps", message, "pass features=[1, 2, 3, 4, 5] too"))
    shape = None if input_shape is None else list(input_shape)
    if shape is not None and len(shape) != 3:
        problems.append(
            _problem(
                "input_shape",
                f"must be (height, width, channels), not {tuple(shape)!r}",
                "e.g. (224, 224, 3), or (None, None, 3) for any size",
            )
        )
    if problems:
        raise SpecError(problems)

    values: dict[str, Any] = {}
    if features is not None:
        # a backbone (issue 12's head.features): the spec drops the top itself
        if not include_top:
            values["head.include_top"] = False
        values["head.features"] = features
        if taps is not None:
            values["head.taps"] = taps
    else:
        values["head.include_top"] = include_top
        if include_top:
            if classes != DEFAULT_CLASSES:
                values["head.classes"] = classes
            values["head.classifier_activation"] = classifier_activation or "linear"
        else:
            values["head.pooling"] = pooling
    if shape is not None:
        values["input.shape"] = shape
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def create_model(
    name: str | Path,
    include_top: bool = True,
    weights: str | Path | None = None,
    *,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = DEFAULT_CLASSES,
    classifier_activation: str | None = "linear",
    features: Any = None,
    taps: str | None = None,
) -> keras.Model:
    """Build a registered network (`ghostspec list`) or a spec file as a keras.Model.

    Arguments mean what they mean in keras.applications:
    - include_top: keep the classifier (the 1280-wide head conv and the linear layer); False
      gives a feature extractor, shaped by `pooling`.
    - weights: None (random initialisation) or the path of a reference state dict in timm's
      layout (.safetensors, .npz, .pth). Nothing is downloaded: "imagenet" is refused.
    - input_shape: (height, width, channels); None keeps the spec's (224, 224, 3); None for
      height and width accepts any size.
    - pooling: with include_top=False, None leaves the last feature map (4-D), "avg" and "max"
      pool it globally (2-D).
    - classes: the classifier's outputs, with include_top=True.
    - classifier_activation: "linear" (or None) returns logits, as the reference does; "softmax"
      probabilities. (keras.applications defaults to softmax; ghostspec to timm's logits.)
    - features: a backbone returning these feature maps as a list (the spec's `head.features`):
      levels (log2 of the stride, [2, 3, 4, 5] are strides 4 to 32) or node names. No top then.
    - taps: which map stands for a level: "last" (the default: the last block at that stride)
      or "timm" (what timm's features_only returns).
    Raises SpecError for bad arguments, with the argument's name.
    """
    source = str(name)
    if weights is not None and str(weights).lower() == "imagenet" and not Path(weights).exists():
        raise SpecError(
            [
                _problem(
                    "weights",
                    "ghostspec downloads nothing, so there are no 'imagenet' weights to fetch",
                    "pass the path of a reference state dict you have (for example timm's "
                    f"{source} checkpoint saved as .safetensors or .pth), or weights=None",
                )
            ]
        )
    overrides = overrides_for(
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        features=features,
        taps=taps,
    )
    from ghostspec.keras.build import build

    return build(source, overrides, weights=weights)


def _constructor(name: str) -> Callable[..., keras.Model]:
    entry = REGISTRY[name]

    def constructor(
        include_top: bool = True,
        weights: str | Path | None = None,
        *,
        input_shape: Sequence[int | None] | None = None,
        pooling: str | None = None,
        classes: int = DEFAULT_CLASSES,
        classifier_activation: str | None = "linear",
        features: Any = None,
        taps: str | None = None,
    ) -> keras.Model:
        return create_model(
            name,
            include_top,
            weights,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            features=features,
            taps=taps,
        )

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = (
        f"{entry.description}: specs/{entry.spec} at width {entry.width}, as a keras.Model.\n\n"
        "Arguments as in keras.applications; see `ghostspec.create_model`."
    )
    return constructor


ghostnet_050 = _constructor("ghostnet_050")
ghostnet_100 = _constructor("ghostnet_100")
ghostnet_130 = _constructor("ghostnet_130")
ghostnetv2_100 = _constructor("ghostnetv2_100")
ghostnetv2_130 = _constructor("ghostnetv2_130")
ghostnetv2_160 = _constructor("ghostnetv2_160")
ghostnetv3_050 = _constructor("ghostnetv3_050")
ghostnetv3_100 = _constructor("ghostnetv3_100")
ghostnetv3_130 = _constructor("ghostnetv3_130")
ghostnetv3_160 = _constructor("ghostnetv3_160")
ghostnet_small_100 = _constructor("ghostnet_small_100")

__all__ = ["create_model", *REGISTRY]
