"""The model `fit` trains, and knowledge distillation (GhostNetV3's training strategy).

The loss on a batch of N images with one-hot labels y, student logits s and teacher logits t is

    loss = CE_ls(y, s) + weight * T^2 * mean_n KL(softmax(t_n / T) || softmax(s_n / T))

CE_ls is the recipe's label-smoothed cross-entropy (the compiled loss, as without a teacher).
With T = 1 the distillation term is the GhostNetV3 authors' `kd_loss` (Efficient-AI-Backbones,
ghostnetv3_pytorch/train.py: the mean over the batch of -sum_c p_t log p_s, p = softmax of the
logits) minus the teacher's entropy, a constant for the student: the same gradients, with a value
that is 0 when the student matches the teacher. T^2 keeps the gradient scale independent of T
(Hinton et al., 2015). The teacher runs in inference mode with frozen weights, its input is
resized (and re-normalised) when it was trained on another size (or normalisation), and it is
held outside Keras' tracking, so it is in no checkpoint and no saved model of the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ghostspec.train.metrics import DISTILL_COLUMN as DISTILL_METRIC  # KL, unweighted, per epoch


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher and what its input needs: `size` to resize to (None: the student's),
    `scale` and `shift` to turn the student's normalised pixels into the teacher's."""

    model: Any
    size: tuple[int, int] | None
    scale: tuple[float, ...] | None = None
    shift: tuple[float, ...] | None = None
    probabilities: bool = False  # its output is softmax probabilities, not logits


def renormalisation(
    student: tuple[Sequence[float], Sequence[float]],
    teacher: tuple[Sequence[float], Sequence[float]],
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(scale, shift) with x_t = x_s * scale + shift for images normalised with the student's
    (mean, std) and a teacher trained on its own; None when they are the same."""
    (ms, ss), (mt, st) = student, teacher
    if tuple(ms) == tuple(mt) and tuple(ss) == tuple(st):
        return None
    scale = tuple(float(a / b) for a, b in zip(ss, st, strict=True))
    shift = tuple(float((a - b) / c) for a, b, c in zip(ms, mt, st, strict=True))
    return scale, shift


def kl_divergence(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    """Per-sample KL(softmax(t / T) || softmax(s / T)), from log-softmax for stability, float32."""
    from keras import ops

    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    log_p = ops.log_softmax(t, axis=-1)
    log_q = ops.log_softmax(s, axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def as_logits(outputs: Any, probabilities: bool) -> Any:
    """Logits from a model's output: log p for a softmax output (the same softmax again)."""
    if not probabilities:
        return outputs
    from keras import ops

    return ops.log(ops.maximum(ops.cast(outputs, "float32"), 1e-30))


def freeze_teacher(teacher: Any) -> Any:
    """The teacher learns nothing and keeps its BatchNorm statistics."""
    teacher.trainable = False
    for layer in teacher.layers:
        layer.trainable = False
    return teacher


def teacher_input(images: Any, teacher: Teacher) -> Any:
    """The student's batch as the teacher was trained to see it: re-normalised, then resized
    (bilinear, as the authors' `transforms.Resize`) when the sizes differ."""
    from keras import ops

    x = images
    if teacher.scale is not None and teacher.shift is not None:
        x = x * ops.convert_to_tensor(teacher.scale, x.dtype) + ops.convert_to_tensor(
            teacher.shift, x.dtype
        )
    size = teacher.size
    if size is not None and (x.shape[1], x.shape[2]) != tuple(size):
        x = ops.image.resize(x, size, interpolation="bilinear")
    return x


def training_model(
    student: Any,
    *,
    teacher: Teacher | None = None,
    weight: float = 1.0,
    temperature: float = 1.0,
    probabilities: bool = False,
    multi_worker: bool = False,
) -> Any:
    """The model `fit` trains: the student's outputs and variables, the compiled loss, plus the
    distillation term when there is a teacher. Save the student, never this model.
    `probabilities`: the student's output is softmax probabilities (the spec's head says so).

    Create it under the run's dtype policy: Keras' compile wraps the optimizer in a
    LossScaleOptimizer when this model's policy is mixed_float16."""
    import keras
    from keras import ops

    class Distillation(keras.losses.Loss):
        """weight * T^2 * KL per sample; a Loss object, so Keras averages it over the batch and
        scales it for the replicas like the compiled loss."""

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return weight * temperature**2 * kl_divergence(y_true, y_pred, temperature)

    held = None if teacher is None else (teacher,)  # a tuple: Keras does not track the teacher
    if teacher is not None:
        freeze_teacher(teacher.model)

    class TrainingModel(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{student.name}_training")
            self.student = student
            self.distillation = Distillation(name="distillation")
            # an attribute, so Keras counts it among the model's metrics (reset every epoch)
            self.kl_tracker = keras.metrics.Mean(name=DISTILL_METRIC) if held else None

        def call(self, x: Any, training: bool = False) -> Any:
            return self.student(x, training=training)

        def compute_loss(
            self,
            x: Any = None,
            y: Any = None,
            y_pred: Any = None,
            sample_weight: Any = None,
            training: bool = True,
        ) -> Any:
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            if held is None or not training:  # the validation loss stays the recipe's
                return loss
            (t,) = held
            target = t.model(teacher_input(x, t), training=False)
            target = ops.stop_gradient(as_logits(target, t.probabilities))
            logits = as_logits(y_pred, probabilities)
            assert self.kl_tracker is not None  # made whenever a teacher is held
            self.kl_tracker.update_state(kl_divergence(target, logits, temperature))
            return loss + self.distillation(target, logits)

        # Keras 3's `fit` under MultiWorkerMirroredStrategy reduces every logged value over
        # axis 0, which fails on scalars (tensorflow/tensorflow#72388): log them as [1]-vectors,
        # which that reduction turns back into the same scalars.
        def train_step(self, data: Any) -> Any:
            return self._loggable(super().train_step(data))

        def test_step(self, data: Any) -> Any:
            logs = super().test_step(data)
            logs.pop(DISTILL_METRIC, None)  # not measured in validation
            return self._loggable(logs)

        def _loggable(self, logs: dict[str, Any]) -> dict[str, Any]:
            if not multi_worker:
                return logs
            return {k: ops.reshape(v, (1,)) for k, v in logs.items()}

    return TrainingModel()


def prepare_multi_worker(model: Any, strategy: Any, batch: Any) -> None:
    """Build the training model's optimizer and metrics before `fit`: Keras 3 otherwise reduces
    the first batch over the workers to build them, which MultiWorkerMirroredStrategy cannot do
    (tensorflow/tensorflow#72388). Call once, after `compile`, inside the strategy's scope."""
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
