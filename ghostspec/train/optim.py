"""The recipe's optimizer and learning-rate schedule as Keras objects.

What each recipe field means here, exactly:

- The peak rate is `Recipe.scaled_lr` = lr * batch_size / reference_batch (linear scaling rule,
  with the GLOBAL batch size).
- The schedule is evaluated at every step `t` (the optimizer's iteration count). With W warm-up
  steps the rate rises linearly from warmup_lr at t = 0 towards the peak (reached at t = W); after
  that the decay counts from the end of the warm-up, u = t - W: constant keeps the peak, step
  multiplies it by decay_rate every decay_epochs (floor(u / (decay_epochs * steps per epoch))),
  cosine falls from the peak at u = 0 to min_lr at the last step.
- weight_decay: for sgd and rmsprop it is the L2 term added to the gradient, g + wd * w, before
  momentum and the RMS normalisation (what PyTorch's SGD, timm's RMSpropTF and the published
  recipes mean by it). Keras' own `weight_decay` is decoupled (w -= lr * wd * w) for every
  optimizer, so these two optimizers add the term themselves. adamw is Keras' AdamW, whose
  decoupled decay w -= lr * wd * w equals PyTorch's AdamW.
- decay_norm_and_bias false: BatchNorm gammas and betas and every bias are left out of the decay
  (the variables themselves are listed, not matched by name).
- rmsprop is TensorFlow 1's RMSProp, as timm's RMSpropTF reproduces it: v = rho * v + (1 - rho)
  * g^2, m = momentum * m + lr * g / sqrt(v + epsilon), w -= m. Keras 3's RMSprop already puts
  epsilon inside the square root and the rate inside the momentum buffer; what differs is the
  start: TensorFlow 1 initialises v to ones, Keras to zeros, which makes Keras' first steps about
  1 / sqrt(1 - rho) (3.2x at rho 0.9) larger. `TFRMSprop` starts v at one.
- EMA: Keras' optimizer EMA (`use_ema`, `ema_momentum` = decay) over the trainable weights,
  updated after every step: ema = decay * ema + (1 - decay) * w, ema = w at the first step.
  BatchNorm running statistics are not averaged: the EMA model is evaluated with the current
  statistics.

The schedule and the two optimizers are registered Keras serializables, so a `last.keras` file
with its optimizer loads wherever this module has been imported.

Every backend: the update rules are Keras' own `keras.ops` code (SGD's and RMSprop's
`update_step`, with the L2 term added in `keras.ops` here), so TensorFlow, JAX and PyTorch compute
the same steps. On PyTorch Keras swaps its stock optimizers for `torch._foreach` versions with
the same rules (AdamW among them); L2SGD and TFRMSprop, being subclasses, keep the per-variable
`update_step` above. tests/test_train_backends.py checks one step of each against NumPy on the
backend it runs under.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

if TYPE_CHECKING:
    from ghostspec.language.recipe import Recipe

PACKAGE = "ghostspec"


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then constant, step or cosine decay, per step (see the module docstring)."""

    def __init__(
        self,
        kind: str,
        peak: float,
        total_steps: int,
        steps_per_epoch: int,
        warmup_steps: int = 0,
        warmup_lr: float = 0.0,
        decay_rate: float = 1.0,
        decay_epochs: float = 1.0,
        min_lr: float = 0.0,
    ) -> None:
        if kind not in ("constant", "step", "cosine"):
            raise ValueError(f"unknown schedule kind {kind!r}")
        self.kind = kind
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = float(warmup_lr)
        self.decay_rate = float(decay_rate)
        self.decay_epochs = float(decay_epochs)
        self.min_lr = float(min_lr)

    def __call__(self, step: Any) -> Any:
        t = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        u = ops.maximum(t - float(self.warmup_steps), 0.0)
        if self.kind == "constant":
            decayed = ops.convert_to_tensor(self.peak, "float32") + 0.0 * u
        elif self.kind == "step":
            interval = self.decay_epochs * self.steps_per_epoch
            decayed = self.peak * ops.power(self.decay_rate, ops.floor(u / interval))
        else:
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = ops.minimum(u / span, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
            decayed = self.min_lr + (self.peak - self.min_lr) * cosine
        if self.warmup_steps == 0:
            return decayed
        rising = self.warmup_lr + (self.peak - self.warmup_lr) * t / warm
        return ops.where(t < float(self.warmup_steps), rising, decayed)

    def value(self, step: int) -> float:
        """The rate at `step` as a Python float (for logs and tests)."""
        return float(ops.convert_to_numpy(self(step)))

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "peak": self.peak,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_steps": self.warmup_steps,
            "warmup_lr": self.warmup_lr,
            "decay_rate": self.decay_rate,
            "decay_epochs": self.decay_epochs,
            "min_lr": self.min_lr,
        }


