"""ghostspec train: optimizer and schedule semantics, a tiny run that learns, its run folder,
resume equals uninterrupted, fine-tuning weights, and every bad input.

The data are tests/imagegen.py shapes (32x32, 4 classes). One training run (module fixture)
serves the accuracy, run-folder and metadata tests; the resume test makes two more short runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_shapes

from ghostspec import cli
from ghostspec.diagnostics import SpecError

TINY = """\
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
stem: {filters: 16, kernel: 3, stride: 2}
stages:
  - [[16, 16, 0, 1, 3]]
  - [[48, 24, 0, 2, 3]]
  - [[72, 32, 0.25, 2, 3]]
head: {filters: 64, hidden: 128, dropout: 0.1, classes: 4}
"""

# Settings that learn the shapes within a few epochs on 2 cores: no random crop (the shapes
# fill a 32x32 image), a constant-ish rate without warm-up, small batches for more steps.
FAST = [
    "batch_size=16",
    "optimizer.reference_batch=16",
    "optimizer.lr=0.005",
    "schedule.warmup_epochs=0",
    "augment.crop=null",
    "label_smoothing=0.0",
]
EPOCHS = 4


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=100, size=32)


@pytest.fixture(scope="module")
def trained(
    spec: Path, shapes: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, int]:
    """One CLI run; (run folder, what it printed, exit code)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", str(spec), "--data", str(shapes), "-o", str(out), "--epochs", str(EPOCHS)]
    for hp in FAST:
        args += ["--hp", hp]
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        code = cli.run(args)
    print(stream.getvalue())
    return out, stream.getvalue(), code


# ------------------------------------------------------------------------ optimizer and schedule


def test_schedule_warmup_then_cosine_step_and_constant() -> None:
    from ghostspec.train.optim import WarmupSchedule

    cos = WarmupSchedule("cosine", 0.1, 100, 10, warmup_steps=10, warmup_lr=0.001, min_lr=0.01)
    assert cos.value(0) == pytest.approx(0.001)
    assert cos.value(5) == pytest.approx(0.001 + 0.5 * 0.099)
    assert cos.value(10) == pytest.approx(0.1)
    assert cos.value(55) == pytest.approx(0.01 + 0.09 * 0.5)  # half-way through the decay
    assert cos.value(100) == pytest.approx(0.01)
    step = WarmupSchedule("step", 0.1, 100, 10, warmup_steps=5, decay_rate=0.5, decay_epochs=2.4)
    # the decay counts from the end of the warm-up: floor((t - 5) / 24)
    assert [step.value(t) for t in (5, 28, 29, 53)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    const = WarmupSchedule("constant", 0.1, 100, 10)
    assert const.value(0) == const.value(99) == pytest.approx(0.1)


def test_rmsprop_is_tensorflow_style_with_coupled_weight_decay() -> None:
    import keras

    from ghostspec.train.optim import TFRMSprop

    w = keras.Variable(np.array([1.0, -2.0], "float32"))
    opt = TFRMSprop(learning_rate=0.1, rho=0.9, momentum=0.9, epsilon=1e-3, weight_decay=0.01)
    opt.build([w])
    g = np.array([0.5, 0.25], "float32")
    ref, v, m = np.array([1.0, -2.0]), np.ones(2), np.zeros(2)  # TF1: the mean square starts at 1
    for _ in range(3):
        opt.apply([g], [w])
        grad = g + 0.01 * ref  # L2 in the gradient
        v = 0.9 * v + 0.1 * grad**2
        m = 0.9 * m + 0.1 * grad / np.sqrt(v + 1e-3)  # epsilon inside the square root
        ref = ref - m
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)


def test_sgd_nesterov_with_coupled_weight_decay_matches_pytorch_rule() -> None:
    import keras

    from ghostspec.train.optim import L2SGD

    w = keras.Variable(np.array([1.0, -2.0], "float32"))
    opt = L2SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    opt.build([w])
    g = np.array([0.5, 0.25], "float32")
    ref, buf = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(3):
        opt.apply([g], [w])
        grad = g + 0.01 * ref
        buf = 0.9 * buf + grad  # torch.optim.SGD(nesterov=True, weight_decay=0.01)
        ref = ref - 0.1 * (grad + 0.9 * buf)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize("kind", ["sgd", "rmsprop", "adamw"])
