"""Training augmentation in TensorFlow ops, randomness from a per-image stateless seed.

The transforms follow timm's ImageNet training transform (the GhostNet authors' recipe):
random resized crop (torchvision's sampling: 10 tries, then a centre crop clamped to the ratio
range), horizontal flip with probability 0.5, RandAugment (`rand-mM-mstdS`: N ops drawn with
replacement from timm's 15-op `_RAND_TRANSFORMS` set, each applied with probability 0.5 at a
magnitude drawn per application from N(M, S) and clipped to [0, 10]), normalisation, then random
erasing (timm's `RandomErasing` in "pixel" mode: one box of 2-33% of the area, log-uniform aspect
ratio in [0.3, 3.33], filled with standard-normal noise).

The RandAugment ops work on [0, 255] values and round the way PIL's 8-bit ops do. Known
differences from timm's PIL ops: geometric ops (rotate, shear, translate) always use bilinear
interpolation (timm picks bilinear or bicubic at random), and resizing is TensorFlow's antialiased
bilinear, which is close to, not bit-equal with, PIL's.

This module imports TensorFlow; `ghostspec.data` imports it only when a dataset is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tensorflow as tf

LEVEL_MAX = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is the strongest
OP_PROBABILITY = 0.5  # each chosen op is applied with this probability (timm's default)
TRANSLATE_FRACTION = 0.45  # TranslateXRel/YRel at magnitude 10: 45% of the image size

Image = tf.Tensor  # float32 [H, W, C] holding integers 0..255 (like PIL's 8-bit images)
Seed = tf.Tensor  # int32/int64 [2], a stateless seed


def _uniform(
    seed: Seed, shape: Sequence[int] = (), low: float = 0.0, high: float = 1.0
) -> tf.Tensor:
    return tf.random.stateless_uniform(list(shape), seed, low, high, dtype=tf.float32)


def _randint(seed: Seed, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """An integer in [low, high] inclusive (high >= low)."""
    span = tf.cast(high - low + 1, tf.float32)
    return low + tf.minimum(tf.cast(tf.floor(_uniform(seed) * span), tf.int32), high - low)


# random resized crop -------------------------------------------------------------------------


def crop_window(
    seed: Seed, height: tf.Tensor, width: tf.Tensor, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w), all int32 tensors."""
    tries = 10
    seeds = tf.random.experimental.stateless_split(seed, 4)
    area = tf.cast(height * width, tf.float32)
    target = area * _uniform(seeds[0], [tries], scale[0], scale[1])
    log_ratio = _uniform(seeds[1], [tries], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    w = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    h = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    found = tf.reduce_any(ok)
    # the fallback: the whole image, clamped to the ratio range, centred
    in_ratio = tf.cast(width, tf.float32) / tf.cast(height, tf.float32)
    fw = tf.where(
        in_ratio < ratio[0],
        width,
        tf.where(
            in_ratio > ratio[1],
            tf.cast(tf.round(tf.cast(height, tf.float32) * ratio[1]), tf.int32),
            width,
        ),
    )
    fh = tf.where(
        in_ratio < ratio[0],
        tf.cast(tf.round(tf.cast(width, tf.float32) / ratio[0]), tf.int32),
        height,
    )
    fh, fw = tf.clip_by_value(fh, 1, height), tf.clip_by_value(fw, 1, width)
    ch = tf.where(found, h[first], fh)
    cw = tf.where(found, w[first], fw)
    top = tf.where(found, _randint(seeds[2], 0, height - ch), (height - ch) // 2)
    left = tf.where(found, _randint(seeds[3], 0, width - cw), (width - cw) // 2)
    return top, left, ch, cw


def random_resized_crop(
    image: tf.Tensor,
    seed: Seed,
    size: Sequence[int],
    scale: Sequence[float],
    ratio: Sequence[float],
) -> Image:
    """uint8 [h, w, C] -> float32 [size, C] in 0..255 (rounded, as PIL's resize gives)."""
    shape = tf.shape(image)
    top, left, h, w = crop_window(seed, shape[0], shape[1], scale, ratio)
    window = image[top : top + h, left : left + w]
    resized = tf.image.resize(tf.cast(window, tf.float32), size, "bilinear", antialias=True)
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def flip(image: Image, seed: Seed) -> Image:
    return tf.cond(_uniform(seed) < 0.5, lambda: tf.reverse(image, [1]), lambda: image)


# RandAugment ops -----------------------------------------------------------------------------


def _blend(degenerate: Image, image: Image, factor: tf.Tensor) -> Image:
    """PIL's Image.blend (as ImageEnhance uses it): truncated to 8 bits."""
    return tf.floor(tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0))


def _luma(image: Image) -> Image:
    """PIL's convert("L") (fixed-point ITU-R 601-2), kept as [H, W, 1]."""
    if image.shape[-1] < 3:
        return image[..., :1]
    from ghostspec.images import luma

    return tf.cast(luma(tf.cast(image, tf.uint8)), tf.float32)


def auto_contrast(image: Image) -> Image:
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    stretched = tf.clip_by_value(tf.floor((image - lo) * scale), 0.0, 255.0)
    return tf.where(hi > lo, stretched, image)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
    values = tf.cast(channel, tf.int32)
    histogram = tf.math.bincount(values, minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)))
    step = (tf.reduce_sum(histogram) - last) // 256
    before = tf.cumsum(histogram, exclusive=True)
    lut = tf.minimum((step // 2 + before) // tf.maximum(step, 1), 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), tf.float32), channel)


def equalize(image: Image) -> Image:
    """PIL's ImageOps.equalize, channel by channel."""
    return tf.stack([_equalize_channel(image[..., c]) for c in range(image.shape[-1])], -1)


def invert(image: Image) -> Image:
    return 255.0 - image


def posterize(image: Image, bits: tf.Tensor) -> Image:
    shift = tf.cast(8 - bits, tf.int32)
    values = tf.cast(image, tf.int32)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(values, shift), shift), tf.float32)


