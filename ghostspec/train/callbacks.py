"""Keras callbacks of a training run: EMA weights for validation, the live progress bar, the
stop on a non-finite loss, and the run keeper (metrics, checkpoints, best model, early stopping,
TensorBoard scalars, the one summary line per epoch).

Order matters: `EmaValidation` swaps the EMA weights in around fit's validation pass, so every
validation figure is the EMA model's; `RunKeeper` then sees the epoch's train and validation logs
and writes the run folder, the state last, so that a saved state has every file of its epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keras
import numpy as np

from ghostspec.files import atomic_path
from ghostspec.train.distill import DISTILL_METRIC
from ghostspec.train.metrics import write_curves, write_metrics
from ghostspec.train.optim import WarmupSchedule
from ghostspec.train.run import RunFolder
from ghostspec.train.state import (
    RunState,
    checkpoint_name,
    remove_stale_checkpoints,
    save_state,
)

Echo = Callable[[str], None]


# ------------------------------------------------------------------------------------ weights


def has_ema(optimizer: Any) -> bool:
    return bool(getattr(optimizer, "use_ema", False))


def ema_pairs(optimizer: Any) -> list[tuple[Any, Any]]:
    """(model variable, its moving average) for every trainable variable. Keras keeps both lists
    on the optimizer in the same order (its own SwapEMAWeights callback reads them the same way)."""
    return list(
        zip(optimizer._trainable_variables, optimizer._model_variables_moving_average, strict=True)
    )


@contextlib.contextmanager
def ema_weights(optimizer: Any) -> Iterator[None]:
    """The model holds its EMA weights inside the block; the raw ones are restored exactly
    (copied, not swapped by arithmetic, so no rounding creeps into training)."""
    if not has_ema(optimizer):
        yield
        return
    pairs = ema_pairs(optimizer)
    saved = [np.array(variable.numpy()) for variable, _ in pairs]
    for variable, average in pairs:
        variable.assign(average.numpy())
    try:
        yield
    finally:
        for (variable, _), value in zip(pairs, saved, strict=True):
            variable.assign(value)


def model_values(model: keras.Model, optimizer: Any, ema: bool) -> list[np.ndarray]:
    """Every weight of `model` in `model.weights` order; with `ema`, the trainable ones are the
    moving averages."""
    averages: dict[int, Any] = {}
    if ema and has_ema(optimizer):
        averages = {id(v): a for v, a in ema_pairs(optimizer)}
    return [np.array(averages.get(id(w), w).numpy()) for w in model.weights]


def seed_generators(model: keras.Model) -> list[Any]:
    """The random-state generators of the model's layers (dropout), in layer order, nested
    models included. Their state is not part of a weights file, so the run state carries it."""
    found: list[Any] = []
    for layer in model.layers:
        found.extend(getattr(layer, "_seed_generators", ()))
        if isinstance(layer, keras.Model):
            found.extend(seed_generators(layer))
    return found


def save_checkpoint(model: keras.Model, target: Path) -> None:
    """Model weights and optimizer variables (iterations, slots, EMA) as one .weights.h5 file,
    written atomically. Keras insists on the .weights.h5 ending, so the temporary file gets it."""
    with atomic_path(target) as temp:
        real = temp.with_name(temp.name + ".weights.h5")
        try:
            model.save_weights(real)
            os.replace(real, temp)
        finally:
            with contextlib.suppress(OSError):
                real.unlink()


# ------------------------------------------------------------------------------ non-finite loss


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite in epoch `epoch` (1-based): the training loss at `step`
    (1-based), or the validation loss after the epoch (`step` None)."""

    def __init__(self, epoch: int, step: int | None, value: float) -> None:
        super().__init__(f"non-finite loss {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises NonFiniteLoss at the first step whose loss is not finite: nothing of that epoch
    is kept (its weights are not), and the run folder keeps its last finite epoch."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(value := float(loss)):
            raise NonFiniteLoss(self._epoch + 1, batch + 1, value)


# ------------------------------------------------------------------------------- EMA validation


class EmaValidation(keras.callbacks.Callback):
    """Fit's validation pass sees the EMA weights (when the optimizer keeps them)."""

    def __init__(self, optimizer: Any) -> None:
        super().__init__()
        self._optimizer = optimizer
        self._scope: contextlib.AbstractContextManager[None] | None = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if has_ema(self._optimizer) and self._scope is None:
            self._scope = ema_weights(self._optimizer)
            self._scope.__enter__()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._scope is not None:
            scope, self._scope = self._scope, None
            scope.__exit__(None, None, None)


# ---------------------------------------------------------------------------------- timing


class EpochClock(keras.callbacks.Callback):
    """Training images per second within an epoch, leaving out its first step (which traces and
    compiles the step function in the first epoch). Put it first: the others read it."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch
        self.begin = self.first = self.last = time.perf_counter()
        self.steps = 0

    def start(self) -> None:
        self.begin = self.first = self.last = time.perf_counter()
        self.steps = 0

    def step(self) -> None:
        self.last = time.perf_counter()
        self.steps += 1
        if self.steps == 1:
            self.first = self.last

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step()

    @property
    def images_per_s(self) -> float | None:
        if self.steps > 1 and self.last > self.first:
            return (self.steps - 1) * self.batch / (self.last - self.first)
        if self.steps == 1 and self.last > self.begin:
            return self.batch / (self.last - self.begin)
        return None


def current_lr(schedule: WarmupSchedule, optimizer: Any) -> float:
    """The rate of the step just taken."""
    return schedule.value(max(int(optimizer.iterations.numpy()) - 1, 0))


# ------------------------------------------------------------------------------- progress bar


class ProgressBar(keras.callbacks.Callback):
    """One self-overwriting line per epoch on a terminal: steps, loss, accuracy, rate, images/s.
    Nothing when the stream is not a terminal (logs and CI get the summary lines only)."""

    WIDTH = 24

    def __init__(
        self,
        clock: EpochClock,
        schedule: WarmupSchedule,
        steps: int,
        epochs: int,
        stream: TextIO | None = None,
        interval: float = 0.2,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.schedule = schedule
        self.steps = steps
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.interval = interval
        self._shown = 0.0
        self._epoch = 0
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        done = self.clock.steps
        if now - self._shown < self.interval and done < self.steps:
            return
        self._shown = now
        logs = logs or {}
        filled = round(self.WIDTH * done / max(self.steps, 1))
        bar = "=" * filled + " " * (self.WIDTH - filled)
        rate = self.clock.images_per_s
        parts = [
            f"epoch {self._epoch + 1}/{self.epochs} [{bar}] {done}/{self.steps}",
            f"loss {float(logs.get('loss', math.nan)):.4f}",
            f"acc {float(logs.get('top1', math.nan)):.3f}",
            f"lr {current_lr(self.schedule, self.model.optimizer):.3g}",
        ]
        if rate is not None:
            parts.append(f"{rate:.1f} img/s")
        self.stream.write("\r" + "  ".join(parts) + "\033[K")
        self.stream.flush()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.enabled:
            self.stream.write(
                "\r" + f"epoch {self._epoch + 1}/{self.epochs}: validating" + "\033[K"
            )
            self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --------------------------------------------------------------------------------- the keeper


@dataclass(frozen=True)
class Stopping:
    """Early stopping: the monitored figure, how long to wait, what counts as better."""

    monitor: str
    patience: int
    min_delta: float

    @property
    def higher_is_better(self) -> bool:
        return self.monitor != "val_loss"

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.higher_is_better:
            return value > best + self.min_delta
        return value < best - self.min_delta


class RunKeeper(keras.callbacks.Callback):
    """After every epoch: the metrics row, best.keras when validation top-1 improves, last.keras
    every `checkpoint_every` epochs and at the end, metrics.csv, curves.png, the TensorBoard
    scalars, then the resume checkpoint and state; early stopping, and one summary line.
    The state is written last: a state on disk has every file of its epoch (the run is marked
    finished only by `finish`, after its last files)."""

    def __init__(
        self,
        *,
        folder: RunFolder,
        state: RunState,
        clock: EpochClock,
        schedule: WarmupSchedule,
        epochs: int,
        checkpoint_every: int,
        stopping: Stopping | None,
        save_best: Callable[[], None],
        save_last: Callable[[], None],
        echo: Echo,
        title: str,
        keep: int = 1,
        scalars: ScalarLogs | None = None,
        mark_first: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.keep = keep  # checkpoints kept: 2 for multi-worker runs (see write_state)
        self.scalars = scalars
        self.mark_first = dict(mark_first or {})  # columns for this session's first row only
        self.folder = folder
        self.state = state
        self.clock = clock
        self.schedule = schedule
        self.epochs = epochs
        self.checkpoint_every = checkpoint_every
        self.stopping = stopping
        self.save_best = save_best
        self.save_last = save_last
        self.echo = echo
        self.title = title
        self.last_written: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for key in ("loss", "val_loss"):  # nothing of an epoch whose weights broke is kept
            if key in logs and not math.isfinite(logs[key]):
                raise NonFiniteLoss(epoch + 1, None, logs[key])
        state = self.state
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "lr": current_lr(self.schedule, self.model.optimizer),
            **{k: logs[k] for k in ("loss", "top1", "top5", DISTILL_METRIC) if k in logs},
            **{k: logs[k] for k in ("val_loss", "val_top1", "val_top5") if k in logs},
            "seconds": time.perf_counter() - self.clock.begin,
        }
        rate = self.clock.images_per_s
        if rate is not None:
            row["images_per_s"] = rate
        row.update(self.mark_first)
        self.mark_first = {}
        state.history.append(row)
        state.epoch = epoch + 1

        top1 = logs.get("val_top1")
        best = top1 is not None and (state.best_top1 is None or top1 > state.best_top1)
        if best:
            state.best_top1, state.best_epoch = top1, epoch + 1
            self.save_best()
        if self.stopping is not None and self.stopping.monitor in logs:
            value = logs[self.stopping.monitor]
            if self.stopping.improved(value, state.best_value):
                state.best_value, state.wait = value, 0
            else:
                state.wait += 1
                if state.wait >= self.stopping.patience:
                    state.stopped_early = True
                    self.model.stop_training = True
        final = epoch + 1 >= self.epochs or state.stopped_early
        if final or (epoch + 1) % self.checkpoint_every == 0:
            self.save_last()
            self.last_written = epoch + 1
        write_metrics(self.folder.metrics, state.history)
        write_curves(self.folder.curves, state.history, self.title)
        if self.scalars is not None:
            self.scalars.write(epoch, row)
        self.write_state()
        self.echo(summary_line(row, self.epochs, best))
        if state.stopped_early:
            assert self.stopping is not None
            self.echo(
                f"early stopping: {self.stopping.monitor} has not improved for "
                f"{self.stopping.patience} epochs"
            )

    def write_state(self) -> None:
        """The checkpoint first, then the state naming it, then older checkpoints go: a crash
        anywhere leaves a state and the checkpoint it names. Multi-worker runs keep the previous
        epoch's checkpoint and state too, for a worker that died while saving this one."""
        state = self.state
        name = checkpoint_name(state.epoch)
        save_checkpoint(self.model, self.folder.state_dir / name)
        state.checkpoint = name
        state.seed_states = [
            [int(v) for v in np.asarray(g.state.numpy()).ravel()]
            for g in seed_generators(self.model)
        ]
        save_state(self.folder.state_dir, state, snapshot=self.keep > 1)
        remove_stale_checkpoints(
            self.folder.state_dir, keep=range(max(0, state.epoch - self.keep + 1), state.epoch + 1)
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.scalars is not None:
            self.scalars.close()


def summary_line(row: dict[str, float], epochs: int, best: bool) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    if "loss" in row:
        parts.append(f"loss {row['loss']:.4f}  top1 {row['top1']:.3f}")
    if "val_loss" in row:
        parts.append(f"val_loss {row['val_loss']:.4f}  val_top1 {row['val_top1']:.3f}")
        parts.append(f"val_top5 {row['val_top5']:.3f}")
    parts.append(f"lr {row['lr']:.3g}")
    if "images_per_s" in row:
        parts.append(f"{row['images_per_s']:.1f} img/s")
    parts.append(f"{row['seconds']:.0f} s")
    return "  ".join(parts) + ("  (best)" if best else "")


# --------------------------------------------------------------------------------- TensorBoard


class ScalarLogs:
    """TensorBoard scalars per epoch in `logs/train` and `logs/validation` (Keras' layout and
    names: epoch_loss, epoch_top1, ...; plus epoch_learning_rate and epoch_images_per_s).

    Written with TensorFlow's own `tf.summary.write` and the scalars plugin's metadata, so event
    files are made without the tensorboard package (Keras' TensorBoard callback needs it only
    to fill in that metadata). RunKeeper writes each epoch's row here before the state.
    """

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self._writers: dict[str, Any] = {}

    def _writer(self, split: str) -> Any:
        import tensorflow as tf

        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(str(self.folder.logs / split))
        return self._writers[split]

    def write(self, epoch: int, row: dict[str, float]) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        scalars = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        with tf.device("/cpu:0"):
            for split, prefix in (("train", ""), ("validation", "val_")):
                with self._writer(split).as_default():
                    for key in ("loss", "top1", "top5"):
                        if prefix + key in row:
                            value = tf.constant(row[prefix + key], tf.float32)
                            tf.summary.write(f"epoch_{key}", value, epoch, metadata=scalars)
                    if split == "train":
                        for key in ("lr", "images_per_s"):
                            if key in row:
                                name = "learning_rate" if key == "lr" else key
                                value = tf.constant(row[key], tf.float32)
                                tf.summary.write(f"epoch_{name}", value, epoch, metadata=scalars)
                self._writer(split).flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
