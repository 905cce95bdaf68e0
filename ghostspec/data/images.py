"""Reading image files safely, and THE evaluation preprocessing.

Every image ghostspec reads (training and validation data, evaluation, int8 calibration) is
checked here first: a regular file (never a FIFO or device: those hang or never end), at most
`MAX_IMAGE_BYTES`, a JPEG, PNG, BMP or GIF whose header Pillow can read, at most `MAX_PIXELS`
pixels and a sane aspect ratio, and not visibly truncated. Problems come back as one readable
line per file, named by path. The few kinds TensorFlow's decoders cannot read right (1-bit and
palette BMPs, CMYK JPEGs) are marked for Pillow, which decodes them inside the same pipelines.

The evaluation preprocessing (the reference's ImageNet evaluation, timm's `crop_pct` transform):
RGB in [0, 1], the shorter side resized to floor(size / crop_pct) keeping the aspect ratio
(bilinear, antialiased like PIL), a centre crop to size, then (x - mean) / std. It is written once,
in TensorFlow ops (`eval_preprocess`), so that the tf.data pipelines and the one-image-at-a-time
callers (export's calibration) run the same code. TensorFlow is imported inside the functions that
need it, never at import time.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import open_regular_file, read_regular_file

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FORMATS = ("JPEG", "PNG", "BMP", "GIF")
MAX_IMAGE_BYTES = 64 * 2**20
MAX_PIXELS = 50_000_000  # decoded pixels; a 50-megapixel photo is 150 MB as RGB uint8
MAX_ASPECT = 50.0  # longer side / shorter side; beyond this it is a banner, not a picture
DEFAULT_CROP_PCT = 0.875
TAIL_BYTES = 4096  # how much of a file's end the truncation check reads
_HINT = "replace or remove the file"


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, checked against the limits."""

    path: Path
    format: str  # one of FORMATS
    width: int
    height: int
    channels: int  # as stored: 1 (gray), 2 (gray + alpha), 3 (RGB), 4 (RGBA)
    bytes: int
    mode: str = "RGB"  # Pillow's name for the stored pixels: 1, L, P, RGB, CMYK, I;16, ...
    pillow: bool = False  # decoded by Pillow: TensorFlow's decoder cannot read it right

    @property
    def kind(self) -> str:
        """`BMP (mode 1)` style text for messages."""
        return f"{self.format} (mode {self.mode})"

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_error(path: str | Path, message: str, hint: str | None = _HINT) -> SpecError:
    return SpecError([Diagnostic(file=str(path), message=message, hint=hint)])


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file: a regular file of at most MAX_IMAGE_BYTES, else SpecError."""
    return read_regular_file(path, MAX_IMAGE_BYTES, "image file", _HINT)


def probe_bytes(data: bytes, path: str | Path) -> ImageInfo:
    """Check an image's header and ending without decoding its pixels; SpecError if unusable."""
    return _probe(io.BytesIO(data), len(data), path)


def probe(path: str | Path) -> ImageInfo:
    """Check one image file, reading only its header and its last bytes (a regular file of at
    most MAX_IMAGE_BYTES); SpecError naming it if it cannot be used."""
    with open_regular_file(path, MAX_IMAGE_BYTES, "image file", _HINT) as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            return _probe(handle, size, path)
        except OSError as err:
            raise image_error(path, f"cannot read the image file: {err.strerror}") from None


def _probe(handle: BinaryIO, size: int, path: str | Path) -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is stricter
            image = Image.open(handle)  # reads the header only; the handle stays ours
            fmt, (width, height), mode = image.format, image.size, image.mode
    except Image.DecompressionBombError as err:
        raise image_error(
            path,
            f"declares far more than the limit of {MAX_PIXELS:,} pixels ({err})",
            "downscale it first",
        ) from None
    except UnidentifiedImageError:
        raise image_error(
            path, "is not an image ghostspec can read (JPEG, PNG, BMP or GIF)"
        ) from None
    except Exception as err:  # Pillow raises many types for a damaged header
        if "runcated" in str(err):
            raise image_error(path, "is truncated: the file ends inside its header") from None
        raise image_error(
            path, f"has a damaged image header ({type(err).__name__}: {err})"
        ) from None
    if fmt not in FORMATS:
        raise image_error(path, f"is a {fmt} image; ghostspec reads JPEG, PNG, BMP and GIF")
    if width < 1 or height < 1:
        raise image_error(path, f"has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise image_error(
            path,
            f"is {width}x{height} = {width * height:,} pixels "
            f"({width * height * 3 / 2**20:,.0f} MiB decoded); the limit is {MAX_PIXELS:,}",
            "downscale it first",
        )
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT:
        raise image_error(
            path,
            f"is {width}x{height} pixels, an aspect ratio of {aspect:,.0f}:1; resizing its "
            f"shorter side for the network would need a {aspect:,.0f} times longer image. "
            f"The limit is {MAX_ASPECT:.0f}:1",
            "crop it to the part that matters, or remove it",
        )
    handle.seek(0)
    head = handle.read(64)
    handle.seek(max(0, size - TAIL_BYTES))
    tail = handle.read(TAIL_BYTES)
    if _truncated(fmt, head, tail, size):
        raise image_error(path, f"is a truncated {fmt} file (its end is missing)")
    pillow = _needs_pillow(fmt, mode, head)
    return ImageInfo(Path(path), fmt, width, height, _channels(mode), size, mode, pillow)