def test_weight_decay_leaves_out_batchnorm_and_biases(spec: Path, kind: str) -> None:
    import ghostspec
    from ghostspec.language.recipe import load_recipe
    from ghostspec.train.optim import decay_exclusions, make_optimizer, make_schedule

    model = ghostspec.build(spec)
    recipe = load_recipe("finetune", [f"optimizer.kind={kind}", "optimizer.weight_decay=0.1"])
    opt = make_optimizer(recipe, model, make_schedule(recipe, 10))
    excluded = {id(v) for v in decay_exclusions(model)}
    names = {v.path for v in model.trainable_variables if id(v) in excluded}
    assert any(n.endswith("/gamma") for n in names) and any(n.endswith("/bias") for n in names)
    assert not any(n.endswith("kernel") for n in names)
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    opt.apply([np.zeros(v.shape, "float32") for v in model.trainable_variables])
    for v, old in zip(model.trainable_variables, before, strict=True):
        moved = not np.array_equal(v.numpy(), old)
        # with zero gradients only the decay moves a weight: kernels shrink, the rest stay
        assert moved == (id(v) not in excluded and bool(np.any(old))), v.path


def test_label_smoothing_loss_is_exact() -> None:
    import keras

    logits = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0]], "float32")
    labels = np.array([0, 2])
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    got = float(loss(np.eye(4)[labels], logits))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.eye(4)[labels] * 0.9 + 0.1 / 4  # (1 - s) * one_hot + s / K
    assert got == pytest.approx(float(-(target * logp).sum(1).mean()), rel=1e-6)


# ------------------------------------------------------------------------------ a training run


def test_training_reaches_well_above_chance(trained: tuple[Path, str, int]) -> None:
    out, printed, code = trained
    assert code == 0
    rows = list(csv.DictReader((out / "metrics.csv").open(encoding="utf-8")))
    best = max(float(r["val_top1"]) for r in rows)
    assert best >= 0.6, rows  # chance is 0.25
    assert f"best val_top1 {best:.4f}" in printed
    assert str(out) in printed


def test_metrics_csv_has_one_row_per_epoch(trained: tuple[Path, str, int]) -> None:
    from ghostspec.train.metrics import COLUMNS

    out, printed, _ = trained
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
        assert tuple(rows[0].keys()) == COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    for r in rows:
        assert all(math.isfinite(float(r[c])) for c in COLUMNS), r
        assert 0.0 <= float(r["val_top1"]) <= float(r["val_top5"]) <= 1.0
    assert float(rows[0]["lr"]) > float(rows[-1]["lr"])  # cosine decay
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert sum(line.startswith("epoch ") for line in printed.splitlines()) == EPOCHS


def test_run_folder_files(trained: tuple[Path, str, int], spec: Path) -> None:
    import ghostspec
    from ghostspec.language.recipe import load_recipe

    out, _, _ = trained
    for name in ("spec.yaml", "recipe.yaml", "classes.json", "metrics.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "classes.json").read_text()) == [
        "circle",
        "square",
        "stripes",
        "triangle",
    ]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((out / "logs" / "validation").glob("events.out.tfevents.*"))
    # the resolved documents reproduce the run on their own
    assert ghostspec.plan(out / "spec.yaml") == ghostspec.plan(spec)
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.epochs == EPOCHS and recipe.batch_size == 16 and recipe.augment.crop is None
    assert not list(out.rglob(".*.tmp*"))  # no temporary files left behind
    assert [p.name for p in (out / "state").iterdir()] != []


def test_best_keras_carries_metadata_and_its_accuracy(
    trained: tuple[Path, str, int], shapes: Path
) -> None:
    from ghostspec.data.pipeline import discover, eval_dataset
    from ghostspec.keras.modelfile import load_model_file

    out, _, _ = trained
    loaded = load_model_file(out / "best.keras")
    meta = loaded.metadata
    assert meta is not None
    assert meta.classes == ("circle", "square", "stripes", "triangle")
    assert meta.input_size == (32, 32) and meta.crop_pct == pytest.approx(0.875)
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406))
    assert meta.spec is not None and "name: tiny" in meta.spec
    # best.keras is the epoch with the best val_top1: evaluating it gives that figure
    rows = list(csv.DictReader((out / "metrics.csv").open(encoding="utf-8")))
    best = max(float(r["val_top1"]) for r in rows)
    folder = discover(shapes)
    ds = eval_dataset(
        folder.splits["val"],
        size=(32, 32),
        channels=3,
        mean=meta.mean,
        std=meta.std,
        crop_pct=0.875,
        batch=64,
    )
    hits = total = 0
    for x, y in ds:
        pred = np.argmax(np.asarray(loaded.model(x, training=False)), axis=1)
        hits += int((pred == y.numpy()).sum())
        total += len(pred)
    assert hits / total == pytest.approx(best, abs=1e-6)


