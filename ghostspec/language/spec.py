"""The spec language, version 1: pydantic models are the language, and defaults live here only.

A block is written either as a compact row `[hidden, out, se, stride, kernel]` or as a mapping with
those names plus optional fields. Both validate into the same `Block`.

Extension point for block variants: module-level options live in `GhostSettings`. The network
sets them under `ghost:`, a block may override any of them under its own `ghost:`, and lowering
merges the two (see `plan.merge_ghost`). A variant (GhostNetV2's DFC attention, GhostNetV3's
re-parameterised branches) is a new optional field of `GhostSettings` plus the plan node and
builder that read it; rows, stages and the rest of the language stay as they are.

Rules between fields that JSON Schema can state (repeat with stride 2, a classifier without
pooling) are model validators here, each with its draft-07 form (`if`/`then`) beside it, so the
editor schema states them too; `rule` names the field a diagnostic should point at.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ghostspec.language.reading import Language

# a `head.features` entry: a level (log2 of the reduction), or a node by its reference name
NODE_NAME = re.compile(r"^(conv_stem|blocks\.(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3}))?)$")
MAX_LEVEL = 16

ROW_COLUMNS: tuple[str, ...] = ("hidden", "out", "se", "stride", "kernel")
FORMAT_VERSION = 1
MAX_CHANNELS = 100_000
KERNELS = tuple(range(1, 16, 2))

# What the reader needs to know about spec files (see source.Language).
LANGUAGE = Language(
    row_columns=ROW_COLUMNS,
    flag="--set",
    examples=("width=1.3", "stages.0.0.3=2"),
    start="a spec starts with `ghostspec: 1`, a name and its stages",
    version_key="ghostspec",
    noun="spec",
    title="network spec",
    used_by="specs go to validate, inspect, plot, build, export and train",
)


def _integral(value: Any) -> Any:
    """Accept 16.0 as 16 (JSON Schema counts it as an integer too); never booleans."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise PydanticCustomError("odd", "{value} is even; kernels must be odd", {"value": value})
    return value


