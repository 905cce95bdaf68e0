"""Lowering: a valid Spec becomes a Plan, the resolved network every backend reads.

Every channel count, size, parameter and multiply-add is computed here and nowhere else. Node and
layer names follow the reference state-dict layout (timm / Huawei GhostNet), so weight import is a
mechanical mapping from `Plan.tensors()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ghostspec.spec import Block, GhostSettings, Spec

Size = tuple[int | None, int | None]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Path = tuple[str | int, ...]


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

    @property
    def out_size(self) -> Size:
        return (
            conv_output(self.in_size[0], self.kernel, self.stride),
            conv_output(self.in_size[1], self.kernel, self.stride),
        )

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin

    @property
    def depth_multiplier(self) -> int:
        return self.cout // self.cin

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(
            f"{self.name}.weight",
            (self.cout, self.cin // self.groups, self.kernel, self.kernel),
            True,
        )
        if self.bias:
            yield Tensor(f"{self.name}.bias", (self.cout,), True)

    @property
    def macs(self) -> int | None:
        h, w = self.out_size
        if h is None or w is None:
            return None
        return h * w * self.cout * (self.cin // self.groups) * self.kernel * self.kernel


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm over `channels`; gamma and beta are parameters, running statistics are buffers."""

    name: str
    channels: int
    epsilon: float
    momentum: float

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(f"{self.name}.weight", (self.channels,), True)
        yield Tensor(f"{self.name}.bias", (self.channels,), True)
        yield Tensor(f"{self.name}.running_mean", (self.channels,), False)
        yield Tensor(f"{self.name}.running_var", (self.channels,), False)

    @property
    def macs(self) -> int:
        return 0


@dataclass(frozen=True)
class Linear:
    """The classifier."""

    name: str
    cin: int
    cout: int

    def tensors(self) -> Iterator[Tensor]:
        yield Tensor(f"{self.name}.weight", (self.cout, self.cin), True)
        yield Tensor(f"{self.name}.bias", (self.cout,), True)

    @property
    def macs(self) -> int:
        return self.cin * self.cout


Layer = Conv | BatchNorm | Linear


@dataclass(frozen=True)
class ConvBn:
    """conv -> BatchNorm -> activation ("linear" means none)."""

    conv: Conv
    bn: BatchNorm
    activation: str

    def layers(self) -> Iterator[Layer]:
        yield self.conv
        yield self.bn


@dataclass(frozen=True)
class GhostModule:
    """Primary 1x1 conv to ceil(out / ratio) channels, cheap depthwise conv, concat, slice."""

    name: str
    cin: int
    cout: int
    primary: ConvBn
    cheap: ConvBn

    def layers(self) -> Iterator[Layer]:
        yield from self.primary.layers()
        yield from self.cheap.layers()


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

    @property
    def params(self) -> int:
        return sum(t.size for t in self.tensors() if t.trainable)

    @property
    def buffers(self) -> int:
        return sum(t.size for t in self.tensors() if not t.trainable)

    @property
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
    conv_dw: ConvBn | None
    se: SqueezeExcite | None
    ghost2: GhostModule
    shortcut: tuple[ConvBn, ConvBn] | None
    kind: Literal["bottleneck"] = "bottleneck"

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

    def tensors(self) -> Iterator[Tensor]:
        for node in self.nodes:
            yield from node.tensors()

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def buffers(self) -> int:
        return sum(n.buffers for n in self.nodes)

    @property
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