def test_last_keras_holds_the_optimizer_state(trained: tuple[Path, str, int]) -> None:
    from ghostspec.keras.modelfile import load_model_file

    out, _, _ = trained
    model = load_model_file(out / "last.keras").model
    steps = (4 * 75) // 16  # 75 training images per class
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * steps
    assert len(model.optimizer.variables) > len(model.trainable_variables)


# ------------------------------------------------------------------------------------- resume


def _resume_recipe(tmp: Path) -> Path:
    path = tmp / "resume.recipe.yaml"
    path.write_text(
        "ghostspec-recipe: 1\n"
        "epochs: 3\n"
        "batch_size: 16\n"
        "optimizer: {kind: rmsprop, lr: 0.01, reference_batch: 16, nesterov: false}\n"
        "schedule: {kind: step, decay_rate: 0.5, decay_epochs: 1, warmup_epochs: 0.5}\n"
        "augment: {crop: {scale: [0.5, 1.0]}, flip: true, randaugment: {layers: 1},"
        " erasing: 0.25}\n"
        "ema: {decay: 0.9}\n"
        "deterministic: true\n"
        "seed: 3\n",
        encoding="utf-8",
    )
    return path


def _checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    import h5py

    (checkpoint,) = (run / "state").glob("epoch-*.weights.h5")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(checkpoint, "r") as f:
        f.visititems(
            lambda name, item: (
                arrays.__setitem__(name, np.array(item)) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def test_resume_equals_uninterrupted(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from ghostspec.train import callbacks

    data = make_shapes(tmp_path / "data", classes=4, per_class=24, size=32, seed=1)
    recipe = _resume_recipe(tmp_path)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    base = ["train", str(spec), "--data", str(data), "--recipe", str(recipe)]
    assert cli.run([*base, "-o", str(whole)]) == 0

    # Ctrl-C in the middle of the second epoch
    original = callbacks.EpochClock.on_train_batch_end
    seen = {"steps": 0}

    def interrupt(self: object, batch: int, logs: object = None) -> None:
        original(self, batch, logs)  # type: ignore[arg-type]
        seen["steps"] += 1
        if seen["steps"] == 4 + 2:  # 4 steps per epoch: 72 training images, batches of 16
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", interrupt)
    capsys.readouterr()
    assert cli.run([*base, "-o", str(parts)]) == 130
    err = capsys.readouterr().err
    assert f"resume with: ghostspec train --resume {parts}" in err
    assert len(list(csv.reader((parts / "metrics.csv").open()))) == 1 + 1  # header + epoch 1
    monkeypatch.setattr(callbacks.EpochClock, "on_train_batch_end", original)
    assert cli.run(["train", "--resume", str(parts)]) == 0

    a, b = _checkpoint_arrays(whole), _checkpoint_arrays(parts)
    assert a.keys() == b.keys() and len(a) > 100  # weights, BN statistics, slots, EMA, step
    worst = max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)
    assert worst <= 1e-6, worst
    rows_a = list(csv.DictReader((whole / "metrics.csv").open()))
    rows_b = list(csv.DictReader((parts / "metrics.csv").open()))
    assert len(rows_a) == len(rows_b) == 3
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("lr", "loss", "top1", "val_loss", "val_top1"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-5), key


def test_resume_refuses_a_finished_run_and_changed_settings(
    trained: tuple[Path, str, int], capsys: pytest.CaptureFixture
) -> None:
    out, _, _ = trained
    capsys.readouterr()
    assert cli.run(["train", "--resume", str(out)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli.run(["train", "--resume", str(out), "--epochs", "9"]) == 2
    assert "cannot change them" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- weights


def test_weights_with_another_class_count_reinitialise_the_classifier(
    spec: Path, shapes: Path, tmp_path: Path
) -> None:
    import ghostspec
    from ghostspec.keras.weights import load_weights
    from ghostspec.train import prepare

    ten = ghostspec.build(spec, ["head.classes=10"])
    state = ghostspec.export_state_dict(ten)
    path = tmp_path / "ten.npz"
    np.savez(path, **state)
    setup = prepare(spec, shapes, weights=path, output=tmp_path / "run")
    assert setup.skip == ("classifier.weight", "classifier.bias")
    assert "re-initialised" in setup.notes[0] and "classifier.weight" in setup.notes[0]
    assert "10 classes" in setup.notes[0] and "4 here" in setup.notes[0]
    model = ghostspec.build(spec)
    head = np.array(model.get_layer("classifier").kernel.numpy())
    load_weights(model, setup.plan, state, skip=setup.skip)
    np.testing.assert_array_equal(
        model.get_layer("conv_stem").kernel.numpy(), ten.get_layer("conv_stem").kernel.numpy()
    )
    np.testing.assert_array_equal(model.get_layer("classifier").kernel.numpy(), head)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- bad input


def _bad(args: list[str], capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert cli.run(args) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_bad_data_folders(spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    train = ["train", str(spec), "-o", str(out), "--data"]
    assert "does not exist" in _bad([*train, str(tmp_path / "nowhere")], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no class folders" in _bad([*train, str(empty)], capsys)
    one = make_shapes(tmp_path / "one", classes=2, per_class=8, layout="flat")
    for child in list((one / "square").iterdir()):
        child.unlink()
    (one / "square").rmdir()
    assert "only one class" in _bad([*train, str(one)], capsys)
    differ = make_shapes(tmp_path / "differ", classes=3, per_class=8)
    (differ / "val" / "triangle").rename(differ / "val" / "hexagon")
    assert "differ from train/" in _bad([*train, str(differ)], capsys)
    assert not out.exists()


def test_class_count_mismatch_names_the_fix(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_shapes(tmp_path / "three", classes=3, per_class=8)
    out = tmp_path / "run"
    err = _bad(["train", str(spec), "--data", str(data), "-o", str(out)], capsys)
    assert "head.classes: the classifier has 4 outputs" in err and "3 classes" in err
    assert "--set head.classes=3" in err
    assert f"{spec}:9:57:" in err  # located on head.classes in the spec file
    assert not out.exists()


def test_unwritable_run_folder(
    spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    err = _bad(["train", str(spec), "--data", str(shapes), "-o", str(blocker / "run")], capsys)
    assert "is a file, not a folder" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("x")
    err = _bad(["train", str(spec), "--data", str(shapes), "-o", str(taken)], capsys)
    assert "already exists and is not empty" in err
    assert [p.name for p in taken.iterdir()] == ["something"]


def test_resume_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "no such run folder" in _bad(["train", "--resume", str(tmp_path / "x")], capsys)
    (tmp_path / "spec.yaml").write_text("ghostspec: 1\n")
    err = _bad(["train", "--resume", str(tmp_path)], capsys)
    assert "not a run folder" in err and "state/state.json" in err


def test_recipe_that_does_not_validate(
    spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(shapes), "-o", str(out)]
    err = _bad([*args, "--hp", "optimizer.kind=adam"], capsys)
    assert "optimizer.kind" in err and "--hp optimizer.kind=adam" in err
    recipe = tmp_path / "bad.recipe.yaml"
    recipe.write_text("ghostspec-recipe: 1\nepochs: 0\n")
    err = _bad([*args, "--recipe", str(recipe)], capsys)
    assert f"{recipe}:2:" in err and "epochs" in err
    assert not out.exists()


def test_missing_spec_or_data(capsys: pytest.CaptureFixture, shapes: Path, spec: Path) -> None:
    assert "name the spec" in _bad(["train", "--data", str(shapes)], capsys)
    assert "--data DIR" in _bad(["train", str(spec)], capsys)
    with pytest.raises(SpecError):
        from ghostspec.train import prepare

        prepare(spec, shapes, hp=["batch_size=0"])


def test_ghostnetv3_run_writes_the_fused_deploy_model(tmp_path: Path) -> None:
    from ghostspec.keras.modelfile import load_model_file

    spec = tmp_path / "tiny_v3.yaml"
    spec.write_text(TINY.replace("name: tiny", "name: tiny_v3\nghost: {branches: 2}"))
    data = make_shapes(tmp_path / "data", classes=4, per_class=16, size=32)
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(data), "-o", str(out), "--epochs", "1"]
    assert cli.run([*args, "--batch-size", "16", "--hp", "optimizer.reference_batch=16"]) == 0
    best, deploy = load_model_file(out / "best.keras"), load_model_file(out / "deploy.keras")
    assert any("_rpr_" in layer.name for layer in best.model.layers)
    assert not any("_rpr_" in layer.name for layer in deploy.model.layers)
    assert deploy.metadata == best.metadata
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(deploy.model(x, training=False)),
        np.asarray(best.model(x, training=False)),
        atol=1e-4,
    )


def test_early_stopping_counts_epochs_without_improvement() -> None:
    from ghostspec.train.callbacks import Stopping

    top1 = Stopping("val_top1", patience=2, min_delta=0.01)
    assert top1.improved(0.5, None) and top1.improved(0.52, 0.5)
    assert not top1.improved(0.505, 0.5)  # within min_delta
    loss = Stopping("val_loss", patience=2, min_delta=0.0)
    assert loss.improved(0.9, 1.0) and not loss.improved(1.1, 1.0)


def test_ema_values_and_exact_restore(spec: Path) -> None:
    import ghostspec
    from ghostspec.language.recipe import load_recipe
    from ghostspec.train.callbacks import ema_pairs, ema_weights, model_values
    from ghostspec.train.optim import make_optimizer, make_schedule

    model = ghostspec.build(spec)
    recipe = load_recipe("finetune", ["ema.decay=0.5"])
    opt = make_optimizer(recipe, model, make_schedule(recipe, 10))
    rng = np.random.default_rng(0)
    for _ in range(3):
        opt.apply([rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables])
    raw = [np.array(w.numpy()) for w in model.weights]
    averages = {id(v): np.array(a.numpy()) for v, a in ema_pairs(opt)}
    values = model_values(model, opt, ema=True)
    for w, value, before in zip(model.weights, values, raw, strict=True):
        expected = averages.get(id(w), before)  # BatchNorm statistics are not averaged
        np.testing.assert_array_equal(value, expected)
    assert any(not np.array_equal(averages[id(v)], v.numpy()) for v, _ in ema_pairs(opt))
    with ema_weights(opt):
        for v, _ in ema_pairs(opt):
            np.testing.assert_array_equal(v.numpy(), averages[id(v)])
    for w, before in zip(model.weights, raw, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)  # restored bit for bit


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_parent_folder(
    spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _bad(["train", str(spec), "--data", str(shapes), "-o", str(locked / "run")], capsys)
        assert "is not writable" in err
    finally:
        locked.chmod(0o700)


def test_fused_batch_norm_is_keras_batch_norm(spec: Path) -> None:
    import keras
    import tensorflow as tf

    import ghostspec
    from ghostspec.train.fastbn import fuse_batch_norm_for_training

    plain = ghostspec.build(spec, ["head.dropout=0.0"])
    fused = ghostspec.build(spec, ["head.dropout=0.0"])
    fused.set_weights(plain.get_weights())
    bn = [layer for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert fuse_batch_norm_for_training(fused) == len(bn) > 10
    x = tf.constant(np.random.default_rng(0).normal(size=(8, 32, 32, 3)) * 3 + 1, tf.float32)

    def step(model: keras.Model) -> tuple[np.ndarray, list[np.ndarray]]:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_sum(out * tf.range(4, dtype=tf.float32))
        return out.numpy(), [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    (out_a, grads_a), (out_b, grads_b) = step(plain), step(fused)
    np.testing.assert_allclose(out_b, out_a, atol=1e-5)
    scale = max(float(np.abs(g).max()) for g in grads_a)
    for a, b in zip(grads_a, grads_b, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4 * scale)
    for a, b in zip(plain.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)  # moving statistics updated alike
    # inference (on statistics that differ by rounding), the layer's class and config: Keras'
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-6)
    assert [type(layer) for layer in fused.layers] == [type(layer) for layer in plain.layers]
    assert fused.get_config() == plain.get_config()


def test_bad_input_is_reported_before_tensorflow_loads(tmp_path: Path) -> None:
    from isolation import assert_imports_no_framework

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    assert_imports_no_framework(
        "import sys\n"
        "from ghostspec import cli\n"
        f"code = cli.run(['train', {str(spec)!r}, '--data', {str(tmp_path / 'none')!r}])\n"
        "assert code == 2, code\n"
    )
