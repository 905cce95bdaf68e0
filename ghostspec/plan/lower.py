"""Lowering: a valid Spec becomes a Plan, the resolved network every backend reads.

Every channel count, size, parameter and multiply-add is computed here and nowhere else. Node and
layer names follow the reference state-dict layout (timm / Huawei GhostNet), so weight import is a
mechanical mapping from `Plan.tensors()`.
"""

from __future__ import annotations

import math
from typing import Any

from ghostspec.language.spec import Block, GhostSettings, Spec
from ghostspec.plan.features import Tap, resolve
from ghostspec.plan.ir import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNorm,
    Bottleneck,
    Classifier,
    Conv,
    ConvBn,
    ConvNode,
    ConvOp,
    Dfc,
    GhostModule,
    Head,
    Linear,
    Node,
    Path,
    Plan,
    Reparam,
    SqueezeExcite,
    make_divisible,
)

Size = tuple[int | None, int | None]
# Bottlenecks already lowered, by everything a bottleneck depends on (a sweep passes one to
# `lower` for all its variants: most variants share most blocks).
BlockMemo = dict[tuple[Any, ...], Bottleneck]


class _Lowering:
    """Walks the spec once, carrying the current channels and size."""

    def __init__(self, spec: Spec, size: Size, memo: BlockMemo | None = None) -> None:
        self.spec = spec
        self.size = size
        self.bn_eps = spec.normalization.epsilon
        self.bn_momentum = spec.normalization.momentum
        self.memo = memo
        # the network-wide settings `block` reads: part of every memo key
        self.settings = (
            spec.width,
            spec.divisor,
            spec.activation,
            _values(spec.ghost),
            _values(spec.se),
            _values(spec.normalization),
        )

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

    def memo_block(
        self, block: Block, name: str, source: Path, cin: int, size: Size, index: int
    ) -> Bottleneck:
        """`block`, or the same bottleneck from the memo: a node depends only on these inputs
        and the network-wide settings, and nodes are immutable, so sharing one is exact."""
        if self.memo is None:
            return self.block(block, name, source, cin, size, index)
        attention = has_attention(self.spec.ghost, block, index)
        key = (self.settings, _values(block), name, source, cin, size, attention)
        node = self.memo.get(key)
        if node is None:
            node = self.memo[key] = self.block(block, name, source, cin, size, index)
        return node

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
                    node = self.memo_block(
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


def _values(model: Any) -> tuple[Any, ...]:
    """A model's field values as a tuple: a memo key that hashes and compares fast (a frozen
    pydantic model would do too, at several times the cost)."""
    return tuple(model.__dict__.values())


def has_attention(network: GhostSettings, block: Block, index: int) -> bool:
    """DFC attention on this block's first ghost module: the block's own say, else the rule."""
    if block.ghost is not None and block.ghost.attention is not None:
        return block.ghost.attention == "dfc"
    return network.attention == "dfc" and index >= network.attention_from


def merge_ghost(network: GhostSettings, block: Block) -> GhostSettings:
    """The block's ghost settings: the network's, with the block's own `ghost:` fields on top."""
    if block.ghost is None:
        return network
    changes = {k: v for k, v in block.ghost.model_dump().items() if v is not None}
    return network.model_copy(update=changes)


def lower(
    spec: Spec,
    input_size: tuple[int | None, int | None] | None = None,
    memo: BlockMemo | None = None,
) -> Plan:
    """Resolve a valid spec into a Plan; `input_size` (H, W) replaces the spec's for costing.
    `memo` (a dict kept by the caller) shares bottlenecks between the plans of many variants."""
    size = input_size if input_size is not None else (spec.input.shape[0], spec.input.shape[1])
    return _Lowering(spec, size, memo).run()


def lower_trunk(spec: Spec) -> tuple[Node, ...]:
    """The stem, bottlenecks and last 1x1 conv of a spec, at its input size, whatever its head
    says: what validation resolves `head.features` against."""
    return tuple(_Lowering(spec, (spec.input.shape[0], spec.input.shape[1])).trunk())
