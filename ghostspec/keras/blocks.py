"""GhostNet building blocks as small functional builders, one per idea of the papers.

Each builder takes a Keras tensor and a plan node and returns a Keras tensor. Every number
(channels, kernel, stride, padding, epsilon, momentum, activation, upsampling indices) is read from
the plan; nothing here does channel arithmetic. Layer names are the plan's names made legal on
every backend (`plan.ir.layer_name`), so a layer tells where its weight lives in the reference
state dict (see `ghostspec.keras` for the naming rules).

The layout is Keras' `image_data_format()` at build time: channels-last (N, H, W, C) or
channels-first (N, C, H, W). Kernels have the same layout in both, so weights do not depend on it;
only the axes of BatchNorm, concatenation, slicing and upsampling do (`channel_axis`).
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import keras
import numpy as np
from keras import layers

from ghostspec.keras.layers import DepthwiseConv2D as TapDepthwiseConv2D
from ghostspec.keras.layers import LegacyNearestUpsample
from ghostspec.plan.ir import (
    HALVES,
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
    Reparam,
    SqueezeExcite,
    layer_name,
)

Tensor: TypeAlias = keras.KerasTensor

# Plan activation names -> Keras activation identifiers. On the TensorFlow backend Keras 3's
# `hard_sigmoid` is relu6(x + 3) / 6 and `hard_silu` is x * relu6(x + 3) / 6, as in the reference;
# `gelu` is the exact (erf) form, as PyTorch's default.
ACTIVATIONS: dict[str, str] = {
    "linear": "linear",
    "relu": "relu",
    "relu6": "relu6",
    "hard_swish": "hard_silu",
    "swish": "silu",
    "gelu": "gelu",
    "hard_sigmoid": "hard_sigmoid",
    "sigmoid": "sigmoid",
    "softmax": "softmax",
}

# Constant initializers are stateless, so one instance serves every layer (saves a lookup and an
# object per variable). Random initializers stay per layer: a shared one repeats its values.
ZEROS = keras.initializers.Zeros()
ONES = keras.initializers.Ones()


class HostGlorotUniform:
    """Keras' Glorot-uniform rule drawn by NumPy from the Keras initializer's own seed.

    The layer keeps Keras' GlorotUniform in its config (so the file and `from_config` are plain
    Keras); only its first weights come from here, because JAX compiles its random-number kernel
    once per weight shape (0.3-0.9 s each on a CPU: most of a model's build time there). The
    seed comes from Python's `random` like Keras', so `keras.utils.set_random_seed` still fixes
    the weights, and every backend draws the same ones.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in = shape[-2] * receptive if len(shape) > 1 else shape[0]
        fan_out = shape[-1] * receptive
        limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))  # scale 1, fan_avg
        draw = np.random.default_rng(self.seed).uniform(-limit, limit, size=shape)
        return draw.astype(keras.backend.standardize_dtype(dtype or keras.config.floatx()))


def built_on_host(layer: layers.Layer, attribute: str, x: Tensor) -> Tensor:
    """Call `layer` on `x` (which creates its weights) with its random initializer `attribute`
    drawn on the host; the layer keeps the Keras initializer for its config."""
    initializer = getattr(layer, attribute)
    seed = getattr(initializer, "seed", None)
    if type(initializer) is not keras.initializers.GlorotUniform or not isinstance(seed, int):
        return layer(x)
    setattr(layer, attribute, HostGlorotUniform(seed))
    try:
        return layer(x)
    finally:
        setattr(layer, attribute, initializer)


def channels_first() -> bool:
    return str(keras.config.image_data_format()) == "channels_first"


def channel_axis() -> int:
    return 1 if channels_first() else -1


def activation(x: Tensor, kind: str, name: str) -> Tensor:
    """Apply a plan activation; "linear" adds no layer at all."""
    if kind == "linear":
        return x
    return layers.Activation(ACTIVATIONS[kind], name=layer_name(name))(x)


