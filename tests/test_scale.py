"""Training at scale: mixed precision, tf.distribute strategies, distillation, reproducibility.

Runs that need a TensorFlow configured before it starts (two logical CPU devices, or one worker of
a TF_CONFIG cluster) go to subprocesses (tests/scale_worker.py); the rest run in this process.
The data are tests/imagegen.py shapes (32x32, 4 classes, 72 training images: 4 steps of 16).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imagegen import make_shapes
from test_train import TINY

from ghostspec import cli
from ghostspec.diagnostics import SpecError

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "scale_worker.py"
STEPS = 4  # per epoch: 72 training images in batches of 16
BASE_HP = [
    "batch_size=16",
    "optimizer.reference_batch=16",
    "augment.crop=null",
    "label_smoothing=0.1",
    "deterministic=true",
    "seed=3",
]
SGD = ["optimizer.kind=sgd", "optimizer.lr=0.05", "ema={decay: 0.9}"]
TIMING = ("seconds", "images_per_s")


def _hp(*values: str) -> list[str]:
    args: list[str] = []
    for value in values:
        args += ["--hp", value]
    return args


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY.replace("dropout: 0.1", "dropout: 0.0"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=24, size=32, seed=1)


@pytest.fixture(scope="module")
def random_teacher(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny network of another width saved as a .keras file (a fixed function)."""
    import keras

    import ghostspec
    from ghostspec.keras.modelfile import ModelMetadata, save_model_file

    keras.utils.set_random_seed(11)
    model = ghostspec.build(spec, ["width=1.5", "name=teacher"])
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    meta = ModelMetadata(
        classes=("circle", "square", "stripes", "triangle"),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    save_model_file(model, path, meta, include_optimizer=False)
    return path


def _train(args: list[str]) -> tuple[int, str]:
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        code = cli.run(args)
    print(stream.getvalue())
    return code, stream.getvalue()


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return max(
        float(np.max(np.abs(x.astype("float64") - y))) if x.size else 0.0
        for x, y in zip(a, b, strict=True)
    )


def _moved(start: list[np.ndarray], end: list[np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(e - s)))
        for s, e in zip(start, end, strict=True)
        if s.size and s.dtype.kind == "f"
    )


