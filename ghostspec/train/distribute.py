"""Which tf.distribute strategy a run uses, who writes the run folder, and how data is sharded.

Distribution is TensorFlow's own: this module only chooses and configures a strategy (the
default one-device strategy, `OneDeviceStrategy`, `MirroredStrategy`, or
`MultiWorkerMirroredStrategy` from `TF_CONFIG`) and answers the questions the training loop asks
of it; the loop builds model, optimizer and metrics inside `strategy.scope()` and Keras' fit does
the rest. Nothing here imports TensorFlow at module level, so the CLI checks its input fast.

Only the chief writes the run folder. Every other worker writes the same files into a folder of
its own under the system's temporary folder (TensorFlow's multi-worker guide: every worker saves,
only the chief's copy is kept). That folder is named after the run folder and the worker, so a
worker that is killed and restarted with `--resume RUN_DIR` finds its copy; it is removed when
the run finishes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.needs import require_tensorflow

StrategyKind = Literal["auto", "one", "mirrored", "multiworker"]
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def _problem(where: str, message: str, hint: str | None = None, path: str = "") -> SpecError:
    return SpecError([Diagnostic(file=where, message=message, hint=hint, path=path)])


# ----------------------------------------------------------------------------------- TF_CONFIG


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster (one worker alone when there is none)."""

    task_type: str = "worker"
    task_index: int = 0
    workers: int = 1
    has_chief: bool = False  # the cluster names a `chief` task

    @property
    def chief(self) -> bool:
        """The chief writes the run folder: the `chief` task, or worker 0 when there is none."""
        if self.task_type == "chief":
            return True
        return not self.has_chief and self.task_type == "worker" and self.task_index == 0

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def read_tf_config(text: str | None = None, *, required: bool = False) -> Cluster:
    """This process's place in the TF_CONFIG cluster (`text`, else the environment variable),
    validated as a document (`ghostspec.language.tfconfig`): located messages, exit 2."""
    from ghostspec.language.tfconfig import parse_tf_config

    raw = os.environ.get("TF_CONFIG") if text is None else text
    if not raw:
        if required:
            raise _problem(
                "TF_CONFIG",
                "the multiworker strategy needs the TF_CONFIG environment variable on every worker",
                f"e.g. {TF_CONFIG_EXAMPLE} (see the README)",
            )
        return Cluster()
    config = parse_tf_config(raw)
    cluster = config.cluster
    return Cluster(
        task_type=config.task.type,
        task_index=config.task.index,
        workers=cluster.size,
        has_chief=bool(cluster.chief),
    )


def cluster_note(kind: StrategyKind) -> str | None:
    """A warning when TF_CONFIG describes a cluster that this run's strategy ignores."""
    if kind == "multiworker":
        return None
    try:
        cluster = read_tf_config()
    except SpecError:
        return None
    if cluster.workers > 1:
        return (
            f"note: TF_CONFIG describes {cluster.workers} workers, but the strategy is {kind}: "
            "this process trains alone (--strategy multiworker trains together)"
        )
    return None


# ---------------------------------------------------------------------------------- strategies


def _short(device: str) -> str:
    return device.lower().lstrip("/").removeprefix("device:")


def _devices(tf: Any, devices: Sequence[str]) -> list[str]:
    """TensorFlow's names of the devices the user listed; SpecError naming those that exist."""
    available = [d.name for d in tf.config.list_logical_devices()]
    names = []
    for device in devices:
        found = [name for name in available if _short(name) == _short(device)]
        if not found:
            shown = ", ".join(_short(n) for n in available)
            raise _problem(
                "--devices", f"no device {device!r} on this machine", f"available: {shown}"
            )
        names.append(found[0])
    if len(set(names)) != len(names):
        raise _problem("--devices", "a device is listed twice", "list each device once")
    return names