class _Lowering:
    """Walks the spec once, carrying the current channels and size."""

    def __init__(self, spec: Spec, size: Size) -> None:
        self.spec = spec
        self.size = size
        self.bn_eps = spec.normalization.epsilon
        self.bn_momentum = spec.normalization.momentum

    def channels(self, value: int) -> int:
        return make_divisible(value * self.spec.width, self.spec.divisor)

    def bn(self, name: str, channels: int) -> BatchNorm:
        return BatchNorm(name, channels, self.bn_eps, self.bn_momentum)

    def conv_bn(
        self,
        conv_name: str,
        bn_name: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        size: Size,
        activation: str,
        groups: int = 1,
    ) -> ConvBn:
        conv = Conv(conv_name, cin, cout, kernel, stride, size, groups=groups)
        return ConvBn(conv, self.bn(bn_name, cout), activation)

    def ghost_module(
        self, name: str, cin: int, cout: int, size: Size, activation: str, ghost: GhostSettings
    ) -> GhostModule:
        init = math.ceil(cout / ghost.ratio)
        new = init * (ghost.ratio - 1)
        primary = self.conv_bn(
            f"{name}.primary_conv.0", f"{name}.primary_conv.1", cin, init, 1, 1, size, activation
        )
        cheap = self.conv_bn(
            f"{name}.cheap_operation.0",
            f"{name}.cheap_operation.1",
            init,
            new,
            ghost.cheap_kernel,
            1,
            size,
            activation,
            groups=init,
        )
        return GhostModule(name, cin, cout, primary, cheap)

    def block(self, block: Block, name: str, source: Path, cin: int, size: Size) -> Bottleneck:
        spec = self.spec
        hidden = self.channels(block.hidden)
        cout = self.channels(block.out)
        activation = block.activation or spec.activation
        ghost = merge_ghost(spec.ghost, block)
        ghost1 = self.ghost_module(f"{name}.ghost1", cin, hidden, size, activation, ghost)
        conv_dw = None
        mid = size
        if block.stride > 1:
            conv_dw = self.conv_bn(
                f"{name}.conv_dw",
                f"{name}.bn_dw",
                hidden,
                hidden,
                block.kernel,
                block.stride,
                size,
                "linear",
                groups=hidden,
            )
            mid = conv_dw.conv.out_size
        se = None
        if block.se > 0:
            reduced = make_divisible(hidden * block.se, spec.se.divisor)
            se = SqueezeExcite(
                f"{name}.se",
                hidden,
                reduced,
                Conv(f"{name}.se.conv_reduce", hidden, reduced, 1, 1, (1, 1), bias=True),
                Conv(f"{name}.se.conv_expand", reduced, hidden, 1, 1, (1, 1), bias=True),
                spec.se.activation,
                spec.se.gate,
            )
        ghost2 = self.ghost_module(f"{name}.ghost2", hidden, cout, mid, "linear", ghost)
        shortcut = None
        if cin != cout or block.stride != 1:
            shortcut = (
                self.conv_bn(
                    f"{name}.shortcut.0",
                    f"{name}.shortcut.1",
                    cin,
                    cin,
                    block.kernel,
                    block.stride,
                    size,
                    "linear",
                    groups=cin,
                ),
                self.conv_bn(
                    f"{name}.shortcut.2", f"{name}.shortcut.3", cin, cout, 1, 1, mid, "linear"
                ),
            )
        return Bottleneck(
            name=name,
            source=source,
            label=block.name,
            cin=cin,
            hidden=hidden,
            cout=cout,
            kernel=block.kernel,
            stride=block.stride,
            se_ratio=block.se,
            activation=activation,
            in_size=size,
            ghost1=ghost1,
            conv_dw=conv_dw,
            se=se,
            ghost2=ghost2,
            shortcut=shortcut,
        )

    def run(self) -> Plan:
        spec = self.spec
        h, w = self.size
        cin = spec.input.shape[2]
        stem_out = self.channels(spec.stem.filters)
        stem = ConvNode(
            "conv_stem",
            "stem",
            ("stem",),
            self.conv_bn(
                "conv_stem",
                "bn1",
                cin,
                stem_out,
                spec.stem.kernel,
                spec.stem.stride,
                (h, w),
                spec.stem.activation or spec.activation,
            ),
        )
        nodes: list[Node] = [stem]
        channels, size = stem.cout, stem.out_size
        for s, stage in enumerate(spec.stages):
            index = 0
            for j, block in enumerate(stage):
                for _ in range(block.repeat):
                    node = self.block(
                        block, f"blocks.{s}.{index}", ("stages", s, j), channels, size
                    )
                    nodes.append(node)
                    channels, size = node.cout, node.out_size
                    index += 1
        head = spec.head
        head_activation = head.activation or spec.activation
        last = self.channels(head.filters)
        final = f"blocks.{len(spec.stages)}.0"
        nodes.append(
            ConvNode(
                final,
                "conv",
                ("head", "filters"),
                self.conv_bn(
                    f"{final}.conv", f"{final}.bn1", channels, last, 1, 1, size, head_activation
                ),
            )
        )
        channels = last
        output: tuple[int | None, ...] = (size[0], size[1], channels)
        if head.pooling is not None:
            conv = None
            if head.include_top and head.hidden is not None:
                conv = Conv("conv_head", channels, head.hidden, 1, 1, (1, 1), bias=True)
            pool = Head(
                "conv_head" if conv else "global_pool",
                ("head",),
                channels,
                size,
                head.pooling,
                conv,
                head_activation,
            )
            nodes.append(pool)
            channels = pool.cout
            output = (channels,)
        if head.include_top:
            nodes.append(
                Classifier(
                    "classifier",
                    ("head", "classes"),
                    channels,
                    head.dropout,
                    Linear("classifier", channels, head.classes),
                    head.classifier_activation,
                )
            )
            output = (head.classes,)
        return Plan(
            name=spec.name,
            input_shape=(h, w, cin),
            nodes=tuple(nodes),
            output_shape=output,
            width=spec.width,
            mean=tuple(spec.input.mean or (IMAGENET_MEAN if cin == 3 else (0.0,) * cin)),
            std=tuple(spec.input.std or (IMAGENET_STD if cin == 3 else (1.0,) * cin)),
        )


def merge_ghost(network: GhostSettings, block: Block) -> GhostSettings:
    """The block's ghost settings: the network's, with the block's own `ghost:` fields on top."""
    if block.ghost is None:
        return network
    changes = {k: v for k, v in block.ghost.model_dump().items() if v is not None}
    return network.model_copy(update=changes)


def lower(spec: Spec, input_size: tuple[int | None, int | None] | None = None) -> Plan:
    """Resolve a valid spec into a Plan; `input_size` (H, W) replaces the spec's for costing."""
    size = input_size if input_size is not None else (spec.input.shape[0], spec.input.shape[1])
    return _Lowering(spec, size).run()
