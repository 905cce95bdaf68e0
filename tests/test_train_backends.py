"""Training and evaluation on the backend this process runs (KERAS_BACKEND: tensorflow, jax or
torch): one step of each optimizer against NumPy, a short run above chance whose best.keras
evaluates to its best validation top-1, resume equal to an uninterrupted run, the strategies each
backend offers, and the one-line message when TensorFlow is missing.

CI runs this file once per backend, each in its own process (`pytest --backend jax`). The data
are tests/imagegen.py shapes (32x32, 4 classes); the runs are 2 epochs of a tiny network.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from imagegen import make_shapes
from test_train import TINY, _checkpoint_arrays

from ghostspec import cli

# tests/conftest.py: CI runs this file on every backend; it trains (PyTorch: gradients on)
pytestmark = pytest.mark.backend_neutral
BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[1]
# Measured resume tolerance per backend (max |difference| over every checkpointed array).
RESUME_TOLERANCE = {"tensorflow": 1e-6, "jax": 1e-6, "torch": 1e-6}
FAST = [
    "batch_size=16",
    "optimizer.reference_batch=16",
    "optimizer.lr=0.01",
    "schedule.warmup_epochs=0",
    "augment.crop=null",
    "label_smoothing=0.0",
]
EPOCHS = 2


def _hp(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--hp", value)]


def _run(args: list[str]) -> tuple[int, str]:
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        code = cli.run(args)
    print(stream.getvalue())
    return code, stream.getvalue()


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=60, size=32)


@pytest.fixture(scope="module")
def trained(spec: Path, shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", str(spec), "--data", str(shapes), "-o", str(out), "--epochs", str(EPOCHS)]
    code, printed = _run([*args, *_hp(FAST)])
    assert code == 0, printed
    assert "(one device)" in printed
    return out


# ------------------------------------------------------------------ one optimizer step vs NumPy

W0 = np.array([1.0, -2.0, 0.5], "float32")
GRADS = [np.array([0.5, 0.25, -1.0], "float32"), np.array([-0.2, 0.4, 0.3], "float32")]


def _steps(optimizer: Any) -> np.ndarray:
    w = keras.Variable(W0.copy())
    optimizer.build([w])
    for g in GRADS:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [w])
    return np.asarray(keras.ops.convert_to_numpy(w))


def test_l2_sgd_nesterov_matches_pytorch_rule() -> None:
    from ghostspec.train.optim import L2SGD

    got = _steps(L2SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
    w, buf = W0.astype("float64"), np.zeros(3)
    for g in GRADS:
        grad = g + 0.01 * w  # torch.optim.SGD(nesterov=True, weight_decay=0.01)
        buf = 0.9 * buf + grad
        w = w - 0.1 * (grad + 0.9 * buf)
    np.testing.assert_allclose(got, w, rtol=1e-6)


def test_tensorflow1_rmsprop_with_coupled_decay() -> None:
    from ghostspec.train.optim import TFRMSprop

    opt = TFRMSprop(learning_rate=0.1, rho=0.9, momentum=0.9, epsilon=1e-3, weight_decay=0.01)
    got = _steps(opt)
    w, v, m = W0.astype("float64"), np.ones(3), np.zeros(3)  # the mean square starts at one
    for g in GRADS:
        grad = g + 0.01 * w
        v = 0.9 * v + 0.1 * grad**2
        m = 0.9 * m + 0.1 * grad / np.sqrt(v + 1e-3)
        w = w - m
    np.testing.assert_allclose(got, w, rtol=1e-6)


def test_adamw_decoupled_decay() -> None:
    got = _steps(keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.05, epsilon=1e-7))
    w, m, v = W0.astype("float64"), np.zeros(3), np.zeros(3)
    for t, g in enumerate(GRADS, start=1):
        w = w - 0.1 * 0.05 * w  # decoupled: w -= lr * wd * w, before the Adam step
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        alpha = 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)  # Keras' (TensorFlow's) epsilon-hat form
        w = w - alpha * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(got, w, rtol=1e-5)


def test_ema_follows_the_weights() -> None:
    from ghostspec.train.callbacks import ema_pairs
    from ghostspec.train.optim import L2SGD

    opt = L2SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    got = _steps(opt)
    w, ema = W0.astype("float64"), None
    for g in GRADS:
        w = w - 0.1 * g
        ema = w.copy() if ema is None else 0.5 * ema + 0.5 * w  # ema = w at the first step
    np.testing.assert_allclose(got, w, rtol=1e-6)
    ((_, average),) = ema_pairs(opt)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(average), ema, rtol=1e-6)


@pytest.mark.parametrize("kind", ["sgd", "rmsprop", "adamw"])
def test_decay_leaves_out_batchnorm_and_biases(spec: Path, kind: str) -> None:
    import ghostspec
    from ghostspec.language.recipe import load_recipe
    from ghostspec.train.optim import decay_exclusions, make_optimizer, make_schedule

    model = ghostspec.build(spec)
    recipe = load_recipe("finetune", [f"optimizer.kind={kind}", "optimizer.weight_decay=0.1"])
    opt = make_optimizer(recipe, model, make_schedule(recipe, 10))
    excluded = {id(v) for v in decay_exclusions(model)}
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    opt.apply([keras.ops.zeros(v.shape, "float32") for v in model.trainable_variables])
    for v, old in zip(model.trainable_variables, before, strict=True):
        moved = not np.array_equal(v.numpy(), old)
        assert moved == (id(v) not in excluded and bool(np.any(old))), v.path


def test_fused_batch_norm_only_on_tensorflow(spec: Path) -> None:
    import ghostspec
    from ghostspec.train.fastbn import fuse_batch_norm_for_training

    fused = fuse_batch_norm_for_training(ghostspec.build(spec))
    assert (fused > 0) == (BACKEND == "tensorflow")


# ---------------------------------------------------------------------- a run on this backend


def test_training_learns_and_best_keras_evaluates_to_its_figure(
    trained: Path, shapes: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = _rows(trained)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    best = max(float(r["val_top1"]) for r in rows)
    assert best >= 0.4, rows  # chance is 0.25
    for name in ("spec.yaml", "recipe.yaml", "classes.json", "best.keras", "last.keras"):
        assert (trained / name).is_file(), name
    capsys.readouterr()
    assert cli.run(["evaluate", str(trained), "--data", str(shapes), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(best, abs=1e-6)


def test_best_keras_predicts_on_this_backend(trained: Path) -> None:
    from ghostspec.keras.modelfile import load_model_file

    loaded = load_model_file(trained / "best.keras")
    out = loaded.model.predict_on_batch(np.zeros((2, 32, 32, 3), "float32"))
    assert np.asarray(out).shape == (2, 4) and np.all(np.isfinite(out))
    last = load_model_file(trained / "last.keras").model
    steps = (4 * 45) // 16  # 45 training images per class (a quarter of 60 in val/)
    assert int(keras.ops.convert_to_numpy(last.optimizer.iterations)) == EPOCHS * steps


def test_resume_equals_uninterrupted(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from ghostspec.train import callbacks

    data = make_shapes(tmp_path / "data", classes=4, per_class=24, size=32, seed=1)
    recipe = tmp_path / "resume.recipe.yaml"
    recipe.write_text(
        "ghostspec-recipe: 1\n"
        "epochs: 2\n"
        "batch_size: 16\n"
        "optimizer: {kind: rmsprop, lr: 0.01, reference_batch: 16}\n"
        "schedule: {kind: step, decay_rate: 0.5, decay_epochs: 1, warmup_epochs: 0.5}\n"
        "augment: {crop: {scale: [0.5, 1.0]}, flip: true, randaugment: {layers: 1},"
        " erasing: 0.25}\n"
        "ema: {decay: 0.9}\n"
        "deterministic: true\n"
        "seed: 3\n",
        encoding="utf-8",
    )
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    base = ["train", str(spec), "--data", str(data), "--recipe", str(recipe)]
    assert cli.run([*base, "-o", str(whole)]) == 0

    original = callbacks.EpochClock.on_train_batch_end
    seen = {"steps": 0}

    def interrupt(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        seen["steps"] += 1
        if seen["steps"] == 4 + 2:  # the middle of epoch 2 (4 steps an epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", interrupt)
    capsys.readouterr()
    assert cli.run([*base, "-o", str(parts)]) == 130
    assert f"resume with: ghostspec train --resume {parts}" in capsys.readouterr().err
    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", original)
    assert cli.run(["train", "--resume", str(parts)]) == 0

    a, b = _checkpoint_arrays(whole), _checkpoint_arrays(parts)
    assert a.keys() == b.keys() and len(a) > 100  # weights, BN statistics, slots, EMA, step
    worst = max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)
    print(f"{BACKEND}: resumed vs uninterrupted, max |difference| {worst:.2e}")
    assert worst <= RESUME_TOLERANCE[BACKEND], worst
    rows_a, rows_b = _rows(whole), _rows(parts)
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("lr", "loss", "top1", "val_loss", "val_top1"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-5), key


# ----------------------------------------------------------------------------- strategies


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch backend's message")
@pytest.mark.parametrize("flags", [["--strategy", "mirrored"], ["--devices", "cpu:0"]])
def test_pytorch_trains_on_one_device(
    spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str]
) -> None:
    out = tmp_path / "run"
    assert cli.run(["train", str(spec), "--data", str(shapes), "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert "PyTorch backend trains on one device" in err and "KERAS_BACKEND=jax" in err
    assert not out.exists()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="tf.distribute's own strategy")
def test_multiworker_is_tensorflows(
    spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(shapes), "-o", str(out)]
    assert cli.run([*args, "--strategy", "multiworker"]) == 2
    assert "multiworker strategy is TensorFlow's" in capsys.readouterr().err


JAX_WORKER = """
import json, sys
import numpy as np
from ghostspec import cli
from ghostspec.train import session

