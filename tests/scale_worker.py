"""One `ghostspec train` process for the distribution tests, run as a script in a subprocess.

    python tests/scale_worker.py CONFIG.json

CONFIG: {"argv": [...] or "runs": [[...], ...], "dump": PATH or "dumps": [PATH, ...],
"kill_at": N, "cpus": N}. It runs `ghostspec.cli.run` on each argv in turn and exits with the
first nonzero code (or 0). With "cpus" > 1 the CPU is split into that many logical devices first
(before TensorFlow starts). With "dump" (or "dumps", one per run), every weight of the trained
model (student and optimizer, in order) goes to an .npz when `fit` returns, and the same before
it starts to NAME.start.npz. With "kill_at", the process kills itself with SIGKILL after that
many training steps (counted from its start): a worker dying mid-epoch, as a machine failure
would leave it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    cpus = int(config.get("cpus") or 1)
    if cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpus
        )
    import numpy as np

    from ghostspec import cli
    from ghostspec.train import callbacks, session

    dumps: list[str] = list(config.get("dumps") or [])
    if config.get("dump"):
        dumps.append(config["dump"])
    if dumps:
        fit = session._Session._fit

        def values(built: Any) -> list[Any]:
            found = [np.asarray(v.numpy()) for v in built.model.weights]
            return found + [np.asarray(v.numpy()) for v in built.model.optimizer.variables]

        def recording(self: Any, built: Any, *args: Any, **kwargs: Any) -> Any:
            target = dumps.pop(0)
            np.savez(target.replace(".npz", ".start.npz"), *values(built))
            result = fit(self, built, *args, **kwargs)
            np.savez(target, *values(built))
            return result

        session._Session._fit = recording  # type: ignore[method-assign]
    kill_at = config.get("kill_at")
    if kill_at:
        step = callbacks.EpochClock.on_train_batch_end
        seen = {"steps": 0}

        def killing(self: Any, batch: int, logs: Any = None) -> None:
            step(self, batch, logs)
            seen["steps"] += 1
            if seen["steps"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        callbacks.EpochClock.on_train_batch_end = killing  # type: ignore[method-assign]
    code = 0
    for argv in config.get("runs") or [config["argv"]]:
        code = cli.run(argv)
        if code:
            break
    return code


if __name__ == "__main__":
    sys.exit(main())
