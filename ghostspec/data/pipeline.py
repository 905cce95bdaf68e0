"""Image folders -> tf.data pipelines for training and evaluation.

Layouts (class names are the sub-folder names, sorted; the label is the index in that order):
- `DIR/train/<class>/*` and `DIR/val/<class>/*`, optionally `DIR/test/<class>/*`;
- `DIR/<class>/*`, split per class into train and val by a seeded `val_split` fraction.

Every image is checked up front (`ghostspec.data.images`: regular file, size, header, pixel count,
truncation); unusable ones are reported by path and skipped (SpecError with `strict`), so a bad
file never stops an epoch half-way. TensorFlow is imported only when a dataset is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from ghostspec.data.images import DEFAULT_CROP_PCT, IMAGE_SUFFIXES, ImageInfo, check_files
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.needs import require_tensorflow

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("ghostspec.data.pipeline")

DEFAULT_VAL_SPLIT = 0.2  # for a plain DIR/<class>/* folder when no fraction is given
CACHE_FRACTION = 0.5  # cache decoded images when they take at most this share of free memory
SHOWN_PROBLEMS = 20  # unreadable files listed one by one; the rest are counted


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class ImageFolder:
    """A discovered dataset: sorted class names and the samples of each split."""

    root: Path
    classes: tuple[str, ...]
    splits: Mapping[str, tuple[Sample, ...]] = field(default_factory=lambda: MappingProxyType({}))
    layout: str = "split"  # "split" (train/ and val/ folders) or "flat" (split by val_split)


@dataclass(frozen=True)
class Augment:
    """Training augmentation; the defaults are timm's ImageNet ones (the recipe's defaults)."""

    crop_scale: tuple[float, float] | None = (0.08, 1.0)
    crop_ratio: tuple[float, float] | None = (0.75, 4 / 3)
    flip: bool = True
    randaugment_magnitude: float = 9.0
    randaugment_std: float = 0.5
    randaugment_layers: int | None = 2
    erasing: float = 0.0

    @classmethod
    def none(cls) -> Augment:
        """No augmentation: the evaluation resize and centre crop (crop_pct 1), nothing else."""
        return cls(None, None, False, 0.0, 0.0, None, 0.0)


# discovery -----------------------------------------------------------------------------------


def _problem(path: Path | str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(path), message=message, hint=hint)])


def _class_folders(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise _problem(folder, f"cannot list the folder: {err.strerror}") from None
    return [p for p in entries if p.is_dir() and not p.name.startswith(".")]


def _images_in(folder: Path) -> list[Path]:
    """Files (or anything else) in a class folder whose name says image; the checks later tell
    a FIFO or a folder called x.jpg from a picture."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        raise _problem(folder, f"cannot list the folder: {err.strerror}") from None
    return [
        folder / n
        for n in names
        if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES
    ]


def _read_split(folder: Path) -> dict[str, list[Path]]:
    return {c.name: _images_in(c) for c in _class_folders(folder)}


def _check_classes(root: Path, split: str, found: dict[str, list[Path]]) -> None:
    where = root / split if split else root
    layout = f"{where}/<class>/<images>"
    if not found:
        raise _problem(
            where,
            "has no class folders",
            f"put the images in one sub-folder per class: {layout}",
        )
    if len(found) < 2:
        raise _problem(
            where,
            f"has only one class ({next(iter(found))!r}); a classifier needs at least two",
            f"add a sub-folder per class: {layout}",
        )
    empty = [name for name, files in found.items() if not files]
    if empty:
        listed = ", ".join(repr(n) for n in empty[:10])
        raise _problem(
            where,
            f"class folder(s) {listed} hold no images ({', '.join(IMAGE_SUFFIXES)})",
            "add images or remove the empty folders",
        )


def _same_classes(root: Path, split: str, train: list[str], other: list[str]) -> None:
    if train == other:
        return
    missing = sorted(set(train) - set(other))
    extra = sorted(set(other) - set(train))
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(map(repr, missing[:10]))}")
    if extra:
        parts.append(f"has {', '.join(map(repr, extra[:10]))} that train/ does not")
    raise _problem(
        root / split,
        f"the class folders differ from train/: {split}/ {'; '.join(parts)}",
        "give train/ and every other split the same class folders",
    )


