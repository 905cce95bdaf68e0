"""The tf.distribute strategy a recipe asks for. Distribution is TensorFlow's own: the training
loop builds the model, optimizer and metrics inside `strategy.scope()` and distributes its
datasets with `strategy.experimental_distribute_dataset`; Keras' fit does the rest."""

from __future__ import annotations

from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError


def make_strategy(kind: str, tf: Any, file: str = "recipe") -> Any:
    """`auto`: mirrored over every visible GPU when there are several, else the default (one
    device); `one`: the default strategy; `mirrored`: MirroredStrategy over every visible GPU
    (the CPU when there is none)."""
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "one" or (kind == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if kind in ("auto", "mirrored"):
        return tf.distribute.MirroredStrategy()
    raise SpecError(
        [
            Diagnostic(
                file=file,
                path="strategy",
                message=f"strategy {kind!r} is not supported by this version of ghostspec train",
                hint="use strategy: auto, one or mirrored",
            )
        ]
    )


def check_batch(strategy: Any, batch: int, file: str) -> None:
    """The global batch must split evenly across the replicas."""
    replicas = int(strategy.num_replicas_in_sync)
    if batch % replicas:
        lower = batch - batch % replicas
        fits = f"{lower} or {lower + replicas}" if lower else str(replicas)
        raise SpecError(
            [
                Diagnostic(
                    file=file,
                    path="batch_size",
                    message=f"the global batch size {batch} does not split evenly across "
                    f"{replicas} replicas",
                    hint=f"use a multiple of {replicas}, e.g. --batch-size {fits}",
                )
            ]
        )
