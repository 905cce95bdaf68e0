"""Which tf.distribute strategy a run uses, who writes the run folder, and how data is sharded.

Distribution is TensorFlow's own: this module only chooses and configures a strategy
(`OneDeviceStrategy`, `MirroredStrategy`, `MultiWorkerMirroredStrategy` from `TF_CONFIG`) and
answers the questions the training loop asks of it. Nothing here imports TensorFlow at module
level, so the recipe and the CLI stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ghostspec.diagnostics import Diagnostic, SpecError

StrategyKind = Literal["auto", "one", "mirrored", "multiworker"]


def _problem(where: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=where, message=message, hint=hint)])


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster (one worker alone when there is none)."""

    task_type: str = "worker"
    task_index: int = 0
    workers: int = 1

    @property
    def chief(self) -> bool:
        """The chief writes the run folder: the `chief` task, or worker 0 when there is none."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0)


def read_tf_config(text: str | None = None, *, required: bool = False) -> Cluster:
    """Parse the TF_CONFIG environment variable with messages that say what is wrong."""
    raw = os.environ.get("TF_CONFIG") if text is None else text
    if not raw:
        if required:
            raise _problem(
                "TF_CONFIG",
                "the multiworker strategy needs the TF_CONFIG environment variable on every worker",
                'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' (see the README)',
            )
        return Cluster()
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise _problem(
            "TF_CONFIG", f"is not valid JSON ({err.msg} at character {err.pos})"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise _problem("TF_CONFIG", 'must be a JSON object with a "cluster" mapping')
    cluster = config["cluster"]
    task = config.get("task") or {}
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _problem("TF_CONFIG", 'needs "task": {"type": "worker", "index": N}')
    task_type, index = task["type"], task["index"]
    members = cluster.get(task_type)
    if not isinstance(members, list) or not isinstance(index, int) or index < 0:
        raise _problem("TF_CONFIG", f"task {task_type!r} index {index!r} is not in the cluster")
    if index >= len(members):
        raise _problem(
            "TF_CONFIG",
            f"task index {index} is out of range: the cluster has {len(members)} {task_type}(s)",
        )
    workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    return Cluster(task_type=str(task_type), task_index=index, workers=workers)


def make_strategy(kind: StrategyKind, devices: Sequence[str] | None = None) -> Any:
    """The tf.distribute strategy for a recipe's `strategy` (and the CLI's `--devices`)."""
    import tensorflow as tf

    if kind == "multiworker":
        read_tf_config(required=True)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        available = [d.name for d in tf.config.list_logical_devices()]
        for device in devices:
            short = device.lower().removeprefix("/").split("device:")[-1]
            if not any(name.lower().endswith(short) for name in available):
                raise _problem(
                    "--devices",
                    f"no device {device!r} on this machine",
                    f"available: {', '.join(available)}",
                )
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if kind == "one":
        return tf.distribute.OneDeviceStrategy(devices[0] if devices else _first_device(tf))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(devices=[g.name for g in gpus])
    return tf.distribute.OneDeviceStrategy(_first_device(tf))


def _first_device(tf: Any) -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name


def strategy_name(strategy: Any) -> str:
    """`mirrored over 2 devices` style text for the progress output."""
    kind = type(strategy).__name__.replace("Strategy", "")
    return f"{kind} ({strategy.num_replicas_in_sync} replica(s))"


def check_batch(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas, or no step is the recipe's."""
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        options = ", ".join(str(v) for v in (lower, lower + replicas) if v > 0)
        raise _problem(
            "batch_size",
            f"the global batch size {batch_size} does not divide evenly over {replicas} replicas",
            f"use a multiple of {replicas}: {options} (--batch-size N or --hp batch_size=N)",
        )


def shard_by_data(dataset: Any) -> Any:
    """Image folders are one file list, not files per worker: shard every worker by element."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def synchronize_batch_norm(model: Any, replicas: int) -> None:
    """Across replicas, BatchNorm must see the global batch or the run is not the recipe's:
    each replica's statistics over its share of the batch give other weights than one device."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = replicas > 1


def unsynchronize_batch_norm(model: Any) -> None:
    """Saved and exported models carry plain BatchNorm layers."""
    synchronize_batch_norm(model, 1)


def multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def writer_folder(run_dir: Path, cluster: Cluster) -> Iterator[Path]:
    """The folder this process writes: the run folder on the chief, a temporary folder that is
    removed afterwards on every other worker (as TensorFlow's multi-worker guide prescribes:
    all workers save, since saving has collective ops, and only the chief's copy is kept)."""
    if cluster.chief:
        yield run_dir
        return
    temp = Path(tempfile.mkdtemp(prefix=f"ghostspec-worker{cluster.task_index}-"))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)