def _stratified(
    found: dict[str, list[Path]], classes: list[str], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    train: list[Sample] = []
    val: list[Sample] = []
    for label, name in enumerate(classes):
        files = found[name]
        # one generator per class, so one class's files do not move another's split
        order = np.random.default_rng([seed, label]).permutation(len(files))
        n_val = round(len(files) * fraction)
        n_val = min(max(n_val, 1), len(files) - 1) if len(files) >= 2 else 0
        chosen = {int(i) for i in order[:n_val]}
        for i, path in enumerate(files):
            (val if i in chosen else train).append(Sample(path, label))
    return train, val


def discover(root: str | Path, *, val_split: float | None = None, seed: int = 0) -> ImageFolder:
    """Find the classes and the samples of each split; SpecError for an unusable folder."""
    root = Path(root)
    if not root.exists():
        raise _problem(root, "the data folder does not exist", "check the --data path")
    if not root.is_dir():
        raise _problem(root, "is not a folder", "pass the folder that holds the images")
    if val_split is not None and not 0.0 < val_split < 1.0:
        raise _problem(
            "--val-split", f"{val_split} is not a fraction between 0 and 1", "for example 0.2"
        )
    train_dir, val_dir, test_dir = root / "train", root / "val", root / "test"
    if train_dir.is_dir():
        train = _read_split(train_dir)
        _check_classes(root, "train", train)
        classes = sorted(train)
        splits: dict[str, tuple[Sample, ...]] = {}
        if val_dir.is_dir():
            if val_split is not None:
                raise _problem(
                    "--val-split",
                    f"{root} already has a val/ folder, so there is nothing to split",
                    "drop --val-split, or remove val/ to split train/ instead",
                )
            val = _read_split(val_dir)
            _same_classes(root, "val", classes, sorted(val))
            splits["train"] = _labelled(train, classes)
            splits["val"] = _labelled(val, classes)
        elif val_split is not None:
            tr, va = _stratified(train, classes, val_split, seed)
            splits["train"], splits["val"] = tuple(tr), tuple(va)
        else:
            raise _problem(
                root,
                "has train/ but no val/ folder",
                "add DIR/val/<class>/ images, or pass --val-split 0.2 to hold out part of train/",
            )
        if test_dir.is_dir():
            test = _read_split(test_dir)
            _same_classes(root, "test", classes, sorted(test))
            splits["test"] = _labelled(test, classes)
        return ImageFolder(root, tuple(classes), MappingProxyType(splits), "split")
    if val_dir.is_dir():
        raise _problem(root, "has val/ but no train/ folder", "add DIR/train/<class>/ images")
    found = _read_split(root)
    _check_classes(root, "", found)
    classes = sorted(found)
    fraction = DEFAULT_VAL_SPLIT if val_split is None else val_split
    tr, va = _stratified(found, classes, fraction, seed)
    splits = {"train": tuple(tr), "val": tuple(va)}
    return ImageFolder(root, tuple(classes), MappingProxyType(splits), "flat")


def _labelled(found: dict[str, list[Path]], classes: list[str]) -> tuple[Sample, ...]:
    return tuple(
        Sample(path, label) for label, name in enumerate(classes) for path in found.get(name, [])
    )


# checking the files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """The samples that passed the checks, their header information, and the rest as warnings."""

    samples: tuple[Sample, ...]
    infos: tuple[ImageInfo, ...]
    problems: tuple[Diagnostic, ...]


def check_samples(samples: Sequence[Sample], *, strict: bool = False) -> Checked:
    """Probe every file; with `strict`, SpecError listing every unusable one; else log them."""
    infos, problems = check_files([s.path for s in samples])
    if problems and strict:
        errors = [Diagnostic(file=d.file, message=d.message, hint=d.hint) for d in problems]
        raise SpecError(errors)
    if problems:
        report_problems(problems)
    kept = [(s, i) for s, i in zip(samples, infos, strict=True) if i is not None]
    if not kept:
        raise _problem(
            samples[0].path.parent.parent if samples else "--data",
            f"none of the {len(samples)} images can be read",
            "see the messages above",
        )
    return Checked(tuple(s for s, _ in kept), tuple(i for _, i in kept), tuple(problems))


def report_problems(problems: Sequence[Diagnostic]) -> None:
    """One warning: every unreadable file by path (the first SHOWN_PROBLEMS), then a count."""
    lines = [d.render() for d in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"... and {len(problems) - SHOWN_PROBLEMS} more")
    noun = "image" if len(problems) == 1 else "images"
    log.warning(
        "skipping %d unreadable %s (pass strict / --strict-data to stop instead):\n%s",
        len(problems),
        noun,
        "\n".join(lines),
    )


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else the physical size)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def fits_in_memory(nbytes: int) -> bool:
    return nbytes <= CACHE_FRACTION * available_memory()


