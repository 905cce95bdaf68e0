"""The training and validation datasets of a session, built once TensorFlow is imported.

One-hot labels, repeated epochs that continue a resumed run's data order, sharded by worker.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ghostspec.train.checks import input_error

if TYPE_CHECKING:
    import tensorflow

    from ghostspec.data.pipeline import Augment
    from ghostspec.language.recipe import Recipe
    from ghostspec.train.inputs import Setup


def augment_of(recipe: Recipe) -> Augment:
    """The data pipeline's augmentation from the recipe's `augment` section."""
    from ghostspec.data.pipeline import Augment

    a = recipe.augment
    crop, ra = a.crop, a.randaugment
    return Augment(
        crop_scale=None if crop is None else (crop.scale[0], crop.scale[1]),
        crop_ratio=None if crop is None else (crop.ratio[0], crop.ratio[1]),
        flip=a.flip,
        randaugment_magnitude=0.0 if ra is None else float(ra.magnitude),
        randaugment_std=0.0 if ra is None else float(ra.magnitude_std),
        randaugment_layers=None if ra is None else int(ra.layers),
        erasing=float(a.erasing),
    )


def make_datasets(
    setup: Setup, tf: ModuleType, start_epoch: int, shard: bool
) -> tuple[tensorflow.data.Dataset, tensorflow.data.Dataset, int]:
    """(train, val, steps per epoch) for `setup`; `shard` splits each global batch by worker."""
    from ghostspec.data.pipeline import check_samples, eval_dataset, train_dataset
    from ghostspec.data.splits import coverage_warnings, report_coverage
    from ghostspec.train.distribute import shard_by_data

    s, recipe, plan = setup, setup.recipe, setup.plan
    channels = int(plan.input_shape[2])
    common: dict[str, Any] = {
        "size": s.size,
        "channels": channels,
        "mean": plan.mean,
        "std": plan.std,
    }
    # checked once here (warnings once), so the step count is known before fit
    checked = check_samples(s.images.splits["train"], strict=s.strict_data)
    steps = len(checked.samples) // recipe.batch_size
    val_samples = s.images.splits.get("val") or ()
    if not val_samples:
        raise input_error(s.images.root, "the validation split is empty", "add images to val/")
    val_checked = check_samples(val_samples, strict=s.strict_data)
    # before training: classes it cannot learn or whose accuracy it never measures, by name
    report_coverage(
        coverage_warnings(s.images.classes, checked.samples, val_checked.samples, s.images.root)
    )
    train = train_dataset(
        checked,  # already probed: the pipeline does not read the headers again
        batch=recipe.batch_size,
        augment=augment_of(recipe),
        seed=recipe.seed,
        strict=s.strict_data,
        start_epoch=start_epoch,  # a resumed run continues the data order of its epoch
        **common,
    )
    val = eval_dataset(
        val_checked,
        crop_pct=recipe.eval.crop_pct,
        batch=recipe.batch_size,
        strict=s.strict_data,
        **common,
    )
    k = len(s.images.classes)

    def one_hot(
        x: tensorflow.Tensor, y: tensorflow.Tensor
    ) -> tuple[tensorflow.Tensor, tensorflow.Tensor]:
        return x, tf.one_hot(y, k)

    # Repeated, with fit's steps_per_epoch: Keras' fit takes one step too many per epoch on
    # a dataset of unknown length (an optimizer update on no data). Each repetition is one
    # epoch: the data order and augmentation of epoch k depend only on the seed and k.
    train = train.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE).repeat()
    val = val.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    if shard:  # each worker keeps its share of every global batch
        train, val = shard_by_data(train), shard_by_data(val)
    return train, val, steps