class _CoupledL2:
    """L2 weight decay added to the gradient (g + wd * w) instead of Keras' decoupled decay.

    `update_step` runs once per variable after the gradients are aggregated across replicas, so
    the term is added once whatever the distribution strategy. Variables excluded with
    `exclude_from_weight_decay` get none, as in Keras.
    """

    weight_decay: float | None

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.weight_decay and self._use_weight_decay(variable):  # type: ignore[attr-defined]
            decay = ops.cast(self.weight_decay, variable.dtype)
            gradient = ops.add(ops.cast(gradient, variable.dtype), ops.multiply(decay, variable))
        super().update_step(gradient, variable, learning_rate)  # type: ignore[misc]

    def _apply_weight_decay(self, variables: Any) -> None:
        """Keras' decoupled decay is replaced by the L2 term above."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2SGD(_CoupledL2, keras.optimizers.SGD):
    """Keras' SGD (momentum, Nesterov) with PyTorch's coupled weight decay."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class TFRMSprop(_CoupledL2, keras.optimizers.RMSprop):
    """TensorFlow 1 / timm RMSpropTF: epsilon inside the square root (as Keras 3 does), the mean
    square starting at one instead of zero, and coupled L2 weight decay."""

    def build(self, var_list: Any) -> None:
        if self.built:
            return
        super().build(var_list)
        for velocity in self._velocities:
            # ones from the shape, not ones_like(velocity): JAX cannot read a Variable there
            velocity.assign(ops.ones(velocity.shape, velocity.dtype))


def decay_exclusions(model: keras.Model) -> list[Any]:
    """The variables that get no weight decay: BatchNorm gammas and betas, and every bias."""
    excluded: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            excluded.extend(layer.trainable_weights)
        else:
            bias = getattr(layer, "bias", None)
            if bias is not None:
                excluded.append(bias)
    return excluded


def make_schedule(recipe: Recipe, steps_per_epoch: int) -> WarmupSchedule:
    sched = recipe.schedule
    return WarmupSchedule(
        kind=sched.kind,
        peak=recipe.scaled_lr,
        total_steps=recipe.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=round(sched.warmup_epochs * steps_per_epoch),
        warmup_lr=sched.warmup_lr,
        decay_rate=sched.decay_rate,
        decay_epochs=sched.decay_epochs,
        min_lr=sched.min_lr,
    )


def make_optimizer(
    recipe: Recipe, model: keras.Model, schedule: WarmupSchedule
) -> keras.optimizers.Optimizer:
    """The recipe's optimizer for `model`, built (its slots exist), weight decay exclusions set.

    Call it inside the distribution strategy's scope: the optimizer's variables are made here.
    """
    opt = recipe.optimizer
    decay = opt.weight_decay or None
    ema: dict[str, Any] = {}
    if recipe.ema is not None:
        ema = {"use_ema": True, "ema_momentum": recipe.ema.decay}
    if opt.kind == "sgd":
        optimizer: keras.optimizers.Optimizer = L2SGD(
            learning_rate=schedule,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=decay,
            **ema,
        )
    elif opt.kind == "rmsprop":
        optimizer = TFRMSprop(
            learning_rate=schedule,
            rho=opt.rho,
            momentum=opt.momentum,
            epsilon=opt.epsilon,
            weight_decay=decay,
            **ema,
        )
    else:
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule,
            weight_decay=opt.weight_decay,
            beta_1=opt.beta_1,
            beta_2=opt.beta_2,
            epsilon=opt.epsilon,
            **ema,
        )
    if not opt.decay_norm_and_bias:
        optimizer.exclude_from_weight_decay(var_list=decay_exclusions(model))
    optimizer.build(model.trainable_variables)
    return optimizer


# What a last.keras file may name besides Keras' own classes (the model loader's allow-list).
TRAINING_OBJECTS: dict[str, type] = {
    keras.saving.get_registered_name(cls): cls for cls in (WarmupSchedule, L2SGD, TFRMSprop)
}