def _script(tmp: Path, name: str, config: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    """Start the worker script; its output goes to NAME.log (a file: a pipe nobody reads while
    waiting for several processes could fill up and block them)."""
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = tmp / f"{name}.log"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.log = log  # type: ignore[attr-defined]
    return process


def _finish(process: Any) -> tuple[int, str]:
    process.wait()
    out = process.log.read_text(encoding="utf-8", errors="replace")
    print(out)
    return process.returncode, out


# ------------------------------------------------------------------------------ without TensorFlow


def test_tf_config_roles_and_messages(tmp_path: Path) -> None:
    from ghostspec.train.distribute import Cluster, read_tf_config, worker_folder

    two = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    cluster = read_tf_config(json.dumps(two))
    assert cluster == Cluster("worker", 1, 2) and not cluster.chief
    assert read_tf_config(json.dumps({**two, "task": {"type": "worker", "index": 0}})).chief
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker"}}
    with_chief["task"]["index"] = 0
    assert not read_tf_config(json.dumps(with_chief)).chief  # the chief task is the chief
    for text, words in (
        ("{not json", "is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', '"cluster" mapping'),
        ('{"cluster": {"worker": ["a:1"]}}', '"task"'),
        (json.dumps({**two, "task": {"type": "worker", "index": 2}}), "out of range"),
    ):
        with pytest.raises(SpecError) as err:
            read_tf_config(text)
        assert words in str(err.value), str(err.value)
    # a worker's copy of the run: the same place on every start, one per worker and run folder
    run = tmp_path / "run"
    assert worker_folder(run, cluster) == worker_folder(run, cluster)
    assert worker_folder(run, cluster) != worker_folder(run, Cluster("worker", 2, 3))
    assert worker_folder(run, cluster) != worker_folder(tmp_path / "other", cluster)


def test_batch_must_divide_over_the_replicas() -> None:
    from ghostspec.train.distribute import check_batch

    check_batch(16, 2, "r.yaml")
    with pytest.raises(SpecError) as err:
        check_batch(15, 2, "r.yaml")
    text = str(err.value)
    assert "15 does not divide evenly over 2 replicas" in text and "14 or 16" in text


def test_multiworker_needs_tf_config_and_a_named_run_folder(
    spec: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    args = ["train", str(spec), "--data", str(data), "--strategy", "multiworker"]
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.run([*args, "-o", str(tmp_path / "run")]) == 2
    assert "needs the TF_CONFIG environment variable" in capsys.readouterr().err
    two = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert cli.run(args) == 2
    assert "-o RUN_DIR" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_teacher_problems_are_reported_before_training(
    spec: Path, data: Path, tmp_path: Path, capsys: Any
) -> None:
    import ghostspec

    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(data), "-o", str(out)]
    assert cli.run([*args, *_hp("distill={teacher: nowhere.keras}")]) == 2
    err = capsys.readouterr().err
    assert "distill.teacher: the teacher nowhere.keras is not a file" in err
    ten = tmp_path / "ten.yaml"
    ten.write_text(TINY.replace("classes: 4", "classes: 10"), encoding="utf-8")
    weights = tmp_path / "ten.npz"
    np.savez(weights, **ghostspec.export_state_dict(ghostspec.build(ten)))
    teacher = f"distill={{teacher: {{spec: {ten}, weights: {weights}}}}}"
    assert cli.run([*args, *_hp(teacher)]) == 2
    err = capsys.readouterr().err
    assert "has 10 classifier outputs; the data has 4 classes" in err
    assert not out.exists()


# ------------------------------------------------------------------------------ mixed precision


def test_mixed_float16_is_refused_on_a_cpu(
    spec: Path, data: Path, tmp_path: Path, capsys: Any
) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(data), "-o", str(out)]
    code = cli.run([*args, *_hp("precision=mixed_float16")])
    assert code == 2
    err = capsys.readouterr().err
    assert "mixed_float16 needs a GPU" in err and "precision=mixed_bfloat16" in err
    assert "Traceback" not in err and not out.exists()


def _session(spec: Path, data: Path, tmp: Path, hp: list[str]) -> Any:
    from ghostspec.train import session

    setup = session.prepare(spec, data, hp=[*BASE_HP, *hp], output=tmp / "unused")
    return session._Session(setup, print, sys.stderr)


def _build(session: Any) -> tuple[Any, Any]:
    import keras
    import tensorflow as tf

    train, _, steps = session._datasets(tf, 0, False)
    built = session._build(keras, tf.distribute.get_strategy(), steps, 1, False, train)
    return built, train


def test_mixed_float16_builds_with_loss_scaling(spec: Path, data: Path, tmp_path: Path) -> None:
    """Built on the CPU (not trained: TensorFlow computes float16 there in emulation)."""
    import keras

    built, _ = _build(_session(spec, data, tmp_path, ["precision=mixed_float16"]))
    assert isinstance(built.optimizer, keras.optimizers.LossScaleOptimizer)
    assert built.model.dtype_policy.name == "mixed_float16"
    conv = built.net.get_layer("conv_stem")
    assert (conv.compute_dtype, conv.variable_dtype) == ("float16", "float32")
    bn = built.net.get_layer("bn1")
    assert bn.moving_mean.dtype == bn.moving_variance.dtype == "float32"
    assert built.net.outputs[0].dtype == "float32"  # logits and loss in float32
    assert all(layer.compute_dtype == "float32" for layer in built.twin.layers)


def test_mixed_bfloat16_trains_resumes_and_exports_float32(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A GhostNetV3 spec: its deploy.keras is fused from the float32 best.keras."""
    from ghostspec.deploy import export
    from ghostspec.keras.modelfile import load_model_file
    from ghostspec.train import callbacks, session

    spec = tmp_path / "tiny_v3.yaml"
    spec.write_text(TINY.replace("name: tiny", "name: tiny_v3\nghost: {branches: 2}"))
    seen: dict[str, Any] = {}
    fit = session._Session._fit

    def recording(self: Any, built: Any, *args: Any, **kwargs: Any) -> Any:
        seen["net"] = built.net
        return fit(self, built, *args, **kwargs)

    monkeypatch.setattr(session._Session, "_fit", recording)
    original = callbacks.EpochClock.on_train_batch_end
    steps = {"n": 0}

    def interrupt(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        steps["n"] += 1
        if steps["n"] == STEPS + 2:  # Ctrl-C in the middle of epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", interrupt)
    out = tmp_path / "run"
    hp = _hp(*BASE_HP, "optimizer.lr=0.005", "schedule.warmup_epochs=0", "precision=mixed_bfloat16")
    assert (
        cli.run(["train", str(spec), "--data", str(data), "-o", str(out), "--epochs", "3", *hp])
        == 130
    )
    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", original)
    capsys.readouterr()
    assert cli.run(["train", "--resume", str(out)]) == 0
    assert "resuming" in capsys.readouterr().out

    net = seen["net"]
    conv, bn = net.get_layer("conv_stem"), net.get_layer("bn1")
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    assert bn.dtype_policy.name == "mixed_bfloat16"
    assert bn.moving_mean.dtype == bn.moving_variance.dtype == bn.gamma.dtype == "float32"
    assert net.outputs[0].dtype == "float32"
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])

    best = load_model_file(out / "best.keras").model
    assert {layer.compute_dtype for layer in best.layers} == {"float32"}
    last = load_model_file(out / "last.keras").model
    assert {layer.compute_dtype for layer in last.layers} == {"float32"}
    assert int(last.optimizer.iterations.numpy()) == 3 * STEPS
    deploy = load_model_file(out / "deploy.keras").model
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(deploy(x, training=False), best(x, training=False), atol=1e-4)
    result = export.export(best, "tflite", tmp_path / "best.tflite", input_size=(32, 32), batch=1)
    assert result.parity.max_abs_diff <= export.FP32_TOLERANCE, result.parity


# -------------------------------------------------------------------------------- distillation


def test_distillation_loss_on_one_batch_is_the_formula(
    spec: Path, data: Path, tmp_path: Path
) -> None:
    """A {spec, weights} teacher trained at another size (40x40, resized input); label smoothing
    0.1, weight 0.7, temperature 2: the compiled loss against numpy."""
    import keras
    import tensorflow as tf

    import ghostspec

    teacher_spec = tmp_path / "teacher.yaml"
    teacher_spec.write_text(
        TINY.replace("[32, 32, 3]", "[40, 40, 3]").replace("name: tiny", "name: teacher")
    )
    keras.utils.set_random_seed(5)
    weights = tmp_path / "teacher.npz"
    teacher_model = ghostspec.build(teacher_spec)
    np.savez(weights, **ghostspec.export_state_dict(teacher_model))
    distill = f"distill={{teacher: {{spec: {teacher_spec}, weights: {weights}}}, weight: 0.7, "
    distill += "temperature: 2.0}"
    built, train = _build(_session(spec, data, tmp_path, [distill]))
    model = built.model
    assert len(model.weights) == len(built.net.weights)  # the teacher is not the student's
    x, y = next(iter(train))
    student = np.asarray(model(x, training=False), "float64")
    teacher = np.asarray(teacher_model(tf.image.resize(x, (40, 40)), training=False), "float64")
    got = float(model.compute_loss(x, y, model(x, training=False), training=True))

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    labels = np.asarray(y) * 0.9 + 0.1 / 4
    cross_entropy = -(labels * log_softmax(student)).sum(axis=1)
    p_t, log_q = log_softmax(teacher / 2.0), log_softmax(student / 2.0)
    kl = (np.exp(p_t) * (p_t - log_q)).sum(axis=1)
    expected = float(np.mean(cross_entropy + 0.7 * 2.0**2 * kl))
    assert got == pytest.approx(expected, rel=1e-5)
    plain = float(model.compute_loss(x, y, model(x, training=False), training=False))
    assert plain == pytest.approx(float(np.mean(cross_entropy)), rel=1e-5)  # validation loss

    before = [np.array(w) for w in teacher_model.get_weights()]
    model.fit(train, steps_per_epoch=2, epochs=1, verbose=0)
    for w, b in zip(teacher_model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)  # frozen, BatchNorm statistics too


@pytest.fixture(scope="module")
def trained_teacher(spec: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    args = ["train", str(spec), "--data", str(data), "-o", str(out), "--epochs", "4"]
    hp = _hp(*BASE_HP, "optimizer.lr=0.005", "schedule.warmup_epochs=0", "label_smoothing=0")
    code, _ = _train([*args, *hp])
    assert code == 0
    return out / "best.keras"


def test_distillation_moves_the_student_toward_the_teacher(
    spec: Path, data: Path, trained_teacher: Path, tmp_path: Path
) -> None:
    import ghostspec
    from ghostspec.keras.modelfile import load_model_file

    runs = {}
    for weight in (4.0, 0.0):  # 0: the same run without the distillation term, for comparison
        out = tmp_path / f"w{weight:g}"
        distill = f"distill={{teacher: {trained_teacher}, weight: {weight}, temperature: 2}}"
        hp = _hp(*BASE_HP, "optimizer.lr=0.005", "schedule.warmup_epochs=0", distill)
        args = ["train", str(spec), "--data", str(data), "-o", str(out), "--epochs", "3"]
        code, printed = _train([*args, *hp])
        assert code == 0 and f"distilling from {trained_teacher}" in printed
        runs[weight] = out
    distilled, control = _rows(runs[4.0]), _rows(runs[0.0])
    kl = [float(r["distill"]) for r in distilled]
    assert kl[-1] < 0.7 * kl[0], kl  # the KL to the teacher falls while training
    assert kl[-1] < float(control[-1]["distill"])  # and falls further than labels alone take it
    # (not compared after training in inference mode: after a few steps BatchNorm's moving
    # statistics lag, both models' outputs are then close to uniform, and the KL there is noise)
    # the saved student holds the student only
    student = load_model_file(runs[4.0] / "best.keras").model
    assert len(student.weights) == len(ghostspec.build(spec).weights)


# ----------------------------------------------------------------------------- reproducibility


def test_the_same_seed_gives_the_same_run(spec: Path, data: Path, tmp_path: Path) -> None:
    import h5py

    def checkpoint(run: Path) -> dict[str, np.ndarray]:
        (path,) = (run / "state").glob("epoch-*.weights.h5")
        found: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda n, item: (
                    found.__setitem__(n, np.array(item)) if isinstance(item, h5py.Dataset) else None
                )
            )
        return found

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        hp = _hp(*BASE_HP, "augment.randaugment={layers: 1}", "augment.erasing=0.25")
        code, _ = _train(
            ["train", str(spec), "--data", str(data), "-o", str(out), "--epochs", "2", *hp]
        )
        assert code == 0
        runs.append(out)
    rows_a, rows_b = _rows(runs[0]), _rows(runs[1])
    assert len(rows_a) == 2
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {k: v for k, v in ra.items() if k not in TIMING} == {
            k: v for k, v in rb.items() if k not in TIMING
        }
    a, b = checkpoint(runs[0]), checkpoint(runs[1])
    assert a.keys() == b.keys() and len(a) > 100
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------------------ strategies


def test_unknown_device_is_named(spec: Path, data: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(data), "-o", str(out), "--devices", "cpu:7"]
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    assert "no device 'cpu:7'" in err and "cpu:0" in err and not out.exists()


def test_mirrored_over_two_cpus_equals_one_device(
    spec: Path, data: Path, random_teacher: Path, tmp_path: Path
) -> None:
    """One epoch (4 steps, the recipe's warm-up to lr 0.05): further on, this tiny network's
    training amplifies float rounding itself (a 1e-7 perturbation of one device's weights grows
    to 1e-4 within 12 steps at lr 0.001), so a longer comparison would measure that instead."""
    base = ["train", str(spec), "--data", str(data), "--epochs", "1", *_hp(*BASE_HP, *SGD)]
    mixed = _hp(f"distill={{teacher: {random_teacher}}}", "precision=mixed_bfloat16")
    mixed_run = str(tmp_path / "mixed")
    config = {
        "cpus": 2,
        "runs": [
            [*base, "--strategy", "one", "-o", str(tmp_path / "one")],
            [*base, "--strategy", "mirrored", "-o", str(tmp_path / "mirrored")],
            # distillation and mixed precision under the strategy: it runs
            [*base, "--strategy", "mirrored", "--devices", "cpu:0,cpu:1", *mixed, "-o", mixed_run],
        ],
        "dumps": [
            str(tmp_path / "one.npz"),
            str(tmp_path / "mirrored.npz"),
            str(tmp_path / "m.npz"),
        ],
    }
    code, out = _finish(_script(tmp_path, "mirrored", config))
    assert code == 0
    assert "(MirroredStrategy, 2 replicas)" in out and "(one device)" in out
    one, mirrored = _arrays(tmp_path / "one.npz"), _arrays(tmp_path / "mirrored.npz")
    start = _arrays(tmp_path / "one.start.npz")
    assert len(one) > 100  # weights, BatchNorm statistics, momentum, EMA, step counter
    assert _moved(start, one) > 0.1  # the runs trained
    worst = _max_diff(one, mirrored)
    print(f"mirrored over 2 CPUs vs one device, 4 steps: max |weight difference| {worst:.2e}")
    assert worst < 1e-5
    assert "distill" in _rows(tmp_path / "mixed")[0]


# --------------------------------------------------------------------------------- two workers


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster(tmp: Path, run: Path, argv: list[str], kill_at: int | None = None) -> list[Any]:
    """Two workers on 127.0.0.1 with free ports, each with a temporary folder of its own."""
    ports = _ports(2)
    processes = []
    for index in range(2):
        temp = tmp / f"tmp{index}"
        temp.mkdir(exist_ok=True)
        config = {"argv": argv, "dump": str(tmp / f"worker{index}.npz")}
        if kill_at is not None and index == 1:
            config["kill_at"] = kill_at
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {"TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(temp)}
        processes.append(_script(tmp, f"worker{index}", config, env))
    return processes


def _finish_all(processes: list[Any]) -> list[tuple[int, str]]:
    """Wait for every worker; when one fails, stop the others (they would wait for it forever
    in their next collective step)."""
    import time

    while any(p.poll() is None for p in processes):
        if any(p.poll() not in (None, 0) for p in processes):
            for p in processes:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    return [_finish(p) for p in processes]


def _copies(temp: Path) -> list[str]:
    """The workers' copies of runs in a temporary folder (Python leaves files of its own there
    when a process is killed)."""
    return [p.name for p in temp.iterdir() if p.name.startswith("ghostspec-")]


def _worker_argv(spec: Path, data: Path, teacher: Path, run: Path) -> list[str]:
    hp = _hp(*BASE_HP, *SGD, f"distill={{teacher: {teacher}, weight: 0.5}}")
    args = ["train", str(spec), "--data", str(data), "-o", str(run), "--epochs", "3"]
    return [*args, "--strategy", "multiworker", *hp]


@pytest.fixture(scope="module")
def two_workers(
    spec: Path, data: Path, random_teacher: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[int, str]]]:
    tmp = tmp_path_factory.mktemp("workers")
    run = tmp / "run"
    processes = _cluster(tmp, run, _worker_argv(spec, data, random_teacher, run))
    return tmp, _finish_all(processes)


def test_two_workers_train_together_and_only_the_chief_writes(
    two_workers: tuple[Path, list[tuple[int, str]]],
) -> None:
    tmp, results = two_workers
    assert [code for code, _ in results] == [0, 0]
    assert "(MultiWorkerMirroredStrategy, 2 replicas)" in results[0][1]
    assert "[worker 1] " in results[1][1] and "[worker 1] " not in results[0][1]
    a, b = _arrays(tmp / "worker0.npz"), _arrays(tmp / "worker1.npz")
    assert _moved(_arrays(tmp / "worker0.start.npz"), a) > 5e-3
    worst = _max_diff(a, b)
    print(f"worker 0 vs worker 1 after 12 steps: max |weight difference| {worst:.2e}")
    assert worst == 0.0
    run = tmp / "run"
    for name in ("spec.yaml", "recipe.yaml", "metrics.csv", "best.keras", "last.keras"):
        assert (run / name).is_file(), name
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2, 3] and "distill" in _rows(run)[0]
    assert _copies(tmp / "tmp1") == []  # the other worker's copy is gone
    assert _copies(tmp / "tmp0") == []


def test_a_killed_worker_restarted_resumes_the_run(
    spec: Path,
    data: Path,
    random_teacher: Path,
    tmp_path: Path,
    two_workers: tuple[Path, list[tuple[int, str]]],
) -> None:
    """Worker 1 dies (SIGKILL) in the middle of epoch 3; worker 0, stuck waiting for it, is
    killed too, as a cluster manager does; both are restarted with --resume. Worker 0 is also
    set back one epoch, as if it had died while saving epoch 2: the workers agree on epoch 1."""
    from ghostspec.train.run import read_state

    run = tmp_path / "run"
    argv = _worker_argv(spec, data, random_teacher, run)
    first = _cluster(tmp_path, run, argv, kill_at=2 * STEPS + 2)
    first[1].wait()
    assert first[1].returncode == -signal.SIGKILL
    first[0].kill()
    _finish(first[0])
    _finish(first[1])
    assert len(_copies(tmp_path / "tmp1")) == 1  # worker 1's copy, kept for the restart
    state = run / "state"
    assert read_state(state / "state.json").epoch == 2
    (state / "epoch-1.json").replace(state / "state.json")
    for name in ("epoch-2.json", "epoch-2.weights.h5"):
        (state / name).unlink()

    resumed = _finish_all(_cluster(tmp_path, run, ["train", "--resume", str(run)]))
    assert [code for code, _ in resumed] == [0, 0]
    assert f"resuming {run} after epoch 1 of 3" in resumed[0][1]
    assert "stepping back to epoch 1" in resumed[1][1]
    a, b = _arrays(tmp_path / "worker0.npz"), _arrays(tmp_path / "worker1.npz")
    assert _max_diff(a, b) == 0.0
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2, 3]
    assert _copies(tmp_path / "tmp1") == []  # kept while the run was unfinished, then removed
    # the same weights as the run that was never interrupted
    uninterrupted = _arrays(two_workers[0] / "worker0.npz")
    worst = _max_diff(a, uninterrupted)
    print(f"resumed vs uninterrupted two-worker run: max |weight difference| {worst:.2e}")
    assert worst < 1e-6
