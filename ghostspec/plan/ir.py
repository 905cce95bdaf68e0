"""Lowering: a valid Spec becomes a Plan, the resolved network every backend reads.

Every channel count, size, parameter and multiply-add is computed here and nowhere else. Node and
layer names follow the reference state-dict layout (timm / Huawei GhostNet), so weight import is a
mechanical mapping from `Plan.tensors()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cached_property
from typing import Any, Literal

from ghostspec.plan.features import Tap

Size = tuple[int | None, int | None]
# Layer names: the plan names modules as the reference does (`blocks.3.0.ghost1.primary_conv.0`),
# and those names are the contract for state dicts. A backend's layer takes the same name with
# every "." written LAYER_SEPARATOR, since PyTorch forbids dots in module and parameter names.
# Reference names hold no "-", so the mapping is one-to-one and a layer name tells its module.
LAYER_SEPARATOR = "-"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCE_SIDE = 224  # the side a network of any input size is costed (and exported) at
Path = tuple[str | int, ...]


def reference_size(size: Size) -> tuple[int, int]:
    """The size a network is costed at: its own, with REFERENCE_SIDE for a side of any size."""
    h, w = size
    return (REFERENCE_SIDE if h is None else h, REFERENCE_SIDE if w is None else w)


def layer_name(*parts: str) -> str:
    """The layer name of a reference module name, or of a role under one:
    `layer_name("blocks.1.0.ghost1", "concat")` is `blocks-1-0-ghost1-concat`."""
    return LAYER_SEPARATOR.join(parts).replace(".", LAYER_SEPARATOR)


def reference_name(name: str) -> str:
    """The reference module name of a layer name. A dotted layer name (a `.keras` file written
    before layer names became legal on every backend) is already one and passes unchanged."""
    return name.replace(LAYER_SEPARATOR, ".")


def make_divisible(value: float, divisor: int, round_limit: float = 0.9) -> int:
    """Round to the nearest multiple of `divisor`, never below it, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def conv_output(size: int | None, kernel: int, stride: int) -> int | None:
    """Output length of a convolution padded symmetrically by kernel // 2 (PyTorch's rule)."""
    if size is None:
        return None
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class Tensor:
    """One weight or buffer as the reference stores it (PyTorch layout)."""

    name: str
    shape: tuple[int, ...]
    trainable: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution; `name` is the reference module path of its weight."""

    name: str
    cin: int
    cout: int
    kernel: int
    stride: int
    in_size: Size
    groups: int = 1
    bias: bool = False
    kernel_w: int | None = None  # only for non-square kernels (DFC attention's 1 x k and k x 1)

    @property
    def layer_name(self) -> str:
        return layer_name(self.name)

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return (self.kernel, self.kernel if self.kernel_w is None else self.kernel_w)

    @cached_property  # read by every later layer's size and by the cost passes
    def out_size(self) -> Size:
        kh, kw = self.kernel_hw
        return (
            conv_output(self.in_size[0], kh, self.stride),
            conv_output(self.in_size[1], kw, self.stride),
        )

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def padding_hw(self) -> tuple[int, int]:
        kh, kw = self.kernel_hw
        return (kh // 2, kw // 2)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin

    @property
    def depth_multiplier(self) -> int:
        return self.cout // self.cin

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(
            f"{self.name}.weight", (self.cout, self.cin // self.groups, *self.kernel_hw), True
        )
        if self.bias:
            yield Tensor(f"{self.name}.bias", (self.cout,), True)

    @property
    def counts(self) -> tuple[int, int]:
        """Elements of the trainable and frozen tensors: `tensors()`' sizes, without naming them."""
        kh, kw = self.kernel_hw
        return self.cout * (self.cin // self.groups) * kh * kw + (self.cout if self.bias else 0), 0

    @property
    def macs(self) -> int | None:
        h, w = self.out_size
        if h is None or w is None:
            return None
        kh, kw = self.kernel_hw
        return h * w * self.cout * (self.cin // self.groups) * kh * kw


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm over `channels`; gamma and beta are parameters, running statistics are buffers."""

    name: str
    channels: int
    epsilon: float
    momentum: float

    @property
    def layer_name(self) -> str:
        return layer_name(self.name)

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(f"{self.name}.weight", (self.channels,), True)
        yield Tensor(f"{self.name}.bias", (self.channels,), True)
        yield Tensor(f"{self.name}.running_mean", (self.channels,), False)
        yield Tensor(f"{self.name}.running_var", (self.channels,), False)

    @property
    def counts(self) -> tuple[int, int]:
        return 2 * self.channels, 2 * self.channels

    @property
    def macs(self) -> int:
        return 0


@dataclass(frozen=True)
class Linear:
    """The classifier."""

    name: str
    cin: int
    cout: int

    @property
    def layer_name(self) -> str:
        return layer_name(self.name)

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(f"{self.name}.weight", (self.cout, self.cin), True)
        yield Tensor(f"{self.name}.bias", (self.cout,), True)

    @property
    def counts(self) -> tuple[int, int]:
        return self.cout * self.cin + self.cout, 0

    @property
    def macs(self) -> int:
        return self.cin * self.cout


Layer = Conv | BatchNorm | Linear


@dataclass(frozen=True)
class ConvBn:
    """conv -> BatchNorm -> activation ("linear" means none); no BN once fused (conv has a bias)."""

    conv: Conv
    bn: BatchNorm | None
    activation: str

    def layers(self) -> Iterator[Layer]:
        yield self.conv
        if self.bn is not None:
            yield self.bn


@dataclass(frozen=True)
class Reparam:
    """GhostNetV3's re-parameterisable conv: parallel conv+BN branches, a 1x1 conv+BN `scale`
    branch and an identity BN `skip` branch where shapes allow, summed, then the activation.

    For deployment they fold into `fused`, one conv with a bias (see `fuse_plan`).
    """

    branches: tuple[ConvBn, ...]
    scale: ConvBn | None
    skip: BatchNorm | None
    activation: str
    fused: Conv

    @property
    def conv(self) -> Conv:
        """The deploy conv: shapes and MACs of the fused layer."""
        return self.fused

    def layers(self) -> Iterator[Layer]:
        for branch in self.branches:
            yield from branch.layers()
        if self.scale is not None:
            yield from self.scale.layers()
        if self.skip is not None:
            yield self.skip


ConvOp = ConvBn | Reparam

HALVES = ("intrinsic", "ghost")  # layer-name suffixes of a conv split over ghost1's halves


@dataclass(frozen=True)
class Half:
    """One of the two convs a split deploy bottleneck runs, over ghost1's intrinsic maps or over
    their ghosts: `conv` (named `<whole>.intrinsic` / `<whole>.ghost`) reads the input channels
    `channels` of the plan conv `whole`. A depthwise conv's outputs and bias are cut with its
    inputs; a plain conv keeps all outputs and only the intrinsic half has the bias, so that the
    two halves sum to the whole conv."""

    conv: Conv
    whole: Conv
    channels: tuple[int, int]  # [start, stop) of the whole conv's input channels


def halves(whole: Conv, cut: int) -> tuple[Half, Half]:
    """`whole` as two convs over its first `cut` input channels and the rest."""
    parts = []
    for suffix, (start, stop) in zip(HALVES, ((0, cut), (cut, whole.cin)), strict=True):
        width = stop - start
        if whole.depthwise:
            conv = replace(whole, cin=width, cout=width, groups=width)
        else:
            conv = replace(whole, cin=width, bias=whole.bias and start == 0)
        parts.append(Half(replace(conv, name=f"{whole.name}.{suffix}"), whole, (start, stop)))
    return parts[0], parts[1]


def nearest_indices(size_in: int, size_out: int) -> tuple[int, ...]:
    """PyTorch's legacy nearest upsampling rule: src = min(floor(dst * in / out), in - 1)."""
    return tuple(min(dst * size_in // size_out, size_in - 1) for dst in range(size_out))


@dataclass(frozen=True)
class Dfc:
    """GhostNetV2's DFC attention: 2x2 average pool (floor) of the module input, 1x1 conv+BN,
    depthwise 1 x k conv+BN, depthwise k x 1 conv+BN, sigmoid, nearest upsampling back to the
    module's output size, multiplied into the module's output. Reference name: `short_conv`."""

    name: str
    in_size: Size
    conv: ConvBn
    horizontal: ConvBn
    vertical: ConvBn
    gate: str = "sigmoid"
    pool: int = 2

    @property
    def pooled_size(self) -> Size:
        return self.conv.conv.in_size

    def upsample_indices(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Row and column source indices for the upsampling, when sizes are static."""
        (h, w), (ph, pw) = self.in_size, self.pooled_size
        if h is None or w is None or ph is None or pw is None:
            return None
        return nearest_indices(ph, h), nearest_indices(pw, w)

    def layers(self) -> Iterator[Layer]:
        yield from self.conv.layers()
        yield from self.horizontal.layers()
        yield from self.vertical.layers()


@dataclass(frozen=True)
class GhostModule:
    """Primary 1x1 conv to ceil(out / ratio) channels, cheap depthwise conv, concat, slice;
    with DFC attention (GhostNetV2) the result is gated by `attention`."""

    name: str
    cin: int
    cout: int
    primary: ConvOp
    cheap: ConvOp
    attention: Dfc | None = None

    def layers(self) -> Iterator[Layer]:
        yield from self.primary.layers()
        yield from self.cheap.layers()
        if self.attention is not None:
            yield from self.attention.layers()


@dataclass(frozen=True)
class SqueezeExcite:
    """Global pool -> 1x1 reduce (bias) -> activation -> 1x1 expand (bias) -> gate -> scale."""

    name: str
    channels: int
    reduced: int
    reduce: Conv
    expand: Conv
    activation: str
    gate: str

    def layers(self) -> Iterator[Layer]:
        yield self.reduce
        yield self.expand


class _Node:
    """Shared accounting: every node lists its layers; totals derive from them."""

    def layers(self) -> Iterator[Layer]:
        raise NotImplementedError

    def tensors(self) -> Iterator[Tensor]:
        for layer in self.layers():
            yield from layer.tensors()

    # Cached: a node is immutable, and a sweep reads the totals of thousands of plans a second.
    @cached_property
    def _counts(self) -> tuple[int, int]:
        trainable = frozen = 0
        for layer in self.layers():
            a, b = layer.counts
            trainable, frozen = trainable + a, frozen + b
        return trainable, frozen

    @property
    def params(self) -> int:
        return self._counts[0]

    @property
    def buffers(self) -> int:
        return self._counts[1]

    @cached_property
    def macs(self) -> int | None:
        total = 0
        for layer in self.layers():
            m = layer.macs
            if m is None:
                return None
            total += m
        return total


@dataclass(frozen=True)
class ConvNode(_Node):
    """The stem (`conv_stem` + `bn1`) or the last 1x1 conv (`blocks.N.0`)."""

    name: str
    kind: Literal["stem", "conv"]
    source: Path
    op: ConvBn

    @property
    def cin(self) -> int:
        return self.op.conv.cin

    @property
    def cout(self) -> int:
        return self.op.conv.cout

    @property
    def in_size(self) -> Size:
        return self.op.conv.in_size

    @property
    def out_size(self) -> Size:
        return self.op.conv.out_size

    def layers(self) -> Iterator[Layer]:
        yield from self.op.layers()


@dataclass(frozen=True)
class Bottleneck(_Node):
    """A ghost bottleneck, `blocks.{stage}.{index}` in the reference."""

    name: str
    source: Path
    label: str | None
    cin: int
    hidden: int
    cout: int
    kernel: int
    stride: int
    se_ratio: float
    activation: str
    in_size: Size
    ghost1: GhostModule
    conv_dw: ConvOp | None
    se: SqueezeExcite | None
    ghost2: GhostModule
    shortcut: tuple[ConvBn, ConvBn] | None
    kind: Literal["bottleneck"] = "bottleneck"
    # Deploy plans only (see `fuse_plan`): ghost1's intrinsic and ghost maps stay two tensors up to
    # ghost2's primary conv, which sums two convs instead of reading their concatenation.
    split_ghost1: bool = False

    @property
    def split_convs(self) -> tuple[tuple[Half, Half], ...]:
        """A split bottleneck's convs over ghost1's two halves: the strided depthwise conv (cut in
        and out) where there is one, then ghost2's primary conv (inputs cut)."""
        if not self.split_ghost1:
            return ()
        cut = self.ghost1.primary.conv.cout
        convs = [] if self.conv_dw is None else [self.conv_dw.conv]
        return tuple(halves(conv, cut) for conv in [*convs, self.ghost2.primary.conv])

    @property
    def shortcut_kind(self) -> Literal["identity", "projection"]:
        return "identity" if self.shortcut is None else "projection"

    @property
    def out_size(self) -> Size:
        return self.conv_dw.conv.out_size if self.conv_dw else self.in_size

    def layers(self) -> Iterator[Layer]:
        yield from self.ghost1.layers()
        if self.conv_dw:
            yield from self.conv_dw.layers()
        if self.se:
            yield from self.se.layers()
        yield from self.ghost2.layers()
        for part in self.shortcut or ():
            yield from part.layers()


@dataclass(frozen=True)
class Head(_Node):
    """Global pooling, then (with a top) the 1x1 `conv_head` with bias and no BN, activation."""

    name: str
    source: Path
    cin: int
    in_size: Size
    pooling: Literal["avg", "max"]
    conv: Conv | None
    activation: str
    kind: Literal["head"] = "head"

    @property
    def cout(self) -> int:
        return self.conv.cout if self.conv else self.cin

    @property
    def out_size(self) -> Size:
        return (1, 1)

    def layers(self) -> Iterator[Layer]:
        if self.conv:
            yield self.conv


@dataclass(frozen=True)
class Classifier(_Node):
    """Flatten, dropout, linear classifier, optional softmax."""

    name: str
    source: Path
    cin: int
    dropout: float
    linear: Linear
    activation: str
    kind: Literal["classifier"] = "classifier"

    @property
    def cout(self) -> int:
        return self.linear.cout

    @property
    def in_size(self) -> Size:
        return (1, 1)

    @property
    def out_size(self) -> Size:
        return (1, 1)

    def layers(self) -> Iterator[Layer]:
        yield self.linear


Node = ConvNode | Bottleneck | Head | Classifier


@dataclass(frozen=True)
class Plan:
    """The resolved network: an immutable sequence of nodes plus what the model boundary needs."""

    name: str
    input_shape: tuple[int | None, int | None, int]
    nodes: tuple[Node, ...]
    output_shape: tuple[int | None, ...]
    width: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # A feature extractor (`head.features`): its outputs, in order, and the reference modules it
    # leaves out (the nodes after the last tap and the head; the head alone without include_top),
    # whose checkpoint tensors are skipped.
    features: tuple[Tap, ...] = ()
    omitted: tuple[str, ...] = ()

    def tensors(self) -> Iterator[Tensor]:
        for node in self.nodes:
            yield from node.tensors()

    @cached_property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @cached_property
    def buffers(self) -> int:
        return sum(n.buffers for n in self.nodes)

    @cached_property
    def macs(self) -> int | None:
        values = [n.macs for n in self.nodes]
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    @property
    def blocks(self) -> tuple[Bottleneck, ...]:
        return tuple(n for n in self.nodes if isinstance(n, Bottleneck))

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def conv_ops(value: Any) -> Iterator[ConvOp]:
    """Every conv+BN unit, plain or re-parameterisable, inside a plan, node or module, in order."""
    if isinstance(value, ConvBn | Reparam):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from conv_ops(item)
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            yield from conv_ops(getattr(value, field.name))


def map_conv_ops(value: Any, change: Callable[[ConvOp], ConvOp]) -> Any:
    """`value` with every conv+BN unit inside it replaced by `change(unit)`; untouched parts are
    the same objects."""
    if isinstance(value, ConvBn | Reparam):
        return change(value)
    if isinstance(value, tuple):
        items = tuple(map_conv_ops(item, change) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in fields(value):
            old = getattr(value, field.name)
            new = map_conv_ops(old, change)
            if new is not old:
                changes[field.name] = new
        return replace(value, **changes) if changes else value
    return value