def _not_bool(value: Any) -> Any:
    """YAML's true is Python's 1: refuse it where a number is meant."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "bool_for_number", "expected a number, got boolean {v}", {"v": value}
        )
    return value


def rule(kind: str, message: str, field: str, hint: str, **values: Any) -> PydanticCustomError:
    """A rule between fields, reported on `field` of the model (validate.py reads ctx)."""
    return PydanticCustomError(kind, message, {**values, "field": field, "hint": hint})


def _one_or_two(value: int) -> int:
    if value not in (1, 2):
        raise PydanticCustomError("stride", "{value} is not one of 1, 2", {"value": value})
    return value


def integer(**bounds: Any) -> tuple[Any, ...]:
    """A strict integer with bounds that JSON Schema sees as minimum/maximum, written
    `Annotated[int, *integer(ge=1)]` (a call is no type to a type checker, an Annotated is)."""
    return Strict(), Field(**bounds), BeforeValidator(_integral)


def number(**bounds: Any) -> tuple[Any, ...]:
    """A strict, finite float (integers are accepted) with bounds, written
    `Annotated[float, *number(gt=0.0)]`."""
    return Strict(), Field(allow_inf_nan=False, **bounds)


Channels = Annotated[int, *integer(ge=1, le=MAX_CHANNELS)]
Kernel = Annotated[
    int,
    Strict(),
    Field(ge=KERNELS[0], le=KERNELS[-1]),
    BeforeValidator(_integral),
    AfterValidator(_odd),
    # an enum, so the editor's message lists the valid kernels and completion offers them
    WithJsonSchema({"type": "integer", "enum": list(KERNELS)}),
]
Stride = Annotated[
    int,
    Strict(),
    Field(json_schema_extra={"enum": [1, 2]}),
    BeforeValidator(_integral),
    AfterValidator(_one_or_two),
]
SeRatio = Annotated[float, *number(ge=0.0, le=1.0)]
NAME_RULE = (
    "use letters, digits, '_', '.', '-' (starting with a letter or digit), at most 64 characters"
)
Name = Annotated[
    str,
    Strict(),
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        # yaml-language-server shows this instead of the regular expression
        json_schema_extra={"patternErrorMessage": f"not a valid name: {NAME_RULE}"},
    ),
]

Activation = Literal["relu", "relu6", "hard_swish", "swish", "gelu", "linear"]
ClassifierActivation = Literal["linear", "softmax"]
Gate = Literal["hard_sigmoid", "sigmoid"]
Pooling = Literal["avg", "max"]


class _Model(BaseModel):
    # titles are the keys as written, so editor messages and hovers name what the user typed
    model_config = ConfigDict(
        extra="forbid", frozen=True, field_title_generator=lambda name, _info: name
    )


class InputSpec(_Model):
    """What the network is fed."""

    shape: tuple[
        Annotated[int, *integer(ge=1, le=8192)] | None,
        Annotated[int, *integer(ge=1, le=8192)] | None,
        Annotated[int, *integer(ge=1, le=4096)],
    ] = Field(
        (224, 224, 3),
        description="Height, width and channels (channels-last). Height and width may be null: "
        "the model then accepts any size.",
    )
    mean: Stats | None = Field(
        None,
        description="Per-channel mean subtracted from [0, 1] pixels before the model (used to "
        "prepare int8 calibration images); default: ImageNet's for 3 channels, else 0.",
    )
    std: Spread | None = Field(
        None,
        description="Per-channel standard deviation dividing [0, 1] pixels; default: ImageNet's "
        "for 3 channels, else 1.",
    )


Stats = Annotated[
    list[Annotated[float, *number(ge=-1000.0, le=1000.0)]], Field(min_length=1, max_length=4096)
]
Spread = Annotated[
    list[Annotated[float, *number(gt=0.0, le=1000.0)]], Field(min_length=1, max_length=4096)
]


class Normalization(_Model):
    """BatchNorm settings for every normalisation layer."""

    epsilon: Annotated[float, *number(gt=0.0, le=0.1)] = Field(
        1e-5, description="Added to the variance; the reference uses 1e-5."
    )
    momentum: Annotated[float, *number(gt=0.0, lt=1.0)] = Field(
        0.9,
        description="Keras convention (weight of the old running value); PyTorch's 0.1 is 0.9.",
    )


Attention = Literal["none", "dfc"]
Branches = Annotated[int, *integer(ge=0, le=8)]
Ratio = Annotated[int, *integer(ge=2, le=8)]


class GhostSettings(_Model):
    """Ghost module settings; the extension point for block variants (see the module docstring)."""

    ratio: Ratio = Field(2, description="s in the paper: output channels per intrinsic channel.")
    cheap_kernel: Kernel = Field(3, description="d in the paper: kernel of the cheap depthwise op.")
    attention: Attention = Field(
        "none",
        description="GhostNetV2: 'dfc' adds decoupled fully connected attention to the first "
        "ghost module of every block from attention_from on.",
    )
    attention_from: Annotated[int, *integer(ge=0, le=4096)] = Field(
        2,
        description="Index (counting every block from 0, across stages) of the first block that "
        "gets attention; the reference GhostNetV2 starts at 2, the third block.",
    )
    dfc_kernel: Kernel = Field(
        5,
        description="Length of the DFC attention's horizontal (1 x k) and vertical (k x 1) convs.",
    )
    branches: Branches = Field(
        0,
        description="GhostNetV3: re-parameterisable k x k conv branches per ghost-module conv and "
        "strided depthwise conv at training time (the reference uses 3); 0 means plain "
        "convolutions. `ghostspec.fuse` folds them into single convolutions for deployment.",
    )


class GhostOverride(_Model):
    """Per-block changes to the network's ghost module settings; unset fields are inherited."""

    ratio: Ratio | None = Field(None, description="Overrides ghost.ratio.")
    cheap_kernel: Kernel | None = Field(None, description="Overrides ghost.cheap_kernel.")
    attention: Attention | None = Field(
        None, description="'dfc' or 'none' for this block, whatever ghost.attention_from says."
    )
    dfc_kernel: Kernel | None = Field(None, description="Overrides ghost.dfc_kernel.")
    branches: Branches | None = Field(None, description="Overrides ghost.branches.")


class SqueezeExcite(_Model):
    """Squeeze-excite settings shared by every block whose se ratio is above 0."""

    gate: Gate = Field(
        "hard_sigmoid", description="Gate function; hard_sigmoid is relu6(x + 3) / 6."
    )
    divisor: Annotated[int, *integer(ge=1, le=256)] = Field(
        4, description="The reduced width is rounded to a multiple of this (make_divisible)."
    )
    activation: Activation = Field("relu", description="Activation between the two 1x1 convs.")


