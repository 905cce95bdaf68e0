"""Knowledge distillation, GhostNetV3's training strategy, as a Keras training model.

The loss on a batch of N images with labels y, student logits s and teacher logits t is

    loss = CE_ls(y, s) + weight * T^2 * mean_n KL(softmax(t_n / T) || softmax(s_n / T))

CE_ls is the label-smoothed cross-entropy of the recipe. With T = 1 the distillation term is the
GhostNetV3 authors' `kd_loss` (the mean over the batch of -sum_c p_t log p_s, with
p = softmax of the logits) minus the teacher's entropy, a constant for the student: the same
gradients, with a value that is 0 when the student matches the teacher. T^2 keeps the gradient
scale independent of T (Hinton et al., 2015). The teacher runs in inference mode, its weights are
frozen, its input is resized when its size differs, and it is not part of the saved student.
"""

from __future__ import annotations

from typing import Any


def kl_divergence(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    """Per-sample KL(softmax(t / T) || softmax(s / T)), computed from log-softmax for stability."""
    from keras import ops

    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    log_p = ops.log_softmax(t, axis=-1)
    log_q = ops.log_softmax(s, axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def smoothed_cross_entropy(labels: Any, logits: Any, smoothing: float) -> Any:
    """Per-sample cross-entropy with the targets (1 - e) one-hot + e / classes (timm's and
    Keras' label smoothing), from logits."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    classes = ops.shape(logits)[-1]
    target = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), classes)
    target = target * (1.0 - smoothing) + smoothing / ops.cast(classes, "float32")
    return -ops.sum(target * ops.log_softmax(logits, axis=-1), axis=-1)


def distillation_loss(
    labels: Any,
    student_logits: Any,
    teacher_logits: Any,
    *,
    weight: float,
    temperature: float,
    smoothing: float,
) -> Any:
    """Per-sample loss; the training model averages it over the global batch."""
    kd = kl_divergence(teacher_logits, student_logits, temperature)
    return smoothed_cross_entropy(labels, student_logits, smoothing) + (
        weight * temperature**2 * kd
    )


def freeze_teacher(teacher: Any) -> Any:
    """The teacher learns nothing and keeps its BatchNorm statistics."""
    teacher.trainable = False
    for layer in teacher.layers:
        layer.trainable = False
    return teacher


def teacher_input(images: Any, size: tuple[int, int] | None) -> Any:
    """The student's batch resized for a teacher trained at another size (bilinear, as the
    authors' `transforms.Resize`)."""
    if size is None:
        return images
    from keras import ops

    shape = ops.shape(images)
    if images.shape[1] == size[0] and images.shape[2] == size[1]:
        return images
    del shape
    return ops.image.resize(images, size, interpolation="bilinear")


def training_model(
    student: Any,
    *,
    smoothing: float,
    teacher: Any = None,
    weight: float = 1.0,
    temperature: float = 1.0,
    teacher_size: tuple[int, int] | None = None,
    multi_worker: bool = False,
) -> Any:
    """The model `fit` trains: the student's outputs, the recipe's loss, and with a teacher the
    distillation term. Its variables are the student's; save the student, never this."""
    import keras
    from keras import ops

    class SmoothedCrossEntropy(keras.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return smoothed_cross_entropy(y_true, y_pred, smoothing)

    class Distillation(keras.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return weight * temperature**2 * kl_divergence(y_true, y_pred, temperature)

    class TrainingModel(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{student.name}_training")
            self.student = student
            self.teacher = None if teacher is None else freeze_teacher(teacher)
            self.cross_entropy = SmoothedCrossEntropy(name="cross_entropy")
            self.distillation = Distillation(name="distillation")

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
            # Both are keras Loss objects, so Keras scales them for the replicas itself.
            loss = self.cross_entropy(y, y_pred)
            if self.teacher is not None and training:  # validation loss stays the plain one
                target = self.teacher(teacher_input(x, teacher_size), training=False)
                loss = loss + self.distillation(ops.stop_gradient(target), y_pred)
            return loss

        # Keras 3's `fit` under MultiWorkerMirroredStrategy reduces every logged value over
        # axis 0, which fails on scalars (tensorflow/tensorflow#72388): log them as [1]-vectors,
        # which that reduction turns back into the same scalars.
        def train_step(self, data: Any) -> Any:
            return self._loggable(super().train_step(data))

        def test_step(self, data: Any) -> Any:
            return self._loggable(super().test_step(data))

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
