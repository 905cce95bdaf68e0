"""GhostNet 1.0x on every Keras backend, side by side with timm's ghostnet_100 in PyTorch.

Run from the repository root:
`python benchmarks/bench_backends.py [--rounds N] [--rows a,b] [--timm-python PATH] [--profile]`.

Rows (each its own worker process, since KERAS_BACKEND is fixed per process):
- keras-tensorflow, keras-jax, keras-torch: `ghostspec.build("ghostnet_100")`; inference on the
  deploy form `ghostspec.fuse(model, batch_norm=True)` through `predict_on_batch`, the training
  step through `train_on_batch` (SGD, sparse cross-entropy from logits) on the model as built.
  Keras' own compile paths: tf.function on TensorFlow, jax.jit on JAX (`jit_compile` resolves to
  True there), eager on PyTorch.
- keras-torch-cf: the PyTorch backend with `image_data_format("channels_first")`, PyTorch's own
  layout (the model takes (N, C, H, W)).
- keras-torch-jit: the PyTorch backend with `jit_compile=True` (Keras wraps its steps in
  torch.compile). Off by default (compiling takes minutes on 2 cores): `--rows` adds it.
- timm-eager, timm-compile: timm's ghostnet_100, `torch.set_num_threads` like the Keras rows,
  channels_last, inference in eval mode under no_grad, training with SGD; timm-eager-fused is
  eager inference with BatchNorm folded into the convs (`torch.fx` fuse), like for like with the
  Keras deploy form. Skipped, with a note, when timm cannot be imported by `--timm-python`
  (default: this interpreter; timm is never a dependency of ghostspec).

Every worker is started once and keeps its models; the parent runs the rounds interleaved (one
measurement of every row per round), so load from other processes hits all rows alike, and
reports the median per row over the rounds. The weights are drawn once (the first Keras row
writes a .weights.h5 the others load), and the parent asserts that every Keras row's deploy
logits equal the TensorFlow backend's within 1e-5 and the as-built model's within 1e-5: speed
changes must not change the function.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZE, TRAIN_SIZE, BATCHES, TRAIN_BATCH, CLASSES = 224, 160, (1, 32), 32, 1000
THREADS = 2
TOLERANCE = 1e-5
KERAS_ROWS = {
    "keras-tensorflow": ("tensorflow", "channels_last", False),
    "keras-jax": ("jax", "channels_last", False),
    "keras-torch": ("torch", "channels_last", False),
    "keras-torch-cf": ("torch", "channels_first", False),
    "keras-torch-jit": ("torch", "channels_last", True),
}
TIMM_ROWS = ("timm-eager", "timm-eager-fused", "timm-compile")
DEFAULT_ROWS = (*[r for r in KERAS_ROWS if r != "keras-torch-jit"], *TIMM_ROWS)
# iterations per measurement: (batch 1, batch 32, training step)
ITERS = {1: 10, 32: 2, "train": 2}


def _median_time(fn: Callable[[], Any], iters: int) -> float:
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _inputs(batch: int, size: int, channels_first: bool) -> Any:
    import numpy as np

    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_first else x


def _labels() -> Any:
    import numpy as np

    return np.random.default_rng(1).integers(0, CLASSES, TRAIN_BATCH)


# ---------------------------------------------------------------------------------------------
# workers: read one command per line on stdin ("round", "check", "profile", "quit"), answer one
# JSON line on stdout


def _serve(measure: Callable[[], dict[str, float]], extra: dict[str, Callable[[], Any]]) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # frameworks' chatter stays off the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        result = measure() if command == "round" else extra[command]()
        out.write(json.dumps(result) + "\n")
        out.flush()


def keras_worker(row: str, weights: str) -> None:
    backend, data_format, jit = KERAS_ROWS[row]
    assert os.environ.get("KERAS_BACKEND") == backend
    if backend == "torch":
        import torch

        torch.set_num_threads(THREADS)
    import keras
    import numpy as np

    import ghostspec

    keras.config.set_image_data_format(data_format)
    cf = data_format == "channels_first"
    keras.utils.set_random_seed(0)
    model = ghostspec.build("ghostnet_100")
    if Path(weights).exists():
        model.load_weights(weights)
    else:
        model.save_weights(weights)
    deploy = ghostspec.fuse(model, batch_norm=True)
    compile_args: dict[str, Any] = {"jit_compile": True} if jit else {}
    deploy.compile(**compile_args)
    check_x = _inputs(2, SIZE, cf)
    built_logits = np.asarray(keras.ops.convert_to_numpy(model(check_x, training=False)))
    inputs = {b: _inputs(b, SIZE, cf) for b in BATCHES}
    for b in BATCHES:
        deploy.predict_on_batch(inputs[b])  # compile / warm up

    train = ghostspec.build("ghostnet_100", [f"input.shape=[{TRAIN_SIZE},{TRAIN_SIZE},3]"])
    train.load_weights(weights)
    train.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **compile_args,
    )
    tx, ty = _inputs(TRAIN_BATCH, TRAIN_SIZE, cf), _labels()
    train.train_on_batch(tx, ty)

    def measure() -> dict[str, float]:
        result = {
            f"b{b}": _median_time(lambda b=b: deploy.predict_on_batch(inputs[b]), ITERS[b])
            for b in BATCHES
        }
        result["train"] = _median_time(lambda: train.train_on_batch(tx, ty), ITERS["train"])
        return result

    def check() -> dict[str, Any]:
        logits = np.asarray(deploy.predict_on_batch(check_x))
        return {
            "logits": logits.tolist(),
            "deploy_vs_built": float(np.max(np.abs(logits - built_logits))),
            "jit_compile": str(deploy.jit_compile),
            "layers": len(deploy.layers),
        }

    def profile() -> dict[str, Any]:
        return {"table": _profile_keras(backend, deploy, inputs, train, tx, ty)}

    _serve(measure, {"check": check, "profile": profile})


def _profile_keras(backend: str, deploy: Any, inputs: Any, train: Any, tx: Any, ty: Any) -> str:
    """Where the time goes: torch.profiler on the PyTorch backend; elsewhere wall time of the
    compiled call against the count of layers (the dispatch share is what eager pays per op)."""
    if backend != "torch":
        return f"{backend}: {len(deploy.layers)} layers in the deploy graph"
    from torch.profiler import ProfilerActivity, profile

    lines = []
    for label, fn in (
        ("inference b1", lambda: deploy.predict_on_batch(inputs[1])),
        ("inference b32", lambda: deploy.predict_on_batch(inputs[32])),
        ("train step", lambda: train.train_on_batch(tx, ty)),
    ):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                fn()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)
        lines.append(f"== {label} (3 calls)\n{table}")
    return "\n".join(lines)


def timm_worker(row: str) -> None:
    import torch

    torch.set_num_threads(THREADS)
    import timm

    torch.manual_seed(0)
    net = timm.create_model("ghostnet_100").eval().to(memory_format=torch.channels_last)
    infer: Any = net
    if row == "timm-eager-fused":
        from torch.fx.experimental.optimization import fuse

        infer = fuse(net)
    elif row == "timm-compile":
        infer = torch.compile(net)
    inputs = {
        b: torch.from_numpy(_inputs(b, SIZE, True)).contiguous(memory_format=torch.channels_last)
        for b in BATCHES
    }

    def run(b: int) -> None:
        with torch.no_grad():
            infer(inputs[b])

    for b in BATCHES:
        run(b)

    trainer = timm.create_model("ghostnet_100").train().to(memory_format=torch.channels_last)
    step_net: Any = torch.compile(trainer) if row == "timm-compile" else trainer
    sgd = torch.optim.SGD(trainer.parameters(), lr=0.01, momentum=0.9)
    tx = torch.from_numpy(_inputs(TRAIN_BATCH, TRAIN_SIZE, True)).contiguous(
        memory_format=torch.channels_last
    )
    ty = torch.from_numpy(_labels())
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        sgd.zero_grad(set_to_none=True)
        loss = loss_fn(step_net(tx), ty)
        loss.backward()
        sgd.step()

    step()
    versions = {"torch": torch.__version__, "timm": timm.__version__}

    def measure() -> dict[str, float]:
        result = {f"b{b}": _median_time(lambda b=b: run(b), ITERS[b]) for b in BATCHES}
        result["train"] = _median_time(step, ITERS["train"]) if row != "timm-eager-fused" else 0.0
        return result

    _serve(measure, {"check": lambda: versions, "profile": lambda: {"table": ""}})


# ---------------------------------------------------------------------------------------------
# parent


class Worker:
    def __init__(self, row: str, weights: str, timm_python: str) -> None:
        self.row = row
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
        env.update(OMP_NUM_THREADS=str(THREADS), TF_NUM_INTRAOP_THREADS=str(THREADS))
        python = sys.executable
        if row in KERAS_ROWS:
            env["KERAS_BACKEND"] = KERAS_ROWS[row][0]
            if env["KERAS_BACKEND"] == "jax":
                env["XLA_FLAGS"] = env.get("XLA_FLAGS", "")
        else:
            python = timm_python
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", row, "--weights", weights],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if row not in KERAS_ROWS else None,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.failed: str | None = None

    def wait_ready(self) -> bool:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.failed = f"worker exited ({self.proc.wait()})"
            return False
        return True

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS))
    parser.add_argument("--timm-python", default=sys.executable)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker in KERAS_ROWS:
            keras_worker(args.worker, args.weights)
        else:
            timm_worker(args.worker)
        return 0

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "ghostnet_100.weights.h5")
        workers: dict[str, Worker] = {}
        notes: list[str] = []
        # the first row draws the weights; the others start together once it is ready
        started = time.perf_counter()
        pending = [Worker(rows[0], weights, args.timm_python)]
        pending[0].wait_ready()
        pending += [Worker(row, weights, args.timm_python) for row in rows[1:]]
        for worker in pending:
            if worker.failed is None and (worker is pending[0] or worker.wait_ready()):
                workers[worker.row] = worker
                print(f"# {worker.row}: ready at {time.perf_counter() - started:.0f} s", flush=True)
            else:
                notes.append(f"{worker.row}: skipped ({worker.failed}; is timm importable?)")
        checks = {row: w.ask("check") for row, w in workers.items()}
        _assert_exact(checks, notes)
        loads = []
        results: dict[str, list[dict[str, float]]] = {row: [] for row in workers}
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for row, worker in workers.items():
                results[row].append(worker.ask("round"))
            print(f"# round {r + 1}/{args.rounds} done, load {loads[-1]:.1f}", flush=True)
        if args.profile:
            for row, worker in workers.items():
                table = worker.ask("profile")["table"]
                if table:
                    print(f"\n### profile {row}\n{table}")
        for worker in workers.values():
            worker.close()
    _print_table(results, loads, notes, checks)
    return 0


def _assert_exact(checks: dict[str, Any], notes: list[str]) -> None:
    import numpy as np

    reference = checks.get("keras-tensorflow")
    for row, check in checks.items():
        if row not in KERAS_ROWS:
            notes.append(f"{row}: torch {check['torch']}, timm {check['timm']}")
            continue
        assert check["deploy_vs_built"] < TOLERANCE, (row, check["deploy_vs_built"])
        notes.append(
            f"{row}: jit_compile={check['jit_compile']}, {check['layers']} deploy layers, "
            f"deploy vs built {check['deploy_vs_built']:.1e}"
        )
        if reference is not None and row != "keras-tensorflow":
            diff = float(np.max(np.abs(np.asarray(check["logits"]) - reference["logits"])))
            assert diff < TOLERANCE, (row, diff)
            notes[-1] += f", vs TensorFlow {diff:.1e}"


def _print_table(
    results: dict[str, list[dict[str, float]]],
    loads: list[float],
    notes: list[str],
    checks: dict[str, Any],
) -> None:
    med = {
        row: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for row, rounds in results.items()
        if rounds
    }
    tf, timm = med.get("keras-tensorflow"), med.get("timm-eager")
    print(
        f"\nGhostNet 1.0x, {THREADS} threads, median of {len(loads)} interleaved rounds; "
        f"load average (1 min) at the rounds: {', '.join(f'{x:.1f}' for x in loads)}"
    )
    header = "| row | b1 ms | b32 ms | train ms | b1 /TF | b32 /TF | train /TF | b1 /timm | "
    header += "b32 /timm | train /timm |"
    print(header)
    print("|" + "---|" * 10)
    for row, m in med.items():
        cells = [row] + [f"{m[k]:.1f}" if m[k] else "-" for k in ("b1", "b32", "train")]
        for ref in (tf, timm):
            for k in ("b1", "b32", "train"):
                ok = ref is not None and m[k] and ref[k]
                cells.append(f"{m[k] / ref[k]:.2f}" if ok else "-")  # type: ignore[index]
        print("| " + " | ".join(cells) + " |")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    sys.exit(main())
