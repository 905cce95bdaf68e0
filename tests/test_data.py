"""Image folders: layouts, the seeded stratified split, bad folders, and the tf.data pipelines
(shapes, value ranges, determinism with a seed, unreadable files reported by path)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_shapes
from PIL import Image

from ghostspec.data import pipeline as data
from ghostspec.diagnostics import SpecError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PIPELINE = {"size": 32, "channels": 3, "mean": MEAN, "std": STD}


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("split"), classes=4, per_class=12, test=True)


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("flat"), classes=3, per_class=20, layout="flat")


def _error(root: Path | str, **kwargs: object) -> str:
    with pytest.raises(SpecError) as err:
        data.discover(root, **kwargs)  # type: ignore[arg-type]
    return str(err.value)


# discovery -----------------------------------------------------------------------------------


def test_split_layout_finds_sorted_classes_and_every_split(split_root: Path) -> None:
    folder = data.discover(split_root)
    assert folder.layout == "split"
    assert folder.classes == ("circle", "square", "stripes", "triangle")
    assert {k: len(v) for k, v in folder.splits.items()} == {"train": 36, "val": 12, "test": 12}
    for split, samples in folder.splits.items():
        for sample in samples:
            assert sample.path.parent.parent.name == split
            assert folder.classes[sample.label] == sample.path.parent.name


def test_flat_layout_is_split_per_class_by_the_seeded_fraction(flat_root: Path) -> None:
    folder = data.discover(flat_root, val_split=0.25, seed=1)
    assert folder.layout == "flat" and set(folder.splits) == {"train", "val"}
    assert Counter(s.label for s in folder.splits["val"]) == {0: 5, 1: 5, 2: 5}  # stratified
    assert Counter(s.label for s in folder.splits["train"]) == {0: 15, 1: 15, 2: 15}
    train = {s.path for s in folder.splits["train"]}
    val = {s.path for s in folder.splits["val"]}
    assert not train & val and len(train | val) == 60
    assert data.discover(flat_root, val_split=0.25, seed=1) == folder  # the seed fixes it
    other = data.discover(flat_root, val_split=0.25, seed=2)
    assert {s.path for s in other.splits["val"]} != val
    default = data.discover(flat_root)  # a plain folder without a fraction: 20% held out
    assert len(default.splits["val"]) == 12


def test_train_folder_without_val_needs_a_fraction(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "d", classes=2, per_class=8)
    for path in (root / "val").rglob("*.*"):
        path.unlink()
    for folder in sorted((root / "val").iterdir()):
        folder.rmdir()
    (root / "val").rmdir()
    assert "no val/ folder" in _error(root) and "--val-split" in _error(root)
    folder = data.discover(root, val_split=0.5)
    assert len(folder.splits["train"]) == len(folder.splits["val"]) == 6


def test_bad_folders_get_a_clear_message(tmp_path: Path, split_root: Path) -> None:
    assert "does not exist" in _error(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    assert "is not a folder" in _error(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    assert "has no class folders" in _error(tmp_path / "empty")
    one = make_shapes(tmp_path / "one", classes=2, per_class=4, layout="flat")
    for path in (one / "square").iterdir():
        path.unlink()
    (one / "square").rmdir()
    assert "only one class ('circle')" in _error(one)
    (one / "square").mkdir()
    assert "'square' hold no images" in _error(one)
    assert "not a fraction" in _error(split_root.parent, val_split=1.5)
    assert "already has a val/ folder" in _error(split_root, val_split=0.2)


def test_train_and_val_class_mismatch_is_refused(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "d", classes=3, per_class=8)
    extra = root / "val" / "zebra"
    extra.mkdir()
    (extra / "a.png").write_bytes((root / "val" / "circle").iterdir().__next__().read_bytes())
    message = _error(root)
    assert "differ from train/" in message and "'zebra'" in message
    extra.joinpath("a.png").unlink()
    extra.rmdir()
    for path in (root / "val" / "square").iterdir():
        path.unlink()
    (root / "val" / "square").rmdir()
    assert "lacks 'square'" in _error(root)


# pipelines -----------------------------------------------------------------------------------


def _epoch(dataset: object) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)  # type: ignore[attr-defined]
    return np.concatenate(xs), np.concatenate(ys)


AUGMENT = data.Augment(randaugment_layers=1, erasing=0.5)


def test_train_batches_have_the_shape_dtype_and_range(split_root: Path) -> None:
    samples = data.discover(split_root).splits["train"]
    ds = data.train_dataset(samples, **PIPELINE, batch=8, augment=AUGMENT, seed=0)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert len(batches) == 36 // 8  # the incomplete last batch is dropped
    x, y = batches[0]
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert set(np.concatenate([b[1] for b in batches])) <= {0, 1, 2, 3}
    # normalised pixels lie in [(0 - mean) / std, (1 - mean) / std]; erasing adds N(0, 1) noise
    assert -7.0 < x.min() < -1.0 and 1.0 < x.max() < 7.0
    plain = data.train_dataset(samples, **PIPELINE, batch=8, augment=data.Augment.none(), seed=0)
    px, _ = _epoch(plain)
    low = (0 - np.array(MEAN)) / np.array(STD)
    high = (1 - np.array(MEAN)) / np.array(STD)
    assert (px >= low - 1e-5).all() and (px <= high + 1e-5).all()


def test_same_seed_same_order_and_augmentation_every_epoch(split_root: Path) -> None:
    samples = data.discover(split_root).splits["train"]
    a = data.train_dataset(samples, **PIPELINE, batch=6, augment=AUGMENT, seed=5)
    b = data.train_dataset(samples, **PIPELINE, batch=6, augment=AUGMENT, seed=5)
    first = [_epoch(a) for _ in range(2)]
    second = [_epoch(b) for _ in range(2)]
    for (xa, ya), (xb, yb) in zip(first, second, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(first[0][0], first[1][0])  # reshuffled and re-augmented
    assert sorted(first[0][1]) == sorted(first[1][1])  # the same images, another order
    other = data.train_dataset(samples, **PIPELINE, batch=6, augment=AUGMENT, seed=6)
    assert not np.array_equal(_epoch(other)[1], first[0][1])
    # a resumed run starts at the epoch it stopped at, with that epoch's order and crops
    resumed = data.train_dataset(
        samples, **PIPELINE, batch=6, augment=AUGMENT, seed=5, start_epoch=1
    )
    xr, yr = _epoch(resumed)
    np.testing.assert_array_equal(yr, first[1][1])
    np.testing.assert_array_equal(xr, first[1][0])


def test_streaming_without_cache_is_deterministic_too(split_root: Path) -> None:
    samples = data.discover(split_root).splits["train"]
    runs = [
        _epoch(
            data.train_dataset(samples, **PIPELINE, batch=6, augment=AUGMENT, seed=1, cache=False)
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])


def test_eval_batches_keep_the_sample_order(split_root: Path) -> None:
    from ghostspec.data import images

    samples = data.discover(split_root).splits["val"]
    ds = data.eval_dataset(samples, **PIPELINE, crop_pct=0.875, batch=5)
    sizes = [int(y.shape[0]) for _, y in ds]
    assert sizes == [5, 5, 2]  # the last batch is kept
    x, y = _epoch(ds)
    np.testing.assert_array_equal(y, [s.label for s in samples])
    one = images.load_eval_image(samples[3].path, size=(32, 32), channels=3, mean=MEAN, std=STD)
    np.testing.assert_array_equal(x[3], one)


def _with_bad_files(root: Path) -> list[Path]:
    folder = root / "train" / "circle"
    good = next(folder.glob("*.png")).read_bytes()
    bad = [folder / "pipe.jpg", folder / "x.jpg", folder / "cut.png", folder / "noise.jpg"]
    os.mkfifo(bad[0])
    bad[1].mkdir()
    bad[2].write_bytes(good[: len(good) // 2])
    bad[3].write_bytes(np.random.default_rng(0).bytes(500))
    (folder / "zero.jpg").symlink_to("/dev/zero")
    Image.new("RGB", (400_000, 1)).save(folder / "banner.png")  # refused from its header
    return [*bad, folder / "zero.jpg", folder / "banner.png"]


def _damaged_inside(folder: Path) -> Path:
    """A PNG whose header and end are fine but whose pixel data is not: only decoding tells."""
    content = bytearray(next(folder.glob("*.png")).read_bytes())
    middle = len(content) // 2
    content[middle : middle + 40] = bytes(40)
    path = folder / "inside.png"
    path.write_bytes(bytes(content))
    return path


def test_unreadable_images_are_reported_by_path_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_shapes(tmp_path / "d", classes=2, per_class=12)
    bad = _with_bad_files(root)
    inside = _damaged_inside(root / "train" / "square")
    samples = data.discover(root).splits["train"]
    assert len(samples) == 18 + len(bad) + 1
    with caplog.at_level(logging.WARNING, logger="ghostspec.data.pipeline"):
        ds = data.train_dataset(samples, **PIPELINE, batch=6, augment=AUGMENT, seed=0)
    report = caplog.text
    assert f"skipping {len(bad)} unreadable images" in report  # found from the files' headers
    assert "skipping 1 unreadable image" in report and "cannot be decoded" in report
    for path in [*bad, inside]:
        assert str(path) in report
    assert "function_node" not in report
    assert int(ds.cardinality()) == 18 // 6  # known up front: the damaged ones are out
    _, labels = _epoch(ds)  # a whole epoch of the 18 good images, no crash
    assert len(labels) == 18
    with pytest.raises(SpecError) as err:
        data.eval_dataset(samples, **PIPELINE, batch=4, strict=True)
    assert sorted(d.file for d in err.value.diagnostics) == sorted(map(str, bad))
    good = [s for s in samples if s.path not in bad]
    with pytest.raises(SpecError, match="cannot be decoded") as err:
        data.eval_dataset(good, **PIPELINE, batch=4, strict=True)
    assert [d.file for d in err.value.diagnostics] == [str(inside)]


def test_streaming_keeps_the_epoch_length_when_an_image_fails_to_decode(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "d", classes=2, per_class=12)
    _damaged_inside(root / "train" / "square")
    samples = data.discover(root).splits["train"]
    assert len(samples) == 19
    ds = data.train_dataset(samples, **PIPELINE, batch=19, augment=AUGMENT, seed=0, cache=False)
    assert int(ds.cardinality()) == 1
    _, labels = _epoch(ds)
    assert len(labels) == 19  # one of the 19 cannot be decoded: an image of the next pass stands in


def test_too_few_images_for_a_batch(split_root: Path) -> None:
    samples = data.discover(split_root).splits["val"]
    with pytest.raises(SpecError, match="fewer than one batch of 64"):
        data.train_dataset(samples, **PIPELINE, batch=64, augment=AUGMENT, seed=0)


def test_grayscale_models_get_one_channel(split_root: Path) -> None:
    samples = data.discover(split_root).splits["val"]
    ds = data.eval_dataset(samples, size=(24, 28), channels=1, mean=(0.5,), std=(0.5,), batch=4)
    x, _ = next(iter(ds))
    assert (
        x.shape == (4, 24, 28, 1)
        and -1.0 <= float(x.numpy().min()) <= float(x.numpy().max()) <= 1.0
    )