# pipelines -----------------------------------------------------------------------------------


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _options() -> tf.data.Options:
    """One thread per op inside the pipeline: its ops are small, and many threads each would
    compete with the training step for the same cores."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return options


def _paths_and_labels(checked: Checked) -> tuple[tuple[list[bytes], np.ndarray], np.ndarray]:
    """((file names, decode-with-Pillow flags), labels) of the checked samples."""
    # file names as the OS's bytes: a name that is not valid UTF-8 still opens
    paths = [os.fsencode(s.path) for s in checked.samples]
    pillow = np.array([info.pillow for info in checked.infos], bool)
    return (paths, pillow), np.array([s.label for s in checked.samples], np.int32)


def _decoder(channels: int, then: Callable[[tf.Tensor], tf.Tensor] | None = None) -> Callable:
    """(file name, Pillow flag) -> the decoded image, then `then` of it."""
    import tensorflow as tf

    from ghostspec.data.images import decode

    def run(file: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        path, pillow = file
        image = decode(tf.io.read_file(path), channels, pillow)
        return image if then is None else then(image)

    return run


def _streamed(checked: Checked, channels: int, then: Callable | None = None) -> tf.data.Dataset:
    """(image, int32 label) per sample, decoded in parallel, in sample order. The up-front
    checks find truncated and damaged headers; ignore_errors is the last guard, so that data
    damaged in the middle never stops an epoch (TensorFlow's log says what it dropped)."""
    import tensorflow as tf

    decode = _decoder(channels, then)
    ds = tf.data.Dataset.from_tensor_slices(_paths_and_labels(checked))
    ds = ds.map(
        lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.ignore_errors()


def _cached(
    checked: Checked, channels: int, then: Callable | None = None, *, strict: bool = False
) -> tuple[tf.data.Dataset, int]:
    """Every image decoded once, now, in parallel, into a memory cache: (image, label) in
    sample order and how many there are. An image TensorFlow cannot decode although its header
    passed the checks is reported by path (SpecError with `strict`), so the count is exact."""
    import tensorflow as tf

    decode = _decoder(channels, then)
    files, labels = _paths_and_labels(checked)
    index = np.arange(len(labels), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((index, files, labels))
    ds = ds.map(
        lambda i, p, y: (i, decode(p), y),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors().cache()
    decoded = {int(i) for i in ds.map(lambda i, x, y: i).as_numpy_iterator()}  # fills the cache
    failed = [i for i in range(len(labels)) if i not in decoded]
    if failed:
        problems = [
            Diagnostic(
                file=str(checked.samples[i].path),
                message=f"cannot be decoded: the {checked.infos[i].kind} image data is damaged "
                "or of a kind the decoder does not read (its header is fine)",
                hint="replace or remove the file (or convert it to an 8-bit RGB PNG or JPEG)",
                severity="error" if strict else "warning",
            )
            for i in failed
        ]
        if strict:
            raise SpecError(problems)
        report_problems(problems)
    if not decoded:
        raise _problem("--data", f"none of the {len(labels)} images can be decoded")
    count = len(decoded)
    ds = ds.map(lambda i, x, y: (x, y)).apply(tf.data.experimental.assert_cardinality(count))
    return ds, count


def train_dataset(
    samples: Sequence[Sample] | Checked,
    *,
    size: int | Sequence[int],
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch: int,
    augment: Augment,
    seed: int,
    strict: bool = False,
    cache: bool | None = None,
    start_epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 [B, H, W, C] normalised, int32 [B]) for training.

    Shuffled every epoch (the order of epoch k depends only on `seed` and k), augmented with
    per-image stateless randomness (so the parallel map is deterministic too), the last
    incomplete batch dropped. Decoded images are cached in memory when they fit (`cache=None`
    decides from the images' header sizes). `samples` may be the result of `check_samples`
    (checked once, up front, by the caller); otherwise they are checked here. `start_epoch`
    makes the first pass over the dataset epoch `start_epoch`'s order and augmentation (resume).
    """
    require_tensorflow("the tf.data input pipeline")
    import tensorflow as tf

    from ghostspec.data import augment as aug
    from ghostspec.data.images import normalise, resize_crop

    height, width = _size(size)
    if batch < 1:
        raise _problem("--batch-size", f"{batch} is not a positive batch size")
    checked = samples if isinstance(samples, Checked) else check_samples(samples, strict=strict)
    n = len(checked.samples)
    if n < batch:
        raise _problem(
            "--batch-size",
            f"the training split has {n} usable images, fewer than one batch of {batch}",
            f"use a batch size of at most {n}",
        )
    decoded_bytes = sum(i.pixels * channels for i in checked.infos)
    use_cache = fits_in_memory(decoded_bytes) if cache is None else cache

    if use_cache:
        ds, n = _cached(checked, channels, strict=strict)
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    else:  # shuffle the (small) file names, not decoded images
        ds = tf.data.Dataset.from_tensor_slices(_paths_and_labels(checked))
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        decode = _decoder(channels)
        ds = ds.map(lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE)
        # exactly n images an epoch even if one fails to decode: a later image stands in
        ds = ds.ignore_errors().repeat().take(n)
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    if n < batch:
        raise _problem(
            "--batch-size",
            f"the training split has {n} usable images, fewer than one batch of {batch}",
            f"use a batch size of at most {n}",
        )
    # per-image seeds for the crop and flip, per-batch seeds for RandAugment and erasing
    image_seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
    batch_seeds = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True).batch(2)
    for _ in range(start_epoch):
        # each new iterator draws the next epoch's shuffle and random seeds; making and
        # dropping one (nothing is read) moves them to the epoch a resumed run continues with
        for source in (ds, image_seeds, batch_seeds):
            iter(source)
    fill = tuple(min(255.0, round(255.0 * m)) for m in mean)
    crop = (
        None
        if augment.crop_scale is None or augment.crop_ratio is None
        else (augment.crop_scale, augment.crop_ratio)
    )

    def per_image(pair: tuple[tf.Tensor, tf.Tensor], key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = pair
        parts = tf.random.experimental.stateless_split(key, 2)
        if crop is not None:
            scale, ratio = crop
            x = aug.random_resized_crop(image, parts[0], (height, width), scale, ratio)
        else:
            x = tf.round(resize_crop(image, (height, width), 1.0) * 255.0)
        x = tf.ensure_shape(x, (height, width, channels))
        if augment.flip:
            x = aug.flip(x, parts[1])
        return x, label

    def per_batch(pair: tuple[tf.Tensor, tf.Tensor], key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, labels = pair
        parts = tf.random.experimental.stateless_split(key, 2)
        if augment.randaugment_layers:
            x = aug.rand_augment(
                x,
                parts[0],
                layers=augment.randaugment_layers,
                magnitude=augment.randaugment_magnitude,
                std=augment.randaugment_std,
                fill=fill,
            )
        x = normalise(x / 255.0, mean, std)
        if augment.erasing > 0:
            x = aug.random_erasing(x, parts[1], augment.erasing)
        return tf.ensure_shape(x, (batch, height, width, channels)), labels

    # plain Python control flow on static values only: no autograph (it costs seconds)
    plain = tf.autograph.experimental.do_not_convert
    ds = tf.data.Dataset.zip(ds, image_seeds).map(
        plain(per_image), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    ds = ds.batch(batch, drop_remainder=True)
    # RandAugment and erasing run on whole batches: each op once per batch, not per image
    ds = tf.data.Dataset.zip(ds, batch_seeds).map(
        plain(per_batch), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(
    samples: Sequence[Sample] | Checked,
    *,
    size: int | Sequence[int],
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = DEFAULT_CROP_PCT,
    batch: int,
    strict: bool = False,
    cache: bool | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 [B, H, W, C], int32 [B]) in sample order with the evaluation
    preprocessing (`ghostspec.data.images.eval_preprocess`); the last batch may be smaller."""
    require_tensorflow("the tf.data input pipeline")
    import tensorflow as tf

    from ghostspec.data.images import eval_preprocess

    height, width = _size(size)
    if batch < 1:
        raise _problem("--batch-size", f"{batch} is not a positive batch size")
    if not 0.0 < crop_pct <= 1.0:
        raise _problem("crop_pct", f"{crop_pct} is not in (0, 1]", "0.875 is the usual value")
    checked = samples if isinstance(samples, Checked) else check_samples(samples, strict=strict)

    def preprocess(image: tf.Tensor) -> tf.Tensor:
        return eval_preprocess(image, (height, width), crop_pct, mean, std)

    nbytes = len(checked.samples) * height * width * channels * 4
    if fits_in_memory(nbytes) if cache is None else cache:
        ds, _ = _cached(checked, channels, preprocess, strict=strict)
    else:
        ds = _streamed(checked, channels, preprocess)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
