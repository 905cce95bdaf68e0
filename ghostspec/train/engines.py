"""Distribution, determinism and devices on the JAX and PyTorch backends.

On TensorFlow a run uses tf.distribute (`distribute.make_strategy`). On the other backends the
session asks the same questions of a `KerasEngine`, which answers them from Keras' own
distribution API, the existing engine there:

- JAX: `keras.distribution.DataParallel` over the chosen devices. The variables are replicated,
  every global batch is split over the devices, and one jit-compiled step runs over all of them,
  so BatchNorm's statistics are those of the global batch with no synchronised layer.
- PyTorch: one device (the one Keras picks: the first GPU, else the CPU). Keras' distribution
  API does not cover PyTorch, so `mirrored` and `multiworker` stop with a message.

`multiworker` is tf.distribute's (TF_CONFIG); on JAX it is refused too: JAX's multi-process
start-up (`keras.distribution.initialize`) is not wired into runs and resumes yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError


def backend() -> str:
    """The Keras backend this process runs: "tensorflow", "jax" or "torch"."""
    import keras

    return str(keras.backend.backend())


def _problem(where: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=where, message=message, hint=hint, path="strategy")])


@dataclass
class KerasEngine:
    """The part of a tf.distribute strategy a training session uses, over Keras' distribution
    API. `distribution` is None for one device."""

    distribution: Any
    num_replicas_in_sync: int
    description: str

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where the model, optimizer and metrics are made, and where fit runs."""
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()

    def experimental_distribute_dataset(self, dataset: Any) -> Any:
        """Keras' fit splits each batch over the devices itself."""
        return dataset


def gpu_count() -> int:
    """GPUs this process can use, on the current backend."""
    name = backend()
    if name == "torch":
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    if name == "jax":
        import jax

        try:
            return len(jax.devices("gpu"))
        except RuntimeError:  # no GPU platform
            return 0
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU"))


def _jax_devices(devices: Sequence[str]) -> list[str]:
    """The JAX devices the user listed (`cpu:0`, `gpu:1`), checked against this machine's."""
    import keras

    kinds = {d.split(":")[0].lower() for d in devices}
    available: list[str] = []
    for kind in sorted(kinds) or [""]:
        with contextlib.suppress(RuntimeError):  # no such platform
            available += keras.distribution.list_devices(kind or None)
    names = []
    for device in devices:
        wanted = device.lower().lstrip("/").removeprefix("device:")
        if wanted not in available:
            shown = ", ".join(keras.distribution.list_devices())
            raise _problem(
                "--devices", f"no device {device!r} on this machine", f"available: {shown}"
            )
        names.append(wanted)
    if len(set(names)) != len(names):
        raise _problem("--devices", "a device is listed twice", "list each device once")
    return names


def _data_parallel(devices: list[str]) -> KerasEngine:
    import keras

    if len(devices) == 1:
        return KerasEngine(None, 1, f"one device, {devices[0]}")
    distribution = keras.distribution.DataParallel(devices=devices)
    return KerasEngine(distribution, len(devices), f"DataParallel, {len(devices)} replicas")


def refuse(kind: str, devices: Sequence[str] = ()) -> None:
    """SpecError when this backend cannot run the strategy (checked before anything is made)."""
    name = backend()
    if name == "tensorflow":
        return
    if kind == "multiworker":
        raise _problem(
            "--strategy",
            f"the multiworker strategy is TensorFlow's (tf.distribute and TF_CONFIG); this "
            f"run uses the {name} backend",
            "run it with KERAS_BACKEND=tensorflow, or train on one machine",
        )
    if name == "torch" and (kind == "mirrored" or devices):
        raise _problem(
            "--strategy" if kind == "mirrored" else "--devices",
            "the PyTorch backend trains on one device: Keras does not distribute PyTorch training",
            "drop --strategy mirrored and --devices (choose the GPU with CUDA_VISIBLE_DEVICES), "
            "or train with KERAS_BACKEND=jax or tensorflow",
        )


def make_engine(kind: str, devices: Sequence[str] = ()) -> KerasEngine:
    """The engine for a recipe's `strategy` on JAX or PyTorch (see the module docstring).

    JAX: `one` trains on one device (the one `--devices` names, else the default); `mirrored`
    on every device `--devices` lists, by default every device of the default platform (every
    GPU, else every CPU device XLA was given); `auto` is `mirrored` over several GPUs, else one
    device. PyTorch: `one` and `auto` train on one device; anything else is refused."""
    refuse(kind, devices)
    if backend() == "torch":
        return KerasEngine(None, 1, "one device")
    import keras

    chosen = _jax_devices(devices) if devices else []
    if kind == "one":
        if len(chosen) > 1:
            raise _problem(
                "--devices",
                f"the one-device strategy trains on one device, not {len(chosen)}",
                "name one device, or use --strategy mirrored",
            )
        return _data_parallel(chosen) if chosen else KerasEngine(None, 1, "one device")
    if kind == "mirrored":
        return _data_parallel(chosen or list(keras.distribution.list_devices()))
    if not chosen:  # auto: several GPUs, else one device
        gpus = gpu_count()
        if gpus < 2:
            return KerasEngine(None, 1, "one device")
        chosen = list(keras.distribution.list_devices("gpu"))
    return _data_parallel(chosen)


def enable_determinism() -> None:
    """The recipe's `deterministic: true` on this backend: TensorFlow's op determinism (for
    the tf.data pipeline on any backend, and the step on TensorFlow), PyTorch's deterministic
    algorithms. JAX on a CPU is deterministic as it is; on a GPU set
    XLA_FLAGS=--xla_gpu_deterministic_ops=true before the process starts."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def epoch_seeding(seed: int) -> list[Any]:
    """Callbacks that make a resumed epoch draw the random numbers the uninterrupted one drew.

    PyTorch: Keras' Dropout without a seed draws from torch's global generator, which neither a
    checkpoint nor the run state holds, so a resumed run would drop other units. Seeding that
    generator from (seed, epoch) before every epoch's first step fixes its draws per epoch (a
    resumed run repeats its interrupted epoch from the start). The other backends keep every
    random state in Keras' seed generators, which the run state carries: no callback."""
    if backend() != "torch":
        return []
    import keras
    import torch

    class TorchEpochSeed(keras.callbacks.Callback):
        """Seeds at the epoch's first batch, once its data is drawn: Keras' PyTorch loader
        draws a seed from the same generator when its iterator starts (at a resumed run's
        first epoch, but an uninterrupted run's first only)."""

        epoch: int | None = None

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.epoch is not None:
                torch.manual_seed(seed * 1_000_003 + self.epoch)
                self.epoch = None

    return [TorchEpochSeed()]


@contextlib.contextmanager
def running(strategy: Any) -> Iterator[None]:
    """The block a session trains in: a KerasEngine's distribution scope (Keras reads the
    distribution when fit runs, not only when variables are made); nothing for tf.distribute,
    whose strategy the compiled model carries."""
    if isinstance(strategy, KerasEngine):
        with strategy.scope():
            yield
    else:
        yield