def solarize(image: Image, threshold: tf.Tensor) -> Image:
    return tf.where(image < threshold, image, 255.0 - image)


def solarize_add(image: Image, add: tf.Tensor, threshold: float = 128.0) -> Image:
    return tf.where(image < threshold, tf.minimum(image + add, 255.0), image)


def color(image: Image, factor: tf.Tensor) -> Image:
    return _blend(tf.broadcast_to(_luma(image), tf.shape(image)), image, factor)


def contrast(image: Image, factor: tf.Tensor) -> Image:
    mean = tf.floor(tf.reduce_mean(_luma(image)) + 0.5)
    return _blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image: Image, factor: tf.Tensor) -> Image:
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: Image, factor: tf.Tensor) -> Image:
    """PIL's ImageEnhance.Sharpness: blend with the SMOOTH filter (3x3, centre 5, sum 13); the
    one-pixel border keeps the original values, as PIL's filter does."""
    channels = image.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.clip_by_value(tf.round(smooth), 0.0, 255.0)
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    shape = tf.shape(image)
    interior = tf.pad(tf.ones(shape[:2] - 2), [[1, 1], [1, 1]])[..., None] > 0
    return _blend(tf.where(interior, smooth, image), image, factor)


def affine(image: Image, matrix: Sequence[tf.Tensor | float], fill: Sequence[float]) -> Image:
    """PIL's Image.transform(AFFINE, (a, b, c, d, e, f)) with bilinear sampling: each output
    pixel centre (x + .5, y + .5) samples the input at (a x + b y + c, d x + e y + f); a sample
    outside the input gets the fill colour, one inside reads clamped neighbours (as PIL does)."""
    a, b, c, d, e, f = (tf.cast(v, tf.float32) for v in matrix)
    # PIL works in continuous coordinates (pixel centres at +0.5), TF in pixel indices
    c = c + 0.5 * a + 0.5 * b - 0.5
    f = f + 0.5 * d + 0.5 * e - 0.5
    transform = tf.stack([a, b, c, d, e, f, 0.0, 0.0])[None]
    shape = tf.shape(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    y = tf.range(h)[:, None]
    x = tf.range(w)[None, :]
    xin, yin = a * x + b * y + c, d * x + e * y + f
    inside = (xin >= -0.5) & (xin < w - 0.5) & (yin >= -0.5) & (yin < h - 0.5)
    colour = tf.constant(list(fill)[: image.shape[-1]], tf.float32)
    out = tf.where(inside[..., None], out, colour)
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def rotate(image: Image, degrees: tf.Tensor, fill: Sequence[float]) -> Image:
    """PIL's Image.rotate (counter-clockwise, about the centre, same size)."""
    shape = tf.cast(tf.shape(image), tf.float32)
    cx, cy = shape[1] / 2.0, shape[0] / 2.0
    angle = -degrees * math.pi / 180.0
    a, b = tf.cos(angle), tf.sin(angle)
    d, e = -tf.sin(angle), tf.cos(angle)
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(image, (a, b, c, d, e, f), fill)


def shear_x(image: Image, factor: tf.Tensor, fill: Sequence[float]) -> Image:
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill)


def shear_y(image: Image, factor: tf.Tensor, fill: Sequence[float]) -> Image:
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill)


def translate_x(image: Image, fraction: tf.Tensor, fill: Sequence[float]) -> Image:
    pixels = fraction * tf.cast(tf.shape(image)[1], tf.float32)
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill)


def translate_y(image: Image, fraction: tf.Tensor, fill: Sequence[float]) -> Image:
    pixels = fraction * tf.cast(tf.shape(image)[0], tf.float32)
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill)


# magnitude (0..10) -> argument, as timm's LEVEL_TO_ARG for the `rand` transforms ------------

OpFn = Callable[[Image, tf.Tensor, tf.Tensor, Sequence[float]], Image]