def make_strategy(
    kind: StrategyKind, devices: Sequence[str] | None = None, file: str = "recipe"
) -> Any:
    """The tf.distribute strategy for a recipe's `strategy` (and the CLI's `--devices`).

    `auto`: mirrored over every visible GPU when there are several (or over `devices`), else one
    device; `one`: TensorFlow's default strategy (or `OneDeviceStrategy` on the one device
    named); `mirrored`: MirroredStrategy over `devices`, by default every GPU (the CPU when
    there is none); `multiworker`: MultiWorkerMirroredStrategy over the TF_CONFIG cluster, every
    local GPU of each worker."""
    require_tensorflow("tf.distribute (--strategy)")
    import tensorflow as tf

    if kind == "multiworker":
        if devices:
            raise _problem(
                "--devices",
                "the multiworker strategy uses every GPU a worker can see",
                "leave out --devices; choose each worker's GPUs with CUDA_VISIBLE_DEVICES",
            )
        read_tf_config(required=True)
        return tf.distribute.MultiWorkerMirroredStrategy()
    names = _devices(tf, devices) if devices else None
    if kind == "one":
        if names and len(names) > 1:
            raise _problem(
                "--devices",
                f"the one-device strategy trains on one device, not {len(names)}",
                "name one device, or use --strategy mirrored",
                path="strategy",
            )
        return tf.distribute.OneDeviceStrategy(names[0]) if names else tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=names)
    if names is None:
        names = [g.name for g in tf.config.list_logical_devices("GPU")]
        if len(names) < 2:
            return tf.distribute.get_strategy()
    if len(names) == 1:
        return tf.distribute.OneDeviceStrategy(names[0])
    return tf.distribute.MirroredStrategy(devices=names)


def multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def describe(strategy: Any) -> str:
    """`MirroredStrategy, 2 replicas` style text for the run's first line."""
    import tensorflow as tf

    replicas = int(strategy.num_replicas_in_sync)
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "one device"
    name = "MultiWorkerMirroredStrategy" if multi_worker(strategy) else type(strategy).__name__
    return f"{name}, {replicas} replica{'s' if replicas != 1 else ''}"


def check_batch(batch_size: int, replicas: int, file: str = "recipe") -> None:
    """The global batch must split evenly over the replicas, or no step is the recipe's."""
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        options = " or ".join(str(v) for v in (lower, lower + replicas) if v > 0)
        raise _problem(
            file,
            f"the global batch size {batch_size} does not divide evenly over {replicas} replicas",
            f"use a multiple of {replicas}: {options} (--batch-size N or --hp batch_size=N)",
            path="batch_size",
        )


def shard_by_data(dataset: Any) -> Any:
    """Image folders are one list of files, not files per worker: every worker reads the whole
    list and keeps its share of each global batch (tf.data's AutoShardPolicy.DATA)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def synchronize_batch_norm(model: Any, replicas: int) -> int:
    """Across replicas BatchNorm must see the global batch, or the run is not the recipe's: each
    replica's statistics over its share of the batch give other weights than one device.
    Returns how many layers are synchronised."""
    import keras

    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = replicas > 1
            count += replicas > 1
    return count


def agree_on_epoch(strategy: Any, epoch: int) -> int:
    """The smallest resume epoch among the workers (a worker killed while saving an epoch may be
    one epoch behind the others); every worker must continue from the same one."""
    import tensorflow as tf

    values = strategy.run(lambda: tf.constant([epoch], tf.int64))
    return int(tf.reduce_min(strategy.gather(values, axis=0)).numpy())


# ------------------------------------------------------------------------------ writer folders


def worker_folder(run_dir: Path, cluster: Cluster, root: Path | None = None) -> Path:
    """Where a worker other than the chief writes its copy of the run: in the temporary folder,
    named after the run folder's absolute path and the worker, so a restarted worker finds it."""
    digest = hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) if root is None else root
    return base / f"ghostspec-{Path(run_dir).name}-{digest}-{cluster.task_type}{cluster.task_index}"
