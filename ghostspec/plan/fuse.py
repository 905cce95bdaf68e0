"""Lowering: a valid Spec becomes a Plan, the resolved network every backend reads.

Every channel count, size, parameter and multiply-add is computed here and nowhere else. Node and
layer names follow the reference state-dict layout (timm / Huawei GhostNet), so weight import is a
mechanical mapping from `Plan.tensors()`.
"""

from __future__ import annotations

from dataclasses import replace

from ghostspec.plan.ir import Bottleneck, ConvBn, ConvNode, ConvOp, Plan, Reparam, map_conv_ops

Size = tuple[int | None, int | None]


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