class Stem(_Model):
    """The first convolution, BatchNorm and activation."""

    filters: Channels = Field(16, description="Output channels before the width multiplier.")
    kernel: Kernel = Field(3, description="Kernel size.")
    stride: Stride = Field(2, description="Stride: 1 or 2.")
    activation: Activation | None = Field(None, description="Defaults to the network activation.")


POOLING_RULE = "a classifier needs global pooling"
POOLING_HINT = "set head.pooling to avg or max, or set head.include_top to false"


def _tap_entry(value: Any) -> Any:
    """One head.features entry: a level (whole number) or a node name, with one clear message."""
    value = _integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_LEVEL:
            raise PydanticCustomError(
                "tap_level", "level {v} is outside 0 to {top}", {"v": value, "top": MAX_LEVEL}
            )
        return value
    if isinstance(value, str):
        if not NODE_NAME.fullmatch(value):
            raise PydanticCustomError(
                "tap_name",
                "'{v}' is not a node name: use conv_stem, blocks.S (stage S's output) or "
                "blocks.S.I (a block)",
                {"v": value},
            )
        return value
    raise PydanticCustomError(
        "tap_type",
        "expected a level (a whole number) or a node name such as blocks.6.4, got {v}",
        {"v": f"boolean {str(value).lower()}" if isinstance(value, bool) else _kind(value)},
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds: dict[type[Any], str] = {dict: "a mapping", list: "a list"}
    return kinds.get(type(value), repr(value))


TapEntry = Annotated[
    int | str,
    BeforeValidator(_tap_entry),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
                {
                    "type": "string",
                    "pattern": NODE_NAME.pattern,
                    "patternErrorMessage": "not a node name: use conv_stem, blocks.S (stage S's "
                    "output) or blocks.S.I (a block)",
                },
            ],
            "description": "A level (log2 of the stride: 1 is stride 2, 5 is stride 32) or a "
            "node: conv_stem, blocks.S (stage S's output) or blocks.S.I (a block).",
        }
    ),
]
TapMode = Literal["last", "timm"]


class Head(_Model):
    """The last 1x1 convolution, pooling, the hidden 1x1 convolution and the classifier; or,
    with `features`, none of them: the feature maps of a backbone."""

    @model_validator(mode="before")
    @classmethod
    def _features_drop_the_top(cls, data: Any) -> Any:
        """A feature extractor has no classifier: features imply include_top false."""
        if isinstance(data, dict) and data.get("features") is not None:
            return {"include_top": False, **data}
        return data

    model_config = ConfigDict(
        json_schema_extra={
            # include_top (true unless written false) needs pooling
            "if": {"properties": {"include_top": {"const": False}}, "required": ["include_top"]},
            "else": {
                "properties": {
                    "pooling": {"type": "string", "errorMessage": f"{POOLING_RULE}: {POOLING_HINT}"}
                }
            },
        }
    )

    filters: Channels = Field(
        960, description="Width of the last 1x1 conv (blocks.N.0) before the width multiplier."
    )
    pooling: Pooling | None = Field(
        "avg",
        description="Global pooling before the hidden conv. With include_top false, null leaves "
        "the feature map unpooled.",
    )
    hidden: Channels | None = Field(
        1280, description="Width of the 1x1 conv after pooling (bias, no BN); never scaled."
    )
    dropout: Annotated[float, *number(ge=0.0, lt=1.0)] = Field(
        0.2, description="Dropout rate before the classifier."
    )
    classes: Annotated[int, *integer(ge=1, le=1_000_000)] = Field(
        1000, description="Number of classifier outputs."
    )
    classifier_activation: ClassifierActivation = Field(
        "linear",
        description="linear gives logits (as the reference does); softmax gives probabilities.",
    )
    include_top: StrictBool = Field(
        True,
        description="False gives a feature extractor: no hidden conv and no classifier. False "
        "whenever features is set.",
    )
    features: Annotated[list[TapEntry], Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="A backbone: the model returns these feature maps, in order, as a list. An "
        "entry is a level (log2 of the stride: [2, 3, 4, 5] are strides 4 to 32) or a node "
        "(conv_stem, blocks.S, blocks.S.I). The head's other fields then do not apply.",
    )
    taps: TapMode = Field(
        "last",
        description="Which map stands for a level: last, the output of the last block at that "
        "stride; timm, what timm's features_only returns (the stem conv before its BatchNorm, "
        "then the end of every stage whose last block has stride 2).",
    )
    activation: Activation | None = Field(
        None,
        description="Activation of the last conv and the hidden conv; defaults to the network's.",
    )

    @model_validator(mode="after")
    def _pooled(self) -> Head:
        if self.include_top and self.pooling is None:
            raise rule("pooling", POOLING_RULE, "pooling", POOLING_HINT)
        return self