config = json.loads(sys.argv[1])
dumps = list(config["dumps"])
fit = session._Session._fit

def values(built):
    found = [np.asarray(v.numpy()) for v in built.model.weights]
    return found + [np.asarray(v.numpy()) for v in built.model.optimizer.variables]

def recording(self, built, *args, **kwargs):
    target = dumps.pop(0)
    np.savez(target.replace(".npz", ".start.npz"), *values(built))
    result = fit(self, built, *args, **kwargs)
    np.savez(target, *values(built))
    return result

session._Session._fit = recording
for argv in config["runs"]:
    code = cli.run(argv)
    if code:
        sys.exit(code)
"""


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.skipif(BACKEND != "jax", reason="Keras' DataParallel on JAX")
def test_jax_data_parallel_over_two_cpus_equals_one_device(spec: Path, tmp_path: Path) -> None:
    """Like tests/test_scale.py's mirrored test: one epoch, the same global batch, on one device
    and split over two virtual CPU devices (XLA's host device count, set before JAX starts)."""
    hp = _hp(
        [
            "batch_size=16",
            "optimizer.reference_batch=16",
            "augment.crop=null",
            "optimizer.kind=sgd",
            "optimizer.lr=0.05",
            "ema={decay: 0.9}",
            "seed=3",
        ]
    )
    data = make_shapes(tmp_path / "data", classes=4, per_class=24, size=32, seed=1)  # 4 steps
    base = ["train", str(spec), "--data", str(data), "--epochs", "1", *hp]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    config = {
        "runs": [
            [*base, "--strategy", "one", "-o", str(tmp_path / "one")],
            [*base, "--strategy", "mirrored", "-o", str(tmp_path / "two")],
        ],
        "dumps": [str(one), str(two)],
    }
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    done = subprocess.run(
        [sys.executable, "-c", JAX_WORKER, json.dumps(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(done.stdout, done.stderr[-3000:])
    assert done.returncode == 0
    assert "(DataParallel, 2 replicas)" in done.stdout and "(one device)" in done.stdout
    a, b = _arrays(one), _arrays(two)
    assert len(a) == len(b) > 100
    moved = max(
        float(np.max(np.abs(e - s)))
        for s, e in zip(_arrays(tmp_path / "one.start.npz"), a, strict=True)
        if s.size and s.dtype.kind == "f"
    )
    assert moved > 0.05  # it trained
    worst = max(
        float(np.max(np.abs(x.astype("float64") - y))) if x.size else 0.0
        for x, y in zip(a, b, strict=True)
    )
    print(f"JAX DataParallel over 2 CPUs vs one device: max |weight difference| {worst:.2e}")
    assert worst < 1e-5


# ------------------------------------------------------------------------- without TensorFlow

NO_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # as if it were not installed
from ghostspec import cli
args = sys.argv[1:]
sys.exit(cli.run(args))
"""


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the other backends run without TensorFlow")
def test_without_tensorflow_train_and_evaluate_name_the_extra(
    spec: Path, shapes: Path, trained: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (
        ["train", str(spec), "--data", str(shapes), "-o", str(tmp_path / "run")],
        ["evaluate", str(trained), "--data", str(shapes)],
    ):
        done = subprocess.run(
            [sys.executable, "-c", NO_TENSORFLOW, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        (line,) = [x for x in done.stderr.splitlines() if "needs TensorFlow" in x]
        assert "pip install 'ghostspec[tensorflow]'" in line
    assert not (tmp_path / "run").exists()
