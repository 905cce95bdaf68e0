"""Lowering: a valid Spec becomes a Plan, the resolved network every backend reads.

Every channel count, size, parameter and multiply-add is computed here and nowhere else. Node and
layer names follow the reference state-dict layout (timm / Huawei GhostNet), so weight import is a
mechanical mapping from `Plan.tensors()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Literal

from ghostspec.features import Tap, resolve
from ghostspec.spec import Block, GhostSettings, Spec

Size = tuple[int | None, int | None]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCE_SIDE = 224  # the side a network of any input size is costed (and exported) at
Path = tuple[str | int, ...]


def reference_size(size: Size) -> tuple[int, int]:
    """The size a network is costed at: its own, with REFERENCE_SIDE for a side of any size."""
    h, w = size
    return (REFERENCE_SIDE if h is None else h, REFERENCE_SIDE if w is None else w)


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
    def kernel_hw(self) -> tuple[int, int]:
        return (self.kernel, self.kernel if self.kernel_w is None else self.kernel_w)

    @property
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

    def conv_op(
        self,
        plain: tuple[str, str],
        rpr: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        size: Size,
        activation: str,
        branches: int,
        groups: int = 1,
        identity: bool = False,
    ) -> ConvOp:
        """A conv+BN, or with `branches` > 0 GhostNetV3's re-parameterisable version of it.

        `plain` names the conv and BN as v1 does (the fused conv takes the first name); `rpr` is
        the v3 prefix: `{rpr}_rpr_conv.{i}`, `{rpr}_rpr_scale` (1x1, where the kernel is larger)
        and `{rpr}_rpr_skip` (identity BN, where `identity` and the shapes allow it).
        """
        if branches == 0:
            return self.conv_bn(*plain, cin, cout, kernel, stride, size, activation, groups)
        convs = tuple(
            self.conv_bn(
                f"{rpr}_rpr_conv.{i}.conv",
                f"{rpr}_rpr_conv.{i}.bn1",
                cin,
                cout,
                kernel,
                stride,
                size,
                "linear",
                groups,
            )
            for i in range(branches)
        )
        scale = None
        if kernel > 1:
            scale = self.conv_bn(
                f"{rpr}_rpr_scale.conv",
                f"{rpr}_rpr_scale.bn1",
                cin,
                cout,
                1,
                stride,
                size,
                "linear",
                groups,
            )
        skip = None
        if identity and cin == cout and stride == 1:
            skip = self.bn(f"{rpr}_rpr_skip", cout)
        fused = Conv(plain[0], cin, cout, kernel, stride, size, groups=groups, bias=True)
        return Reparam(convs, scale, skip, activation, fused)

    def ghost_module(
        self,
        name: str,
        cin: int,
        cout: int,
        size: Size,
        activation: str,
        ghost: GhostSettings,
        attention: bool = False,
    ) -> GhostModule:
        init = math.ceil(cout / ghost.ratio)
        new = init * (ghost.ratio - 1)
        primary = self.conv_op(
            (f"{name}.primary_conv.0", f"{name}.primary_conv.1"),
            f"{name}.primary",
            cin,
            init,
            1,
            1,
            size,
            activation,
            ghost.branches,
        )
        cheap = self.conv_op(
            (f"{name}.cheap_operation.0", f"{name}.cheap_operation.1"),
            f"{name}.cheap",
            init,
            new,
            ghost.cheap_kernel,
            1,
            size,
            activation,
            ghost.branches,
            groups=init,
            identity=True,
        )
        dfc = (
            self.dfc(f"{name}.short_conv", cin, cout, size, ghost.dfc_kernel) if attention else None
        )
        return GhostModule(name, cin, cout, primary, cheap, dfc)

    def dfc(self, name: str, cin: int, cout: int, size: Size, kernel: int) -> Dfc:
        pooled = (
            None if size[0] is None else size[0] // 2,
            None if size[1] is None else size[1] // 2,
        )
        conv = self.conv_bn(f"{name}.0", f"{name}.1", cin, cout, 1, 1, pooled, "linear")
        horizontal = ConvBn(
            Conv(f"{name}.2", cout, cout, 1, 1, pooled, groups=cout, kernel_w=kernel),
            self.bn(f"{name}.3", cout),
            "linear",
        )
        vertical = ConvBn(
            Conv(f"{name}.4", cout, cout, kernel, 1, pooled, groups=cout, kernel_w=1),
            self.bn(f"{name}.5", cout),
            "linear",
        )
        return Dfc(name, size, conv, horizontal, vertical)

    def block(
        self, block: Block, name: str, source: Path, cin: int, size: Size, index: int
    ) -> Bottleneck:
        spec = self.spec
        hidden = self.channels(block.hidden)
        cout = self.channels(block.out)
        activation = block.activation or spec.activation
        ghost = merge_ghost(spec.ghost, block)
        attention = has_attention(spec.ghost, block, index)
        ghost1 = self.ghost_module(
            f"{name}.ghost1", cin, hidden, size, activation, ghost, attention=attention
        )
        conv_dw = None
        mid = size
        if block.stride > 1:
            conv_dw = self.conv_op(
                (f"{name}.conv_dw", f"{name}.bn_dw"),
                f"{name}.dw",
                hidden,
                hidden,
                block.kernel,
                block.stride,
                size,
                "linear",
                ghost.branches,
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

    def trunk(self) -> list[Node]:
        """The stem, every bottleneck and the last 1x1 conv (`blocks.N.0`)."""
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
        count = 0
        for s, stage in enumerate(spec.stages):
            index = 0
            for j, block in enumerate(stage):
                for _ in range(block.repeat):
                    node = self.block(
                        block, f"blocks.{s}.{index}", ("stages", s, j), channels, size, count
                    )
                    count += 1
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
        return nodes

    def run(self) -> Plan:
        spec = self.spec
        head = spec.head
        h, w = self.size
        cin = spec.input.shape[2]
        nodes = self.trunk()
        final = nodes[-1]
        assert isinstance(final, ConvNode)
        channels, size = final.cout, final.out_size
        output: tuple[int | None, ...] = (size[0], size[1], channels)
        taps: tuple[Tap, ...] = ()
        omitted: tuple[str, ...] = ()
        if head.features is not None:
            taps, end, problems = resolve(head.features, head.taps, nodes)
            if problems:
                raise ValueError("; ".join(p.message for p in problems))
            omitted = (*(n.name for n in nodes[end + 1 :]), "conv_head", "classifier")
            nodes = nodes[: end + 1]
            output = taps[-1].shape
        elif head.pooling is not None:
            head_activation = head.activation or spec.activation
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
        if not head.include_top and head.features is None:
            # keras.applications' include_top=False: a classifier checkpoint loads, head skipped
            omitted = ("conv_head", "classifier")
        if head.include_top and head.features is None:
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
            features=taps,
            omitted=omitted,
        )


def has_attention(network: GhostSettings, block: Block, index: int) -> bool:
    """DFC attention on this block's first ghost module: the block's own say, else the rule."""
    if block.ghost is not None and block.ghost.attention is not None:
        return block.ghost.attention == "dfc"
    return network.attention == "dfc" and index >= network.attention_from


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


def fuse_plan(plan: Plan, batch_norm: bool = False) -> Plan:
    """The deploy plan: every re-parameterisable conv replaced by its single fused conv and, with
    `batch_norm`, every other BatchNorm folded into a bias of the conv before it."""

    # a conv tapped before its BatchNorm (timm's stem map) keeps the BatchNorm
    tapped = {
        n.op.conv.name
        for n in plan.nodes
        if isinstance(n, ConvNode) and n.name in {t.node for t in plan.features if t.pre_norm}
    }

    def fuse(op: ConvOp) -> ConvOp:
        if isinstance(op, Reparam):
            return ConvBn(op.fused, None, op.activation)
        if batch_norm and op.bn is not None and op.conv.name not in tapped:
            return ConvBn(replace(op.conv, bias=True), None, op.activation)
        return op

    fused: Plan = map_conv_ops(plan, fuse)
    if not batch_norm:
        return fused
    nodes = tuple(
        replace(node, split_ghost1=True)
        if isinstance(node, Bottleneck) and splittable(node)
        else node
        for node in fused.nodes
    )
    return replace(fused, nodes=nodes)


def splittable(node: Bottleneck) -> bool:
    """Whether ghost1's concatenation can be left out of a deploy graph without changing the
    function: every op between it and ghost2's primary conv works channel by channel (depthwise
    conv with its bias, SE pooling and scaling), ghost2's primary conv is a plain conv whose input
    channels split at the same place, and no BatchNorm, attention or slice sits in between."""
    ghost1, ghost2 = node.ghost1, node.ghost2
    ops = [ghost1.primary, ghost1.cheap, ghost2.primary, *([node.conv_dw] if node.conv_dw else [])]
    return (
        all(isinstance(op, ConvBn) and op.bn is None for op in ops)
        and ghost1.attention is None
        and ghost1.primary.conv.cout + ghost1.cheap.conv.cout == ghost1.cout
        and ghost2.primary.conv.groups == 1
        and ghost2.attention is None
        and (node.conv_dw is None or node.conv_dw.conv.depthwise)
        and (node.conv_dw is None or node.conv_dw.conv.cout == node.conv_dw.conv.cin)
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


def lower_trunk(spec: Spec) -> tuple[Node, ...]:
    """The stem, bottlenecks and last 1x1 conv of a spec, at its input size, whatever its head
    says: what validation resolves `head.features` against."""
    return tuple(_Lowering(spec, (spec.input.shape[0], spec.input.shape[1])).trunk())
