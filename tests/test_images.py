"""Image files: bounded, regular-file-only reading, readable per-file messages, decoding to the
spec's channels, THE evaluation preprocessing, and the RandAugment ops against PIL's."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_shapes
from isolation import assert_imports_no_framework
from PIL import Image, ImageEnhance, ImageOps

from ghostspec.data import images
from ghostspec.deploy import export
from ghostspec.diagnostics import SpecError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _smooth(h: int = 37, w: int = 45, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.integers(-20, 21, (h, w, 3))
    return np.clip(np.cumsum(steps, axis=1) + 128, 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str, mode: str | None = None, **kw: object) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds almost no pixel data (an image bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _message(path: Path) -> str:
    with pytest.raises(SpecError) as err:
        images.probe(path)
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.file == str(path)
    text = str(err.value)
    assert "function_node" not in text and "Traceback" not in text
    return diagnostic.message


# refusing what cannot be an image -------------------------------------------------------------


def test_fifo_device_and_folder_named_jpg_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading the plain way would block forever
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")  # reading it would never end
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    assert "not a regular file" in _message(fifo)
    assert "not a regular file" in _message(zero)
    assert "is a directory" in _message(folder)
    assert "no such" in _message(tmp_path / "missing.png")


def test_damaged_files_are_named_with_the_reason(tmp_path: Path) -> None:
    jpeg, png = _encode(_smooth(300, 400), "JPEG"), _encode(_smooth(), "PNG")
    cases = {
        "noise.jpg": (np.random.default_rng(0).bytes(3000), "not an image"),
        "empty.png": (b"", "not an image"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "header.jpg": (jpeg[:300], "truncated"),
        "cut.png": (png[: len(png) // 2], "truncated PNG"),
        "cut.gif": (_encode(_smooth(), "GIF")[:-40], "truncated GIF"),
        "cut.bmp": (_encode(_smooth(), "BMP")[:-100], "truncated BMP"),
        "photo.jpg": (_encode(_smooth(), "TIFF"), "TIFF image"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert expected in _message(tmp_path / name), name


def test_huge_and_banner_images_are_refused_from_the_header(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(9000, 8000))  # 216 MB decoded, 100 bytes on disk
    message = _message(big)
    assert "9000x8000" in message and f"{images.MAX_PIXELS:,}" in message
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 30 GB decoded
    assert f"more than the limit of {images.MAX_PIXELS:,}" in _message(bomb)
    banner = tmp_path / "banner.png"
    Image.new("RGB", (400_000, 1), (200, 10, 10)).save(banner)
    message = _message(banner)
    assert "400000x1" in message and "aspect ratio" in message


def test_a_file_over_the_byte_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_encode(_smooth(), "PNG"))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
    assert "limit is 100" in _message(path)


def test_check_files_reports_every_bad_file_and_keeps_the_rest(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(_encode(_smooth(), "PNG"))
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    paths = [good, tmp_path / "pipe.jpg", tmp_path / "bad.jpg"]
    infos, problems = images.check_files(paths)
    assert infos[0] is not None and (infos[0].width, infos[0].height) == (45, 37)
    assert infos[1] is None and infos[2] is None
    assert [d.file for d in problems] == [str(paths[1]), str(paths[2])]
    assert all(d.severity == "warning" for d in problems)


# decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("PNG", "RGB"),
        ("PNG", "L"),
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("PNG", "P"),
        ("BMP", "RGB"),
        ("BMP", "L"),
        ("GIF", "P"),
    ],
)
def test_formats_and_modes_decode_to_the_requested_channels(fmt: str, mode: str) -> None:
    import tensorflow as tf

    data = _encode(_smooth(), fmt, mode)
    info = images.probe_bytes(data, f"x.{fmt.lower()}")
    assert (info.format, info.width, info.height) == (fmt, 45, 37)
    stored = Image.open(io.BytesIO(data))
    for channels, pil_mode in ((3, "RGB"), (1, "L")):
        ours = images.decode(tf.constant(data), channels).numpy()
        assert ours.shape == (37, 45, channels)
        expected = np.asarray(stored.convert(pil_mode)).reshape(37, 45, channels)
        np.testing.assert_array_equal(ours, expected)


def test_an_animated_gif_gives_its_first_frame() -> None:
    import tensorflow as tf

    frames = [Image.new("RGB", (8, 6), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = images.decode(tf.constant(buffer.getvalue()), 3).numpy()
    assert image.shape == (6, 8, 3) and image[..., 0].min() > 200 and image[..., 2].max() < 50


# THE evaluation preprocessing -----------------------------------------------------------------


def test_resize_size_follows_the_crop_pct_rule() -> None:
    assert images.resize_size(37, 45, (24, 24), 0.875) == (27, 32)  # floor(24 / .875) = 27
    assert images.resize_size(500, 375, (224, 224), 0.875) == (341, 256)
    assert images.resize_size(10, 10, (32, 32), 1.0) == (32, 32)


@pytest.mark.parametrize(
    ("size", "crop_pct"), [((24, 24), 0.875), ((20, 30), 0.9), ((32, 32), 1.0)]
)
def test_resize_crop_equals_a_full_resize_then_centre_crop(
    size: tuple[int, int], crop_pct: float
) -> None:
    import tensorflow as tf

    array = _smooth()
    ours = images.resize_crop(tf.constant(array), size, crop_pct).numpy()
    rh, rw = images.resize_size(37, 45, size, crop_pct)
    full = tf.image.resize(tf.constant(array, tf.float32) / 255.0, (rh, rw), antialias=True)
    top, left = round((rh - size[0]) / 2), round((rw - size[1]) / 2)
    reference = np.clip(full.numpy()[top : top + size[0], left : left + size[1]], 0, 1)
    assert ours.shape == (*size, 3)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # and close to PIL's antialiased bilinear resize (the reference implementation's)
    pil = Image.fromarray(array).resize((rw, rh), Image.BILINEAR)
    pil = np.asarray(pil.crop((left, top, left + size[1], top + size[0])), np.float64)
    assert np.abs(ours * 255 - pil).max() <= 1.0


def test_calibration_and_evaluation_give_identical_tensors(tmp_path: Path) -> None:
    from ghostspec.data import pipeline as data

    root = make_shapes(tmp_path / "shapes", classes=2, per_class=3, size=40, layout="flat")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, path in enumerate(files):
        (calib / f"{i:02d}{path.suffix}").write_bytes(path.read_bytes())
    pre = export.Preprocessing(mean=MEAN, std=STD)
    calibration = np.concatenate(list(export.calibration_batches(str(calib), (32, 32, 3), pre)))
    samples = [data.Sample(path, 0) for path in sorted(calib.iterdir())]
    dataset = data.eval_dataset(
        samples, size=32, channels=3, mean=MEAN, std=STD, crop_pct=0.875, batch=4
    )
    evaluation = np.concatenate([x.numpy() for x, _ in dataset])
    assert calibration.shape == evaluation.shape == (len(files), 32, 32, 3)
    np.testing.assert_array_equal(calibration, evaluation)
    # normalised: [0, 1] mapped through (x - mean) / std
    assert calibration.min() >= (0 - max(MEAN)) / min(STD) - 1e-6
    assert calibration.max() <= (1 - min(MEAN)) / min(STD) + 1e-6


def test_calibration_names_every_unusable_file_before_converting(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(_encode(_smooth(), "PNG"))
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(SpecError) as err:
        export.calibration_batches(str(tmp_path), (32, 32, 3), export.Preprocessing())
    assert sorted(Path(d.file).name for d in err.value.diagnostics) == [
        "pipe.jpg",
        "x.jpg",
        "zero.jpg",
    ]


def test_images_and_discovery_need_no_tensorflow(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "shapes", classes=2, per_class=2, layout="flat")
    assert_imports_no_framework(
        f"""
