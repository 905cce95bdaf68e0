"""GhostNetV3 deployment: fold every re-parameterisable conv into a single convolution.

Fusion has two halves. The plan half, `plan.fuse_plan`, replaces each `Reparam` (branches, a 1x1
branch, an identity BN) by the one biased conv the reference deploys, so the deploy model is built
like any other plan. The weight half lives here: each branch's BatchNorm is folded into its kernel
(W * g / sqrt(v + eps), b - m * g / sqrt(v + eps)), 1x1 kernels are zero-padded to the centre of
the k x k kernel, the identity BN becomes a kernel with 1 at the centre, and all are summed. The
arithmetic is plain numpy on Keras layouts; everything else is copied by layer name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostspec.plan import BatchNorm, Bottleneck, Conv, Plan, Reparam, fuse_plan

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


def _bn_values(model: Any, bn: BatchNorm) -> tuple[np.ndarray, ...]:
    layer = model.get_layer(bn.name)
    return tuple(
        np.asarray(v.numpy(), dtype=np.float64)
        for v in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
    )


def fused_weights(model: Any, op: Reparam) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of the single conv equal (in inference) to `op`'s branches in `model`."""
    kh, kw = op.fused.kernel_hw
    kernel = np.zeros(0)
    bias = np.zeros(op.fused.cout)
    parts: list[tuple[np.ndarray, BatchNorm, bool]] = []
    for branch in (*op.branches, *([op.scale] if op.scale is not None else [])):
        assert branch.bn is not None
        raw = np.asarray(model.get_layer(branch.conv.name).kernel.numpy(), dtype=np.float64)
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
    found = []
    for node in plan.nodes:
        if isinstance(node, Bottleneck):
            for op in (
                node.ghost1.primary,
                node.ghost1.cheap,
                node.conv_dw,
                node.ghost2.primary,
                node.ghost2.cheap,
            ):
                if isinstance(op, Reparam):
                    found.append(op)
    return found


def plan_of(model: Any, source: Any = None) -> Plan:
    """The plan a model was built from: `source` (spec path, Spec or Plan) or the one `build`
    attached to the model in this process."""
    import ghostspec

    if source is not None:
        return source if isinstance(source, Plan) else ghostspec.plan(source)
    plan = getattr(model, PLAN_ATTRIBUTE, None)
    if plan is None:
        raise ghostspec.SpecError(
            [
                ghostspec.Diagnostic(
                    file=str(getattr(model, "name", "model")),
                    message="this model carries no plan (it was loaded from a file), so its "
                    "branches cannot be matched",
                    hint="pass the spec it was built from: ghostspec.fuse(model, 'spec.yaml')",
                )
            ]
        )
    return plan


def fuse(model: keras.Model, source: str | Path | Any = None) -> keras.Model:
    """The deploy model of a GhostNetV3 training model: same outputs in inference mode, every
    branch folded into one conv. A model without branches is returned as it is."""
    from ghostspec.keras import build_model

    plan = plan_of(model, source)
    deploy_plan = fuse_plan(plan)
    if deploy_plan == plan:
        return model
    deploy = build_model(deploy_plan)
    fused = {op.fused.name: op for op in reparams(plan)}
    for layer in deploy.layers:
        if not layer.weights:
            continue
        if layer.name in fused:
            kernel, bias = fused_weights(model, fused[layer.name])
            layer.kernel.assign(kernel)
            layer.bias.assign(bias)
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    setattr(deploy, PLAN_ATTRIBUTE, deploy_plan)
    return deploy
