"""Deployment: fold GhostNetV3's re-parameterisable convs, and optionally every BatchNorm, into
single biased convolutions.

Fusion has two halves. The plan half, `plan.fuse_plan`, replaces each `Reparam` (branches, a 1x1
branch, an identity BN) by the one biased conv the reference deploys, so the deploy model is built
like any other plan. The weight half lives here: each branch's BatchNorm is folded into its kernel
(W * g / sqrt(v + eps), b - m * g / sqrt(v + eps)), 1x1 kernels are zero-padded to the centre of
the k x k kernel, the identity BN becomes a kernel with 1 at the centre, and all are summed. The
arithmetic is plain numpy on Keras layouts; everything else is copied by layer name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.keras.weights import reference_layer
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import (
    BatchNorm,
    Bottleneck,
    Conv,
    ConvBn,
    Half,
    Plan,
    Reparam,
    conv_ops,
    reference_name,
)

if TYPE_CHECKING:
    import keras

PLAN_ATTRIBUTE = "_ghostspec_plan"


def fold_batch_norm(
    kernel: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    epsilon: float,
    depthwise: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """conv -> BN as one conv: scale the kernel per output channel, turn the BN into a bias."""
    scale = gamma / np.sqrt(var + epsilon)
    if depthwise:  # [kh, kw, C, m]: output channel c * m + j
        c, m = kernel.shape[2], kernel.shape[3]
        folded = kernel * scale.reshape(c, m)
    else:  # [kh, kw, in, out]
        folded = kernel * scale
    return folded, beta - mean * scale


def centre(kernel: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """A smaller kernel zero-padded to kh x kw, centred (as 'same' padding places it)."""
    out = np.zeros((kh, kw, *kernel.shape[2:]), dtype=kernel.dtype)
    top, left = (kh - kernel.shape[0]) // 2, (kw - kernel.shape[1]) // 2
    out[top : top + kernel.shape[0], left : left + kernel.shape[1]] = kernel
    return out


def identity_kernel(conv: Conv) -> np.ndarray:
    """The kernel of a conv that copies its input, in the deploy conv's Keras layout."""
    kh, kw = conv.kernel_hw
    if conv.depthwise:
        kernel = np.zeros((kh, kw, conv.cin, conv.depth_multiplier), dtype=np.float32)
        kernel[kh // 2, kw // 2, :, 0] = 1.0
    else:
        kernel = np.zeros((kh, kw, conv.cin, conv.cout), dtype=np.float32)
        kernel[kh // 2, kw // 2] = np.eye(conv.cin, conv.cout, dtype=np.float32)
    return kernel


def _bn_values(model: Any, bn: BatchNorm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """gamma, beta, moving mean and moving variance of the BatchNorm layer, as float64."""
    layer = reference_layer(model, bn.name)
    gamma, beta, mean, var = (
        np.asarray(v.numpy(), dtype=np.float64)
        for v in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
    )
    return gamma, beta, mean, var


def fused_weights(model: Any, op: Reparam) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of the single conv equal (in inference) to `op`'s branches in `model`."""
    kh, kw = op.fused.kernel_hw
    kernel = np.zeros(0)
    bias = np.zeros(op.fused.cout)
    parts: list[tuple[np.ndarray, BatchNorm, bool]] = []
    for branch in (*op.branches, *([op.scale] if op.scale is not None else [])):
        assert branch.bn is not None
        variable = reference_layer(model, branch.conv.name).kernel
        raw = np.asarray(variable.numpy(), dtype=np.float64)
        parts.append((centre(raw, kh, kw), branch.bn, branch.conv.depthwise))
    if op.skip is not None:
        parts.append((identity_kernel(op.fused).astype(np.float64), op.skip, op.fused.depthwise))
    for raw, bn, depthwise in parts:
        folded, b = fold_batch_norm(raw, *_bn_values(model, bn), bn.epsilon, depthwise)
        kernel = folded if kernel.size == 0 else kernel + folded
        bias = bias + b
    return kernel.astype(np.float32), bias.astype(np.float32)


def reparams(plan: Plan) -> list[Reparam]:
    """Every re-parameterisable conv of the plan."""
    return [op for op in conv_ops(plan) if isinstance(op, Reparam)]


def folded_weights(model: Any, op: ConvBn) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of `op`'s conv with its BatchNorm folded in (`op` as in the training
    plan)."""
    assert op.bn is not None
    layer = reference_layer(model, op.conv.name)
    raw = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    gamma, beta, mean, var = _bn_values(model, op.bn)
    kernel, bias = fold_batch_norm(raw, gamma, beta, mean, var, op.bn.epsilon, op.conv.depthwise)
    if op.conv.bias:  # a conv bias passes through the BN's scale
        bias = bias + np.asarray(layer.bias.numpy(), dtype=np.float64) * gamma / np.sqrt(
            var + op.bn.epsilon
        )
    return kernel.astype(np.float32), bias.astype(np.float32)


def half_weights(values: list[np.ndarray], half: Half) -> list[np.ndarray]:
    """`half`'s [kernel, bias] cut from its whole conv's: both Keras kernel layouts ([kh, kw, in,
    out] and depthwise [kh, kw, C, 1]) hold the input channels on axis 2."""
    start, stop = half.channels
    out = [values[0][:, :, start:stop]]
    if half.conv.bias:
        out.append(values[1][start:stop] if half.whole.depthwise else values[1])
    return out


def plan_of(model: Any, plan: Plan | None = None) -> Plan:
    """`plan`, or the one `build` attached to the model in this process."""
    if plan is not None:
        return plan
    attached: Plan | None = getattr(model, PLAN_ATTRIBUTE, None)
    if attached is None:
        raise SpecError(
            [
                Diagnostic(
                    file=str(getattr(model, "name", "model")),
                    message="this model carries no plan (it was loaded from a file), so its "
                    "branches cannot be matched",
                    hint="pass the spec it was built from: ghostspec.fuse(model, 'spec.yaml')",
                )
            ]
        )
    return attached


def fuse(model: keras.Model, plan: Plan | None = None, batch_norm: bool = False) -> keras.Model:
    """The deploy model: same outputs in inference mode, every GhostNetV3 branch set folded into
    one conv and, with `batch_norm`, every BatchNorm folded into the conv before it. `plan` is the
    one the model was built from (default: the one `build` attached). A model with nothing to fold
    is returned as it is."""
    from ghostspec.keras.model import build_model, data_format_of

    plan = plan_of(model, plan)
    deploy_plan = fuse_plan(plan, batch_norm)
    if deploy_plan == plan:
        return model
    deploy = build_model(deploy_plan, data_format_of(model))  # the layout of the model fused
    fused = {op.fused.name: op for op in reparams(plan)}
    # the convs whose BatchNorm fuse_plan folded (with batch_norm all but a tapped one, else none)
    bn_free = {op.conv.name for op in conv_ops(deploy_plan) if isinstance(op, ConvBn) and not op.bn}
    bn_convs = (op for op in conv_ops(plan) if isinstance(op, ConvBn) and op.bn is not None)
    folded = {op.conv.name: op for op in bn_convs if op.conv.name in bn_free}

    def weights(name: str) -> list[np.ndarray]:
        """The deploy weights of the reference module `name` of the training model."""
        if name in fused:
            return list(fused_weights(model, fused[name]))
        if name in folded:
            return list(folded_weights(model, folded[name]))
        return [np.asarray(w) for w in reference_layer(model, name).get_weights()]

    split = {
        half.conv.name: half
        for node in deploy_plan.nodes
        if isinstance(node, Bottleneck)
        for pair in node.split_convs
        for half in pair
    }
    for layer in deploy.layers:
        if not layer.weights:
            continue
        name = reference_name(layer.name)
        if name in split:
            half = split[name]
            layer.set_weights(half_weights(weights(half.whole.name), half))
        else:
            layer.set_weights(weights(name))
    setattr(deploy, PLAN_ATTRIBUTE, deploy_plan)
    return deploy