def _needs_pillow(fmt: str, mode: str, head: bytes) -> bool:
    """Whether TensorFlow's decoder would fail on the image, or read other pixels than Pillow:
    BMPs other than uncompressed 24- and 32-bit (1-bit images fail; palette images come out as
    their palette indices) and JPEGs other than gray and RGB (CMYK, YCCK)."""
    if fmt == "BMP":
        if len(head) < 34 or int.from_bytes(head[14:18], "little") < 40:
            return True  # an OS/2 header
        bits = int.from_bytes(head[28:30], "little")
        compression = int.from_bytes(head[30:34], "little")
        return bits not in (24, 32) or compression != 0 or mode not in ("RGB", "RGBA")
    if fmt == "JPEG":
        return mode not in ("L", "RGB")
    return False


def pillow_pixels(contents: bytes | np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] of an image Pillow decodes (the first frame): C is 1 (gray), 2 (gray and
    alpha), 3 (RGB) or 4 (RGBA), as stored, for `decode` to convert like any other image."""
    import numpy as np
    from PIL import Image

    data = contents if isinstance(contents, bytes) else bytes(contents.item())  # eager: an array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked in _probe
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            channels = _channels(image.mode)
            if "transparency" in image.info and channels in (1, 3):
                channels += 1
            target = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
            pixels = np.asarray(image.convert(target), np.uint8)
    return pixels.reshape(*pixels.shape[:2], channels)


def _channels(mode: str) -> int:
    if mode in ("1", "L", "I", "I;16", "F"):
        return 1
    if mode in ("LA", "La", "PA"):
        return 2
    if mode in ("RGBA", "RGBa"):
        return 4
    return 3  # RGB, P (palette), CMYK and YCbCr decode to RGB


def _truncated(fmt: str, head: bytes, tail: bytes, size: int) -> bool:
    """A cheap check of the format's end marker (`tail`: the file's last TAIL_BYTES), so that
    truncated downloads are found up front rather than failing inside TensorFlow's decoder in
    the middle of an epoch."""
    if fmt == "PNG":
        return b"IEND" not in tail[-64:]
    if fmt == "JPEG":
        # entropy-coded data never holds FF D9 (FF is stuffed), so a file cut inside the image
        # data has no end-of-image marker near its end; some cameras append bytes after it
        return b"\xff\xd9" not in tail
    if fmt == "GIF":
        return not tail.rstrip(b"\x00").endswith(b";")
    if fmt == "BMP" and len(head) >= 34:
        offset = int.from_bytes(head[10:14], "little")
        header = int.from_bytes(head[14:18], "little")
        compression = int.from_bytes(head[30:34], "little")
        if header < 40 or compression not in (0, 3):  # RLE sizes are not known up front
            return False
        width = abs(int.from_bytes(head[18:22], "little", signed=True))
        height = abs(int.from_bytes(head[22:26], "little", signed=True))
        bits = int.from_bytes(head[28:30], "little")
        row = (width * bits + 31) // 32 * 4
        return size < offset + row * height
    return False


def decode(contents: tf.Tensor, channels: int, pillow: bool | tf.Tensor = False) -> tf.Tensor:
    """TF ops: encoded bytes -> uint8 [H, W, channels] (first frame of a GIF).

    Pixels equal Pillow's (JPEG with the accurate IDCT). Gray, gray + alpha, RGB and RGBA
    convert as PIL's `convert` does: gray is repeated, alpha
    dropped (or added as opaque), and RGB becomes gray by ITU-R 601-2 luma. `pillow` (a bool
    or a boolean tensor: `ImageInfo.pillow`) decodes with Pillow instead, for the images
    TensorFlow's decoders cannot read right (1-bit and palette BMPs, CMYK JPEGs).
    """
    import tensorflow as tf

    def with_tensorflow() -> tf.Tensor:
        return tf.cond(
            tf.io.is_jpeg(contents),
            # the accurate IDCT gives exactly Pillow's pixels (the reference reads with PIL)
            lambda: tf.io.decode_jpeg(contents, channels=0, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=0, expand_animations=False),
        )

    def with_pillow() -> tf.Tensor:
        pixels = tf.numpy_function(pillow_pixels, [contents], tf.uint8, stateful=False)
        return tf.ensure_shape(pixels, [None, None, None])

    if isinstance(pillow, bool):
        image = with_pillow() if pillow else with_tensorflow()
    else:
        image = tf.cond(pillow, with_pillow, with_tensorflow)
    have = tf.shape(image)[-1]
    if channels == 1:
        return tf.cond(have >= 3, lambda: luma(image), lambda: image[..., :1])
    if channels not in (3, 4):
        raise ValueError(f"images have 1, 3 or 4 channels, not {channels}")
    index = tf.where(have >= 3, tf.range(3), tf.zeros(3, tf.int32))
    rgb = tf.gather(image, index, axis=-1)
    if channels == 3:
        return rgb
    alpha = tf.cond(
        tf.equal(have % 2, 0),  # 2 and 4 channels carry alpha last
        lambda: image[..., -1:],
        lambda: tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8)),
    )
    return tf.concat([rgb, alpha], -1)


def luma(image: tf.Tensor) -> tf.Tensor:
    """TF ops: uint8 RGB(A) -> uint8 gray [H, W, 1], PIL's fixed-point ITU-R 601-2 formula."""
    import tensorflow as tf

    rgb = tf.cast(image[..., :3], tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return tf.cast(tf.bitwise.right_shift(weighted, 16), tf.uint8)[..., None]


def resize_size(height: int, width: int, size: Sequence[int], crop_pct: float) -> tuple[int, int]:
    """The size an image is resized to before the centre crop (plain ints, for tests and docs)."""
    target = math.floor(max(size) / crop_pct)
    if height <= width:
        return max(target, size[0]), max(math.floor(target * width / height), size[1])
    return max(math.floor(target * height / width), size[0]), max(target, size[1])


def resize_crop(image: tf.Tensor, size: Sequence[int], crop_pct: float) -> tf.Tensor:
    """TF ops: uint8 [H, W, C] -> float32 [size[0], size[1], C] in [0, 1]: the shorter side
    resized to floor(max(size) / crop_pct), keeping the aspect ratio, then the centre crop.

    Only the cropped window of the resized image is computed (ScaleAndTranslate with the crop's
    offset), so a large image never allocates its full resized copy.
    """
    import tensorflow as tf

    height, width = size
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    h, w = shape[0], shape[1]
    target = tf.floor(tf.cast(max(height, width), tf.float64) / crop_pct)
    rh = tf.where(h <= w, target, tf.floor(target * h / w))
    rw = tf.where(h <= w, tf.floor(target * w / h), target)
    rh, rw = tf.maximum(rh, float(height)), tf.maximum(rw, float(width))
    top = tf.round((rh - height) / 2.0)
    left = tf.round((rw - width) / 2.0)
    resized = tf.raw_ops.ScaleAndTranslate(
        images=tf.cast(image, tf.float32)[None] / 255.0,
        size=tf.constant([height, width], tf.int32),
        scale=tf.cast(tf.stack([rh / h, rw / w]), tf.float32),
        translation=tf.cast(tf.stack([-top, -left]), tf.float32),
        kernel_type="triangle",
        antialias=True,
    )[0]
    return tf.clip_by_value(resized, 0.0, 1.0)


def normalise(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """TF ops: (x - mean) / std per channel."""
    import tensorflow as tf

    c = image.shape[-1]
    m = tf.constant(list(mean)[:c], tf.float32)
    s = tf.constant(list(std)[:c], tf.float32)
    return (image - m) / s


def eval_preprocess(
    image: tf.Tensor,
    size: Sequence[int],
    crop_pct: float,
    mean: Sequence[float],
    std: Sequence[float],
) -> tf.Tensor:
    """TF ops: uint8 [H, W, C] -> float32 [size[0], size[1], C], THE evaluation preprocessing."""
    return normalise(resize_crop(image, size, crop_pct), mean, std)


def load_eval_image(
    path: str | Path,
    *,
    size: Sequence[int],
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = DEFAULT_CROP_PCT,
) -> np.ndarray:
    """One image file through the checks and `eval_preprocess`: float32 [H, W, C] numpy."""
    import tensorflow as tf

    data = read_image_file(path)
    info = probe_bytes(data, path)
    try:
        image = decode(tf.constant(data), channels, info.pillow)
    except tf.errors.OpError:
        raise image_error(
            path, f"cannot be decoded: the {info.kind} image data is damaged"
        ) from None
    return eval_preprocess(image, size, crop_pct, mean, std).numpy()


def check_files(
    paths: Sequence[Path], *, threads: int = 8
) -> tuple[list[ImageInfo | None], list[Diagnostic]]:
    """Probe many files in parallel threads (I/O bound): per path its info or None, and the
    problems as Diagnostics (warnings), in the order of `paths`."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path: Path) -> ImageInfo | Diagnostic:
        try:
            return probe(path)
        except SpecError as err:
            d = err.diagnostics[0]
            return Diagnostic(file=d.file, message=d.message, hint=d.hint, severity="warning")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, paths))
    infos = [r if isinstance(r, ImageInfo) else None for r in results]
    problems = [r for r in results if isinstance(r, Diagnostic)]
    return infos, problems
