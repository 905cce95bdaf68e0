"""Training augmentation in TensorFlow ops, with stateless randomness (deterministic under
tf.data's parallel map): the crop and flip per image, RandAugment and erasing per batch, where
each op runs once on the images that drew it (no per-image branches, which cost more than the
ops themselves on small images).

The transforms follow timm's ImageNet training transform (the GhostNet authors' recipe):
random resized crop (torchvision's sampling: 10 tries, then a centre crop clamped to the ratio
range), horizontal flip with probability 0.5, RandAugment (`rand-mM-mstdS`: N ops drawn with
replacement from timm's 15-op `_RAND_TRANSFORMS` set, each applied with probability 0.5 at a
magnitude drawn per application from N(M, S) and clipped to [0, 10]), normalisation, then random
erasing (timm's `RandomErasing` in "pixel" mode: one box of 2-33% of the area, log-uniform aspect
ratio in [0.3, 3.33], filled with standard-normal noise).

The RandAugment ops work on [0, 255] values and round the way PIL's 8-bit ops do: the pixel
ops give exactly PIL's pixels, the geometric ones (rotate, shear, translate; the fill colour is
the mean, as timm's `img_mean`) agree within one grey level (tests/test_images.py checks both).
Known differences from timm: geometric ops always use bilinear interpolation (timm picks bilinear
or bicubic at random); Posterize at 0 bits gives black (Pillow before 10 did the same, newer
Pillow refuses 0); the crop's resize is TensorFlow's antialiased bilinear, within one grey level
of PIL's.

This module imports TensorFlow; `ghostspec.data.pipeline` imports it only when a dataset is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import tensorflow as tf

LEVEL_MAX = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is the strongest
OP_PROBABILITY = 0.5  # each chosen op is applied with this probability (timm's default)
TRANSLATE_FRACTION = 0.45  # TranslateXRel/YRel at magnitude 10: 45% of the image size

Image: TypeAlias = tf.Tensor  # float32 [H, W, C] holding integers 0..255 (like PIL's 8-bit images)
Images: TypeAlias = tf.Tensor  # float32 [n, H, W, C], the same for a batch
Seed: TypeAlias = tf.Tensor  # int32/int64 [2], a stateless seed


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
    window = tf.cast(image[top : top + h, left : left + w], tf.float32)
    # enlarging, the antialiased resize equals the plain bilinear one, at four times the cost
    resized = tf.cond(
        (h <= size[0]) & (w <= size[1]),
        lambda: tf.image.resize(window, size, "bilinear"),
        lambda: tf.image.resize(window, size, "bilinear", antialias=True),
    )
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def flip(image: Image, seed: Seed) -> Image:
    """Mirror left-right with probability 0.5 (tf.where, not tf.cond: no per-image branch)."""
    return tf.where(_uniform(seed) < 0.5, tf.reverse(image, [1]), image)


# RandAugment ops, on batches: images [n, H, W, C] in 0..255, one parameter per image [n] ------


def _per_image(value: tf.Tensor) -> tf.Tensor:
    return tf.cast(value, tf.float32)[:, None, None, None]


def _blend(degenerate: Images, images: Images, factor: tf.Tensor) -> Images:
    """PIL's Image.blend (as ImageEnhance uses it): truncated to 8 bits."""
    mixed = degenerate + _per_image(factor) * (images - degenerate)
    return tf.floor(tf.clip_by_value(mixed, 0.0, 255.0))


def _luma(images: Images) -> Images:
    """PIL's convert("L") (fixed-point ITU-R 601-2), kept as [n, H, W, 1]."""
    if images.shape[-1] < 3:
        return images[..., :1]
    from ghostspec.data.images import luma

    return tf.cast(luma(tf.cast(images, tf.uint8)), tf.float32)


def auto_contrast(images: Images) -> Images:
    lo = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    stretched = tf.clip_by_value(tf.floor((images - lo) * scale), 0.0, 255.0)
    return tf.where(hi > lo, stretched, images)


def equalize(images: Images) -> Images:
    """PIL's ImageOps.equalize, for every image and channel at once (one histogram each)."""
    shape = tf.shape(images)
    n, channels = shape[0], images.shape[-1]
    rows = n * channels  # one 256-bin histogram per (image, channel)
    row = tf.range(n)[:, None, None, None] * channels + tf.range(channels)
    values = tf.cast(images, tf.int32) + row * 256
    histogram = tf.reshape(
        tf.math.bincount(tf.reshape(values, [-1]), minlength=rows * 256, maxlength=rows * 256),
        [rows, 256],
    )
    bins = tf.range(256)
    last_bin = tf.reduce_max(tf.where(histogram > 0, bins, -1), axis=1)
    last = tf.gather(histogram, tf.maximum(last_bin, 0), batch_dims=1)
    step = (tf.reduce_sum(histogram, axis=1) - last) // 256
    before = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.minimum((step[:, None] // 2 + before) // tf.maximum(step[:, None], 1), 255)
    mapped = tf.cast(tf.gather(tf.reshape(lut, [-1]), values), tf.float32)
    keep = tf.reshape(step, [n, 1, 1, channels]) > 0
    return tf.where(keep, mapped, images)


def invert(images: Images) -> Images:
    return 255.0 - images


def posterize(images: Images, bits: tf.Tensor) -> Images:
    shift = tf.cast(8 - _per_image(bits), tf.int32)
    values = tf.cast(images, tf.int32)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(values, shift), shift), tf.float32)