def _signed(value: tf.Tensor, negate: tf.Tensor) -> tf.Tensor:
    return tf.where(negate, -value, value)


def _enhance(level: tf.Tensor) -> tf.Tensor:
    return level / LEVEL_MAX * 1.8 + 0.1  # factor in [0.1, 1.9]


RAND_OPS: tuple[tuple[str, OpFn], ...] = (
    ("AutoContrast", lambda x, m, s, fill: auto_contrast(x)),
    ("Equalize", lambda x, m, s, fill: equalize(x)),
    ("Invert", lambda x, m, s, fill: invert(x)),
    ("Rotate", lambda x, m, s, fill: rotate(x, _signed(m / LEVEL_MAX * 30.0, s), fill)),
    ("Posterize", lambda x, m, s, fill: posterize(x, tf.floor(m / LEVEL_MAX * 4.0))),
    ("Solarize", lambda x, m, s, fill: solarize(x, tf.floor(m / LEVEL_MAX * 256.0))),
    ("SolarizeAdd", lambda x, m, s, fill: solarize_add(x, tf.floor(m / LEVEL_MAX * 110.0))),
    ("Color", lambda x, m, s, fill: color(x, _enhance(m))),
    ("Contrast", lambda x, m, s, fill: contrast(x, _enhance(m))),
    ("Brightness", lambda x, m, s, fill: brightness(x, _enhance(m))),
    ("Sharpness", lambda x, m, s, fill: sharpness(x, _enhance(m))),
    ("ShearX", lambda x, m, s, fill: shear_x(x, _signed(m / LEVEL_MAX * 0.3, s), fill)),
    ("ShearY", lambda x, m, s, fill: shear_y(x, _signed(m / LEVEL_MAX * 0.3, s), fill)),
    (
        "TranslateXRel",
        lambda x, m, s, fill: translate_x(x, _signed(m / LEVEL_MAX * TRANSLATE_FRACTION, s), fill),
    ),
    (
        "TranslateYRel",
        lambda x, m, s, fill: translate_y(x, _signed(m / LEVEL_MAX * TRANSLATE_FRACTION, s), fill),
    ),
)


def apply_op(
    index: tf.Tensor, image: Image, magnitude: tf.Tensor, negate: tf.Tensor, fill: Sequence[float]
) -> Image:
    """RAND_OPS[index] applied to `image` (tf.switch_case over the op table)."""
    branches = [
        (lambda fn=fn: tf.ensure_shape(fn(image, magnitude, negate, fill), image.shape))
        for _, fn in RAND_OPS
    ]
    return tf.switch_case(index, branches)


def rand_augment(
    image: Image, seed: Seed, *, layers: int, magnitude: float, std: float, fill: Sequence[float]
) -> Image:
    """timm's RandAugment: `layers` ops drawn with replacement, each applied with probability
    0.5 at a magnitude ~ N(magnitude, std) clipped to [0, 10]."""
    seeds = tf.random.experimental.stateless_split(seed, layers)
    for layer in range(layers):
        parts = tf.random.experimental.stateless_split(seeds[layer], 4)
        index = tf.minimum(
            tf.cast(tf.floor(_uniform(parts[0]) * len(RAND_OPS)), tf.int32), len(RAND_OPS) - 1
        )
        apply = _uniform(parts[1]) < OP_PROBABILITY
        level = magnitude
        if std > 0:
            level = magnitude + std * tf.random.stateless_normal([], parts[2])
        level = tf.clip_by_value(tf.cast(level, tf.float32), 0.0, LEVEL_MAX)
        negate = _uniform(parts[3]) < 0.5
        image = tf.cond(
            apply,
            lambda image=image, index=index, level=level, negate=negate: apply_op(
                index, image, level, negate, fill
            ),
            lambda image=image: image,
        )
    return image


# random erasing (after normalisation) ---------------------------------------------------------


def random_erasing(
    image: tf.Tensor,
    seed: Seed,
    probability: float,
    area: Sequence[float] = (0.02, 1 / 3),
    min_aspect: float = 0.3,
) -> tf.Tensor:
    """timm's RandomErasing(mode="pixel", count 1) on a normalised float image."""
    tries = 10
    seeds = tf.random.experimental.stateless_split(seed, 6)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    total = tf.cast(height * width, tf.float32)
    target = total * _uniform(seeds[0], [tries], area[0], area[1])
    aspect = tf.exp(_uniform(seeds[1], [tries], math.log(min_aspect), math.log(1 / min_aspect)))
    h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    ok = (w < width) & (h < height)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    eh, ew = h[first], w[first]
    top = _randint(seeds[2], 0, height - eh)
    left = _randint(seeds[3], 0, width - ew)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    noise = tf.random.stateless_normal(shape, seeds[4], dtype=image.dtype)
    erase = tf.reduce_any(ok) & (_uniform(seeds[5]) < probability)
    return tf.where(erase & box[..., None], noise, image)