def conv(x: Tensor, op: Conv, act: str = "linear") -> Tensor:
    """A convolution padded like PyTorch: symmetrically by kernel // 2 on each axis.

    Keras' "same" pads asymmetrically at stride 2, so strided convolutions get an explicit
    ZeroPadding2D and "valid"; at stride 1 "same" is symmetric for the odd kernels specs allow.
    `act` is applied inside the conv layer; only convs without BatchNorm after them use it.
    """
    padding = "same"
    if op.stride > 1:
        padding = "valid"
        if any(op.padding_hw):
            x = layers.ZeroPadding2D(op.padding_hw, name=layer_name(op.name, "pad"))(x)
    common = {
        "kernel_size": op.kernel_hw,
        "strides": op.stride,
        "padding": padding,
        "use_bias": op.bias,
        "activation": ACTIVATIONS[act],
        "bias_initializer": ZEROS,
        "name": op.layer_name,
    }
    if op.depthwise:
        # JAX: XLA's grouped convolution is slow on CPUs (see ghostspec.keras.layers)
        kind = layers.DepthwiseConv2D
        if keras.backend.backend() == "jax":
            kind = TapDepthwiseConv2D
        layer: layers.Layer = kind(depth_multiplier=op.depth_multiplier, **common)
        return built_on_host(layer, "depthwise_initializer", x)
    layer = layers.Conv2D(op.cout, groups=op.groups, **common)
    return built_on_host(layer, "kernel_initializer", x)


def batch_norm(x: Tensor, op: BatchNorm) -> Tensor:
    return layers.BatchNormalization(
        axis=channel_axis(),
        epsilon=op.epsilon,
        momentum=op.momentum,
        beta_initializer=ZEROS,
        gamma_initializer=ONES,
        moving_mean_initializer=ZEROS,
        moving_variance_initializer=ONES,
        name=op.layer_name,
    )(x)


def conv_bn_act(x: Tensor, op: ConvBn, act_name: str) -> Tensor:
    """conv -> BN -> activation, the unit every other block is made of. A fused (deploy) plan
    has no BN here: its conv carries the folded bias and applies the activation itself (one
    layer instead of two; TensorFlow runs conv, bias and ReLU as one fused op)."""
    if op.bn is None:
        return conv(x, op.conv, op.activation)
    x = batch_norm(conv(x, op.conv), op.bn)
    return activation(x, op.activation, act_name)


def reparam(x: Tensor, op: Reparam, act_name: str) -> Tensor:
    """GhostNetV3's re-parameterisable conv at training time: parallel conv+BN branches, the 1x1
    `scale` branch and the identity-BN `skip` branch, summed, then the activation."""
    parts = [conv_bn_act(x, branch, f"{branch.conv.name}.act") for branch in op.branches]
    if op.scale is not None:
        parts.append(conv_bn_act(x, op.scale, f"{op.scale.conv.name}.act"))
    if op.skip is not None:
        parts.append(batch_norm(x, op.skip))
    x = parts[0] if len(parts) == 1 else layers.Add(name=layer_name(op.fused.name, "sum"))(parts)
    return activation(x, op.activation, act_name)


def conv_op(x: Tensor, op: ConvOp, act_name: str) -> Tensor:
    """A plain conv+BN or its re-parameterisable (GhostNetV3) form."""
    if isinstance(op, Reparam):
        return reparam(x, op, act_name)
    return conv_bn_act(x, op, act_name)


def channel_crop(x: Tensor, start: int, stop: int, total: int, name: str) -> Tensor:
    """Channels [start, stop) of `x` as a named, serialisable standard layer.

    Keras has no slice layer. Cropping2D reads the layout it is told, not the tensor's: told
    channels-first, it reads a channels-last (N, H, W, C) tensor as (N, H, W', C') and crops its
    last two axes; told channels-last, it reads (N, C, H, W) as (N, H', W', C'') and crops axes 1
    and 2. Either way the crop touches the channels and nothing else.
    """
    cut = (start, total - stop)
    if channels_first():
        crop = (cut, (0, 0))
        return layers.Cropping2D(crop, data_format="channels_last", name=layer_name(name))(x)
    crop = ((0, 0), cut)
    return layers.Cropping2D(crop, data_format="channels_first", name=layer_name(name))(x)


def channel_slice(x: Tensor, keep: int, total: int, name: str) -> Tensor:
    """`x[:, :keep]` over the channel axis."""
    return channel_crop(x, 0, keep, total, name)


def repeat_twice(x: Tensor, name: str) -> Tensor:
    """Every row and column twice, by concatenation and reshape (static sizes only).

    The same function as UpSampling2D(2, "nearest"), which TFLite lowers to TILE, an op its CPU
    delegate (XNNPACK) does not take: the GhostNetV2 graph then runs in 29 pieces, about 20%
    slower at 2 threads. TFLite takes channels-last models only, so channels-first uses
    UpSampling2D.
    """
    if channels_first():
        return layers.UpSampling2D(2, interpolation="nearest", name=layer_name(name, "rows"))(x)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Concatenate(axis=-1, name=layer_name(name, "repeat_cols"))([x, x])  # pixels twice
    x = layers.Reshape((h, 2 * w, c), name=layer_name(name, "cols"))(x)
    x = layers.Concatenate(axis=2, name=layer_name(name, "repeat_rows"))([x, x])  # rows twice
    return layers.Reshape((2 * h, 2 * w, c), name=layer_name(name, "rows"))(x)