import sys
from pathlib import Path
from ghostspec.data import pipeline as data
from ghostspec.data import images
from ghostspec.deploy import export
folder = data.discover({str(root)!r})
checked = data.check_samples(folder.splits["train"])
assert len(checked.samples) == 2, checked
"""
    )


# RandAugment ops against PIL (timm applies them to PIL images) -------------------------------

FILL = (124, 116, 104)


def _ops() -> list[tuple[str, object, object]]:
    import tensorflow as tf

    from ghostspec.data import augment as a

    def f(value: float) -> object:
        return tf.constant([value])  # one parameter per image of the batch

    def affine(*matrix: float) -> object:
        return lambda p: p.transform(p.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=FILL)

    def enhance(kind: type, factor: float) -> object:
        return lambda p: kind(p).enhance(factor)

    solarize_add = [min(255, i + 50) if i < 128 else i for i in range(256)] * 3
    return [
        ("autocontrast", lambda x: a.auto_contrast(x), ImageOps.autocontrast),
        ("equalize", lambda x: a.equalize(x), ImageOps.equalize),
        ("invert", lambda x: a.invert(x), ImageOps.invert),
        ("posterize", lambda x: a.posterize(x, f(3.0)), lambda p: ImageOps.posterize(p, 3)),
        ("solarize", lambda x: a.solarize(x, f(100.0)), lambda p: ImageOps.solarize(p, 100)),
        ("solarize_add", lambda x: a.solarize_add(x, f(50.0)), lambda p: p.point(solarize_add)),
        ("color", lambda x: a.color(x, f(0.3)), enhance(ImageEnhance.Color, 0.3)),
        ("contrast", lambda x: a.contrast(x, f(1.6)), enhance(ImageEnhance.Contrast, 1.6)),
        ("brightness", lambda x: a.brightness(x, f(1.6)), enhance(ImageEnhance.Brightness, 1.6)),
        ("sharpness", lambda x: a.sharpness(x, f(0.3)), enhance(ImageEnhance.Sharpness, 0.3)),
        (
            "rotate",
            lambda x: a.rotate(x, f(20.0), FILL),
            lambda p: p.rotate(20, resample=Image.BILINEAR, fillcolor=FILL),
        ),
        ("shear_x", lambda x: a.shear_x(x, f(0.2), FILL), affine(1, 0.2, 0, 0, 1, 0)),
        ("shear_y", lambda x: a.shear_y(x, f(-0.2), FILL), affine(1, 0, 0, -0.2, 1, 0)),
        ("translate_x", lambda x: a.translate_x(x, f(0.3), FILL), affine(1, 0, 0.3 * 45, 0, 1, 0)),
        (
            "translate_y",
            lambda x: a.translate_y(x, f(-0.3), FILL),
            affine(1, 0, 0, 0, 1, -0.3 * 37),
        ),
    ]


def test_randaugment_ops_match_pil() -> None:
    import tensorflow as tf

    array = _smooth()
    x = tf.constant(array[None], tf.float32)
    for name, ours, theirs in _ops():
        got = ours(x).numpy()[0]  # type: ignore[operator]
        want = np.asarray(theirs(Image.fromarray(array)), np.float64)  # type: ignore[operator]
        diff = np.abs(got - want)
        # pixel ops are exact; geometric ones differ by at most one grey level (float against
        # fixed-point bilinear weights) except where a sample falls exactly on the image border
        assert diff.max() <= 1.0 or (diff > 1).mean() < 0.01, name
        assert diff.mean() < 0.5, name
        if name not in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
            assert diff.max() == 0, name


def test_batched_ops_treat_every_image_on_its_own() -> None:
    import tensorflow as tf

    from ghostspec.data import augment as a

    batch = np.stack([_smooth(seed=i) for i in range(4)])
    x = tf.constant(batch, tf.float32)
    choice = tf.constant([1, -1, 3, 1])  # Equalize, unchanged, Rotate, Equalize
    level = tf.constant([9.0, 9.0, 5.0, 9.0])
    out = a.apply_ops(x, choice, level, tf.constant([False] * 4), FILL).numpy()
    np.testing.assert_array_equal(out[1], batch[1])
    for i in (0, 3):
        np.testing.assert_array_equal(
            out[i], np.asarray(ImageOps.equalize(Image.fromarray(batch[i])))
        )
    rotated = a.rotate(x[2:3], tf.constant([15.0]), FILL).numpy()[0]  # level 5 -> 15 degrees
    np.testing.assert_array_equal(out[2], rotated)
    # RandAugment over a batch: deterministic in the seed, and images differ in what they get
    seed = tf.constant([3, 4], tf.int64)
    first = a.rand_augment(x, seed, layers=2, magnitude=9, std=0.5, fill=FILL).numpy()
    again = a.rand_augment(x, seed, layers=2, magnitude=9, std=0.5, fill=FILL).numpy()
    np.testing.assert_array_equal(first, again)
    erased = a.random_erasing(x / 255.0, seed, 1.0).numpy()
    changed = (erased != (x / 255.0).numpy()).any(axis=-1).mean(axis=(1, 2))
    assert ((changed > 0.015) & (changed < 0.34)).all()  # one box of 2-33% of each image


def test_random_resized_crop_windows_follow_the_scale_and_ratio_ranges() -> None:
    import tensorflow as tf

    from ghostspec.data import augment as a

    areas, ratios = [], []
    for i in range(200):
        seed = tf.constant([i, 7], tf.int64)
        top, left, h, w = (int(v) for v in a.crop_window(seed, 120, 90, (0.2, 0.6), (0.75, 4 / 3)))
        assert 0 <= top <= 120 - h and 0 <= left <= 90 - w
        areas.append(h * w / (120 * 90))
        ratios.append(w / h)
    # rounding to whole pixels moves the bounds a little
    assert min(areas) > 0.19 and max(areas) < 0.62 and np.std(areas) > 0.08
    assert min(ratios) > 0.72 and max(ratios) < 1.38
    image = tf.constant(_smooth(120, 90), tf.uint8)
    out = a.random_resized_crop(
        image, tf.constant([1, 2], tf.int64), (32, 40), (0.2, 0.6), (0.75, 1.3)
    )
    assert out.shape == (32, 40, 3) and float(tf.reduce_max(out)) <= 255.0
    assert np.array_equal(out.numpy(), np.round(out.numpy()))  # whole grey levels, as PIL's