REPEAT_HINT = "write the stride-2 block once, then a stride-1 block with the repeat"


class Block(_Model):
    """A ghost bottleneck: ghost module, strided depthwise conv, squeeze-excite, ghost module."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"stride": {"const": 2}}, "required": ["stride"]},
            "then": {
                "properties": {
                    # const, not maximum: yaml-language-server shows errorMessage for const only
                    "repeat": {
                        "const": 1,
                        "errorMessage": "repeat with stride 2 is ambiguous: every copy would "
                        f"halve the size; {REPEAT_HINT}",
                    }
                }
            },
        }
    )

    hidden: Channels = Field(
        description="Width of the expansion (absolute, before width scaling).", examples=[16]
    )
    out: Channels = Field(description="Output channels before the width multiplier.", examples=[16])
    se: SeRatio = Field(0.0, description="Squeeze-excite ratio of the hidden width; 0 means none.")
    stride: Stride = Field(1, description="Stride: 1 or 2.")
    kernel: Kernel = Field(3, description="Kernel of the depthwise convs (strided dw, shortcut).")
    repeat: Annotated[int, *integer(ge=1, le=64)] = Field(
        1, description="Repeat this block; only for stride 1."
    )
    activation: Activation | None = Field(
        None, description="Activation of the first ghost module; defaults to the network's."
    )
    name: Name | None = Field(None, description="A label shown by inspect.")
    ghost: GhostOverride | None = Field(
        None, description="Ghost module settings for this block only."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, list):
            if len(data) != len(ROW_COLUMNS):
                raise PydanticCustomError(
                    "row_length",
                    "a compact row has 5 columns [hidden, out, se, stride, kernel], not {n}",
                    {"n": len(data)},
                )
            return dict(zip(ROW_COLUMNS, data, strict=True))
        return data

    @model_validator(mode="after")
    def _repeat_with_stride_1(self) -> Block:
        if self.repeat > 1 and self.stride == 2:
            raise rule(
                "repeat_stride",
                "repeat {repeat} with stride 2 is ambiguous: every copy would halve the size",
                "repeat",
                REPEAT_HINT,
                repeat=self.repeat,
            )
        return self


Stage = Annotated[list[Block], Field(min_length=1, max_length=64)]


class Spec(_Model):
    """A GhostNet-family network."""

    ghostspec: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(
        description="Format version of the spec language."
    )
    name: Name = Field(description="Model name; also the default output file name.")
    description: str | None = Field(None, description="Free text.")
    input: InputSpec = Field(InputSpec(), description="Input shape.")
    width: Annotated[float, *number(gt=0.0, le=10.0)] = Field(
        1.0, description="Width multiplier applied to every channel count except head.hidden."
    )
    divisor: Annotated[int, *integer(ge=1, le=256)] = Field(
        4, description="Scaled channel counts are rounded to a multiple of this (make_divisible)."
    )
    activation: Activation = Field("relu", description="Default activation.")
    normalization: Normalization = Field(Normalization(), description="BatchNorm settings.")
    ghost: GhostSettings = Field(GhostSettings(), description="Ghost module settings.")
    se: SqueezeExcite = Field(SqueezeExcite(), description="Squeeze-excite settings.")
    stem: Stem = Field(Stem(), description="The first convolution.")
    stages: Annotated[list[Stage], Field(min_length=1, max_length=64)] = Field(
        description="A list of stages; a stage is a list of blocks, each a compact row "
        "[hidden, out, se, stride, kernel] or a mapping."
    )
    head: Head = Field(Head(), description="Last conv, pooling and classifier.")