def solarize(images: Images, threshold: tf.Tensor) -> Images:
    return tf.where(images < _per_image(threshold), images, 255.0 - images)


def solarize_add(images: Images, add: tf.Tensor, threshold: float = 128.0) -> Images:
    return tf.where(images < threshold, tf.minimum(images + _per_image(add), 255.0), images)


def color(images: Images, factor: tf.Tensor) -> Images:
    return _blend(tf.broadcast_to(_luma(images), tf.shape(images)), images, factor)


def contrast(images: Images, factor: tf.Tensor) -> Images:
    mean = tf.floor(tf.reduce_mean(_luma(images), axis=[1, 2, 3], keepdims=True) + 0.5)
    return _blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


def brightness(images: Images, factor: tf.Tensor) -> Images:
    return _blend(tf.zeros_like(images), images, factor)


def sharpness(images: Images, factor: tf.Tensor) -> Images:
    """PIL's ImageEnhance.Sharpness: blend with the SMOOTH filter (3x3, centre 5, sum 13); the
    one-pixel border keeps the original values, as PIL's filter does."""
    channels = images.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")  # border replaced
    smooth = tf.clip_by_value(tf.round(smooth), 0.0, 255.0)
    shape = tf.shape(images)
    interior = tf.pad(tf.ones(shape[1:3] - 2), [[1, 1], [1, 1]])[None, :, :, None] > 0
    return _blend(tf.where(interior, smooth, images), images, factor)


def affine(images: Images, matrix: Sequence[tf.Tensor], fill: Sequence[float]) -> Images:
    """PIL's Image.transform(AFFINE, (a, b, c, d, e, f)) with bilinear sampling, one matrix per
    image (each entry [n]): the output pixel centre (x + .5, y + .5) samples the input at
    (a x + b y + c, d x + e y + f); a sample outside the input gets the fill colour, one inside
    reads clamped neighbours (as PIL does)."""
    n = tf.shape(images)[0]
    a, b, c, d, e, f = (tf.broadcast_to(tf.cast(v, tf.float32), [n]) for v in matrix)
    # PIL works in continuous coordinates (pixel centres at +0.5), TF in pixel indices
    c = c + 0.5 * a + 0.5 * b - 0.5
    f = f + 0.5 * d + 0.5 * e - 0.5
    zeros = tf.zeros_like(a)
    transforms = tf.stack([a, b, c, d, e, f, zeros, zeros], axis=1)
    shape = tf.shape(images)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    y = tf.range(h)[None, :, None]
    x = tf.range(w)[None, None, :]
    a, b, c, d, e, f = (v[:, None, None] for v in (a, b, c, d, e, f))
    xin, yin = a * x + b * y + c, d * x + e * y + f
    inside = (xin >= -0.5) & (xin < w - 0.5) & (yin >= -0.5) & (yin < h - 0.5)
    colour = tf.constant(list(fill)[: images.shape[-1]], tf.float32)
    out = tf.where(inside[..., None], out, colour)
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def rotate(images: Images, degrees: tf.Tensor, fill: Sequence[float]) -> Images:
    """PIL's Image.rotate (counter-clockwise, about the centre, same size)."""
    shape = tf.cast(tf.shape(images), tf.float32)
    cx, cy = shape[2] / 2.0, shape[1] / 2.0
    angle = -tf.cast(degrees, tf.float32) * math.pi / 180.0
    a, b = tf.cos(angle), tf.sin(angle)
    d, e = -tf.sin(angle), tf.cos(angle)
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(images, (a, b, c, d, e, f), fill)


def shear_x(images: Images, factor: tf.Tensor, fill: Sequence[float]) -> Images:
    one, zero = tf.ones_like(factor), tf.zeros_like(factor)
    return affine(images, (one, factor, zero, zero, one, zero), fill)


def shear_y(images: Images, factor: tf.Tensor, fill: Sequence[float]) -> Images:
    one, zero = tf.ones_like(factor), tf.zeros_like(factor)
    return affine(images, (one, zero, zero, factor, one, zero), fill)


def translate_x(images: Images, fraction: tf.Tensor, fill: Sequence[float]) -> Images:
    pixels = fraction * tf.cast(tf.shape(images)[2], tf.float32)
    one, zero = tf.ones_like(pixels), tf.zeros_like(pixels)
    return affine(images, (one, zero, pixels, zero, one, zero), fill)


def translate_y(images: Images, fraction: tf.Tensor, fill: Sequence[float]) -> Images:
    pixels = fraction * tf.cast(tf.shape(images)[1], tf.float32)
    one, zero = tf.ones_like(pixels), tf.zeros_like(pixels)
    return affine(images, (one, zero, zero, zero, one, pixels), fill)