def nearest_upsample(
    x: Tensor, indices: tuple[tuple[int, ...], tuple[int, ...]], name: str
) -> Tensor:
    """Nearest upsampling by PyTorch's legacy rule, given the plan's source index per output row
    and column (`Dfc.upsample_indices`).

    From n pooled rows to 2n rows the rule repeats every row twice. To 2n + 1 rows it repeats the
    first row three times: every row twice, then the first row once more in front (Keras'
    Resizing and UpSampling2D alone round differently on odd sizes).
    """
    x = repeat_twice(x, name)
    first = 2 if channels_first() else 1  # the height axis
    for axis, index in enumerate(indices, start=1):
        pooled = index[-1] + 1
        doubled = tuple(i // 2 for i in range(2 * pooled))
        if index == doubled:
            continue
        if index != (0, *doubled):
            raise NotImplementedError(f"{name}: no layer for upsampling indices {index}")
        crop = ((0, 2 * pooled - 1), (0, 0)) if axis == 1 else ((0, 0), (0, 2 * pooled - 1))
        edge = layers.Cropping2D(crop, name=layer_name(name, f"edge{axis}"))(x)
        extend = layers.Concatenate(axis=first + axis - 1, name=layer_name(name, f"extend{axis}"))
        x = extend([edge, x])
    return x


def dfc_attention(x: Tensor, out: Tensor, op: Dfc) -> Tensor:
    """GhostNetV2's DFC attention: from the module input, 2x2 average pool (floor), 1x1 conv+BN,
    1 x k and k x 1 depthwise conv+BN, sigmoid gate, nearest upsampling, times the module output.

    With static sizes the upsampling is made of standard layers. With a dynamic input size the
    indices depend on the run-time shape, and the custom layer LegacyNearestUpsample does
    it: such a model's `.keras` file loads after `import ghostspec.keras`.
    """
    g = layers.AveragePooling2D(op.pool, strides=op.pool, name=layer_name(op.name, "pool"))(x)
    for part in (op.conv, op.horizontal, op.vertical):
        g = conv_bn_act(g, part, f"{part.conv.name}.act")
    g = activation(g, op.gate, f"{op.name}.gate")
    indices = op.upsample_indices()
    if indices is None:
        upsample = LegacyNearestUpsample(
            data_format=keras.config.image_data_format(), name=layer_name(op.name, "upsample")
        )
        g = upsample([g, out])
    else:
        g = nearest_upsample(g, indices, op.name)
    return layers.Multiply(name=layer_name(op.name, "scale"))([out, g])


def ghost_module(x: Tensor, op: GhostModule, primary: Tensor | None = None) -> Tensor:
    """Ghost module: a 1x1 primary conv makes the intrinsic maps, a cheap depthwise conv their
    ghosts; both are concatenated and cut to the module's output width, then gated by DFC
    attention where the plan has it. `primary`: the primary conv's output, already made."""
    if primary is None:
        primary = conv_op(x, op.primary, f"{op.name}.primary_conv.2")
    cheap = conv_op(primary, op.cheap, f"{op.name}.cheap_operation.2")
    out = layers.Concatenate(axis=channel_axis(), name=layer_name(op.name, "concat"))(
        [primary, cheap]
    )
    total = op.primary.conv.cout + op.cheap.conv.cout
    if total != op.cout:
        out = channel_slice(out, op.cout, total, f"{op.name}.slice")
    if op.attention is not None:
        out = dfc_attention(x, out, op.attention)
    return out


def squeeze_excite(x: Tensor, op: SqueezeExcite) -> Tensor:
    """Squeeze-excite: pool to one value per channel, reduce (+ activation), expand (+ gate),
    rescale the input. The activations sit inside the convs, which have no BatchNorm."""
    s = layers.GlobalAveragePooling2D(keepdims=True, name=layer_name(op.name, "pool"))(x)
    s = conv(s, op.reduce, op.activation)
    s = conv(s, op.expand, op.gate)
    return layers.Multiply(name=layer_name(op.name, "scale"))([x, s])


def split_middle(x: Tensor, node: Bottleneck) -> Tensor:
    """ghost1 -> [strided depthwise conv] -> [SE] -> ghost2's primary conv, with ghost1's two
    halves kept apart (deploy plans, `Bottleneck.split_ghost1`): every op in between works per
    channel, and the primary conv sums a conv over each half, so the concatenation of the wide
    hidden maps is never made. Same function; about 10% faster at batch 1 in TensorFlow and
    TFLite."""
    g1, g2 = node.ghost1, node.ghost2
    assert isinstance(g1.primary, ConvBn) and isinstance(g2.primary, ConvBn)
    *dw, primary = node.split_convs
    intrinsic = conv_op(x, g1.primary, f"{g1.name}.primary_conv.2")
    parts = [intrinsic, conv_op(intrinsic, g1.cheap, f"{g1.name}.cheap_operation.2")]
    if dw:
        assert isinstance(node.conv_dw, ConvBn)
        act = node.conv_dw.activation
        parts = [conv(p, half.conv, act) for p, half in zip(parts, dw[0], strict=True)]
    if node.se is not None:
        se = node.se
        pooled = [
            layers.GlobalAveragePooling2D(keepdims=True, name=layer_name(se.name, "pool", h))(p)
            for p, h in zip(parts, HALVES, strict=True)
        ]
        # one value per channel: tiny
        s = layers.Concatenate(axis=channel_axis(), name=layer_name(se.name, "pool"))(pooled)
        s = conv(conv(s, se.reduce, se.activation), se.expand, se.gate)
        cut = primary[0].channels[1]
        gates = [
            channel_crop(s, 0, cut, se.channels, f"{se.name}.gate.intrinsic"),
            channel_crop(s, cut, se.channels, se.channels, f"{se.name}.gate.ghost"),
        ]
        parts = [
            layers.Multiply(name=layer_name(se.name, "scale", h))([p, g])
            for p, g, h in zip(parts, gates, HALVES, strict=True)
        ]
    summed = layers.Add(name=layer_name(g2.primary.conv.name, "sum"))(
        [conv(p, half.conv) for p, half in zip(parts, primary, strict=True)]
    )
    summed = activation(summed, g2.primary.activation, f"{g2.name}.primary_conv.2")
    return ghost_module(summed, g2, primary=summed)


def bottleneck(x: Tensor, node: Bottleneck) -> Tensor:
    """Ghost bottleneck: ghost1, optional strided depthwise conv, optional SE, ghost2, plus the
    identity or projection shortcut; no activation after the add."""
    residual = x
    if node.split_ghost1:
        x = split_middle(x, node)
    else:
        x = ghost_module(x, node.ghost1)
        if node.conv_dw is not None:
            x = conv_op(x, node.conv_dw, f"{node.name}.act_dw")
        if node.se is not None:
            x = squeeze_excite(x, node.se)
        x = ghost_module(x, node.ghost2)
    if node.shortcut is not None:
        depthwise, pointwise = node.shortcut
        residual = conv_bn_act(residual, depthwise, f"{node.name}.shortcut.act1")
        residual = conv_bn_act(residual, pointwise, f"{node.name}.shortcut.act3")
    return layers.Add(name=layer_name(node.name, "add"))([x, residual])


def conv_node(x: Tensor, node: ConvNode) -> Tensor:
    """The stem (`conv_stem`, `bn1`, `act1`) or the last 1x1 conv (`blocks.N.0.{conv,bn1,act1}`)."""
    return conv_bn_act(x, node.op, _act_name(node))


def conv_node_pre_norm(x: Tensor, node: ConvNode) -> tuple[Tensor, Tensor]:
    """`conv_node`'s output and its conv's output before the BatchNorm, the map timm's
    features_only returns for the stem (deploy plans keep this BatchNorm unfolded)."""
    assert node.op.bn is not None
    pre = conv(x, node.op.conv)
    return activation(batch_norm(pre, node.op.bn), node.op.activation, _act_name(node)), pre


def _act_name(node: ConvNode) -> str:
    return "act1" if node.kind == "stem" else f"{node.name}.act1"


def head(x: Tensor, node: Head) -> Tensor:
    """Global pool (kept 1x1 so the 1x1 conv applies), `conv_head` with bias, no BN and its
    activation inside the conv layer, then flatten."""
    pool = layers.GlobalAveragePooling2D if node.pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(keepdims=True, name="global_pool")(x)
    if node.conv is not None:
        x = conv(x, node.conv, node.activation)
    return layers.Flatten(name="flatten")(x)  # a 1x1 map: the same in either layout


def classifier(x: Tensor, node: Classifier) -> Tensor:
    """Dropout, then the linear classifier (softmax inside it when the plan asks for
    probabilities)."""
    if node.dropout > 0:
        x = layers.Dropout(node.dropout, name=layer_name(node.name, "dropout"))(x)
    act = ACTIVATIONS[node.activation]
    dense = layers.Dense(node.linear.cout, activation=act, name=node.linear.layer_name)
    return built_on_host(dense, "kernel_initializer", x)