# magnitude (0..10) -> argument, as timm's LEVEL_TO_ARG for the `rand` transforms ------------

OpFn = Callable[[Images, tf.Tensor, tf.Tensor, Sequence[float]], Images]


def _signed(value: tf.Tensor, negate: tf.Tensor) -> tf.Tensor:
    return tf.where(negate, -value, value)


def _enhance(level: tf.Tensor) -> tf.Tensor:
    return level / LEVEL_MAX * 1.8 + 0.1  # factor in [0.1, 1.9]


def _translate(level: tf.Tensor, negate: tf.Tensor) -> tf.Tensor:
    return _signed(level / LEVEL_MAX * TRANSLATE_FRACTION, negate)


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
    ("TranslateXRel", lambda x, m, s, fill: translate_x(x, _translate(m, s), fill)),
    ("TranslateYRel", lambda x, m, s, fill: translate_y(x, _translate(m, s), fill)),
)


def apply_ops(
    images: Images,
    choice: tf.Tensor,
    magnitude: tf.Tensor,
    negate: tf.Tensor,
    fill: Sequence[float],
) -> Images:
    """Image i gets RAND_OPS[choice[i]] (choice -1: unchanged). Each op runs once, on the
    images that chose it, and the results are stitched back in order: no per-image branching."""
    positions = tf.range(tf.shape(images)[0])
    indices = [tf.boolean_mask(positions, choice < 0)]
    parts = [tf.gather(images, indices[0])]
    for k, (_, fn) in enumerate(RAND_OPS):
        chosen = tf.boolean_mask(positions, tf.equal(choice, k))
        sub = tf.gather(images, chosen)
        indices.append(chosen)
        parts.append(
            tf.ensure_shape(
                fn(sub, tf.gather(magnitude, chosen), tf.gather(negate, chosen), fill), sub.shape
            )
        )
    return tf.dynamic_stitch(indices, parts)


def rand_augment(
    images: Images, seed: Seed, *, layers: int, magnitude: float, std: float, fill: Sequence[float]
) -> Images:
    """timm's RandAugment on a batch: per image, `layers` ops drawn with replacement, each
    applied with probability 0.5 at a magnitude ~ N(magnitude, std) clipped to [0, 10]."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, layers)
    for layer in range(layers):
        parts = tf.random.experimental.stateless_split(seeds[layer], 4)
        op = tf.random.stateless_uniform([n], parts[0], 0, len(RAND_OPS), dtype=tf.int32)
        apply = _uniform(parts[1], [n]) < OP_PROBABILITY
        level = tf.fill([n], float(magnitude))
        if std > 0:
            level = level + std * tf.random.stateless_normal([n], parts[2])
        level = tf.clip_by_value(level, 0.0, LEVEL_MAX)
        negate = _uniform(parts[3], [n]) < 0.5
        images = apply_ops(images, tf.where(apply, op, -1), level, negate, fill)
    return images


# random erasing (after normalisation), on batches ---------------------------------------------


def random_erasing(
    images: tf.Tensor,
    seed: Seed,
    probability: float,
    area: Sequence[float] = (0.02, 1 / 3),
    min_aspect: float = 0.3,
) -> tf.Tensor:
    """timm's RandomErasing(mode="pixel", count 1) on normalised float images [n, H, W, C]:
    per image with `probability`, up to 10 tries for a box that fits, filled with N(0, 1)."""
    tries = 10
    seeds = tf.random.experimental.stateless_split(seed, 6)
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    total = tf.cast(height * width, tf.float32)
    target = total * _uniform(seeds[0], [n, tries], area[0], area[1])
    log_aspect = _uniform(seeds[1], [n, tries], math.log(min_aspect), math.log(1 / min_aspect))
    aspect = tf.exp(log_aspect)
    h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    ok = (w < width) & (h < height)
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    eh = tf.gather(h, first, batch_dims=1)
    ew = tf.gather(w, first, batch_dims=1)
    top = tf.cast(
        tf.floor(_uniform(seeds[2], [n]) * tf.cast(height - eh + 1, tf.float32)), tf.int32
    )
    left = tf.cast(
        tf.floor(_uniform(seeds[3], [n]) * tf.cast(width - ew + 1, tf.float32)), tf.int32
    )
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    top, left, eh, ew = (v[:, None, None] for v in (top, left, eh, ew))
    box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    erase = tf.reduce_any(ok, axis=1) & (_uniform(seeds[5], [n]) < probability)
    # noise only for the images that are erased (a fifth of them at p = 0.2): it is the cost
    positions = tf.range(n)
    chosen, kept = tf.boolean_mask(positions, erase), tf.boolean_mask(positions, ~erase)
    sub = tf.gather(images, chosen)
    noise = tf.random.stateless_normal(tf.shape(sub), seeds[4], dtype=images.dtype)
    sub = tf.where(tf.gather(box, chosen)[..., None], noise, sub)
    return tf.dynamic_stitch([kept, chosen], [tf.gather(images, kept), sub])
