"""export from a run folder: best.keras with its metadata (preprocessing, classes, the deploy form
from its spec), calibration on image folders in the training layouts, and the int8 model's top-1
against the float model's on the validation images, checked against a direct computation.

One short training run (module fixture, tests/imagegen.py shapes) gives the run folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imagegen import make_shapes

import ghostspec
from ghostspec import cli
from ghostspec.data import pipeline as data
from ghostspec.deploy.calibration import calibration_images
from ghostspec.deploy.source import load_saved, saved_source
from ghostspec.diagnostics import SpecError
from ghostspec.keras.modelfile import ModelMetadata, load_model_file, save_model_file

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
FAST = [
    "batch_size=16",
    "optimizer.reference_batch=16",
    "optimizer.lr=0.005",
    "schedule.warmup_epochs=0",
    "augment.crop=null",
    "label_smoothing=0.0",
    "epochs=3",
]
V3 = """\
ghostspec: 1
name: v3
input: {shape: [32, 32, 3]}
width: 0.25
ghost: {attention: dfc, attention_from: 1, branches: 3}
stages: [[[16, 16, 0, 1, 3], [48, 24, 0.25, 2, 5]], [[72, 24, 0, 1, 3]]]
head: {filters: 64, hidden: 32, classes: 4}
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 45 train and 15 val images a class
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=60)


@pytest.fixture(scope="module")
def run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ghostspec.train import train

    base = tmp_path_factory.mktemp("run")
    spec = base / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    out = base / "runs" / "tiny-1"
    train(spec, shapes, hp=FAST, output=out, echo=lambda line: None)
    return out


def _val_tensors(root: Path, meta: ModelMetadata, **split: Any) -> tuple[np.ndarray, np.ndarray]:
    """The val images of `root` through the evaluation preprocessing, as numpy arrays."""
    samples = data.discover(root, **split).splits["val"]
    assert meta.mean and meta.std and meta.crop_pct
    ds = data.eval_dataset(
        samples,
        size=32,
        channels=3,
        mean=meta.mean,
        std=meta.std,
        crop_pct=meta.crop_pct,
        batch=1000,
    )
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


def _direct_top1(run: Path, tflite: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(int8 top-1, float top-1) by hand: the TFLite file and the Keras model on `x`."""
    from ghostspec.deploy.tflite import run_tflite

    model = load_model_file(run / "best.keras", compile=False).model
    float_top1 = float(np.mean(np.asarray(model(x, training=False)).argmax(1) == y))
    int8_top1 = float(np.mean(run_tflite(tflite.read_bytes(), x).argmax(1) == y))
    return int8_top1, float_top1


# ------------------------------------------------------------------------ the deploy form


def test_a_run_folder_exports_its_fused_best_model_with_fp32_parity(
    run: Path, tmp_path: Path, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = saved_source(str(run))
    assert saved is not None and saved.path == run / "best.keras"
    loaded = load_saved(saved, fuse=True)
    meta = load_model_file(run / "best.keras", compile=False).metadata
    assert meta is not None and meta.spec
    # the spec in the metadata gives the deploy form: no BatchNorm left, same function
    kinds = {type(layer).__name__ for layer in loaded.model.layers}
    assert loaded.fused and "BatchNormalization" not in kinds
    assert "BatchNormalization" in {type(layer).__name__ for layer in loaded.reference.layers}
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    diff = np.abs(np.asarray(loaded.model(x)) - np.asarray(loaded.reference(x))).max()
    assert diff < 1e-4
    # preprocessing and classes come from the metadata
    assert loaded.preprocessing.mean == meta.mean and loaded.preprocessing.std == meta.std
    assert loaded.preprocessing.crop_pct == meta.crop_pct
    assert loaded.classes == ("circle", "square", "stripes", "triangle") == meta.classes
    # the command: the default name follows the run, parity within the fp32 limit
    monkeypatch.chdir(tmp_path)
    assert cli.run(["export", str(run), "--to", "tflite", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == "tiny-1.tflite" and Path("tiny-1.tflite").is_file()
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["int8_accuracy"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-1.tflite", "tiny-1.tflite.json"]


def test_a_ghostnetv3_model_is_fused_by_the_spec_in_its_metadata(tmp_path: Path) -> None:
    spec = ghostspec.load("v3.yaml", text=V3)
    model = ghostspec.build(spec)
    with_spec = tmp_path / "with_spec.keras"
    save_model_file(model, with_spec, ModelMetadata(spec=V3, input_size=(32, 32)))
    loaded = load_saved(saved_source(str(with_spec)), fuse=True)  # type: ignore[arg-type]
    assert loaded.fused and not any("_rpr_" in layer.name for layer in loaded.model.layers)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = np.asarray(loaded.reference(x, training=False))
    diff = np.abs(np.asarray(loaded.model(x, training=False)) - expected).max()
    assert diff <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    # without a spec in the metadata the branches cannot be fused: a message, not a guess
    bare = tmp_path / "bare.keras"
    save_model_file(model, bare, ModelMetadata(classes=("a", "b", "c", "d")))
    with pytest.raises(SpecError, match="fusing them needs the spec"):
        load_saved(saved_source(str(bare)), fuse=True)  # type: ignore[arg-type]
    assert not load_saved(saved_source(str(bare)), fuse=False).fused  # type: ignore[arg-type]
    # a spec that does not describe the model is refused rather than fused wrongly
    other = tmp_path / "other.keras"
    save_model_file(model, other, ModelMetadata(spec=V3.replace("classes: 4", "classes: 9")))
    with pytest.raises(SpecError, match="does not describe this model"):
        load_saved(saved_source(str(other)), fuse=True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ int8 accuracy


def test_int8_accuracy_line_equals_a_direct_computation(
    run: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.tflite"
    argv = ["export", str(run), "--to", "tflite", "--quantize", "int8", "-o", str(out)]
    assert cli.run([*argv, "--calibration", str(shapes)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    # a split folder: calibrated on its train/ images (all 180: fewer than the default 200)
    assert f"calibrated on 180 of 180 images in {shapes}" in printed
    assert "parity with Keras: max |diff|" in printed
    found = re.search(
        r"int8 top-1 (\d\.\d{3}) vs float (\d\.\d{3}) on (\d+) val images of (.+) \(([+-]\d+\.\d) "
        r"points\)",
        printed,
    )
    assert found, printed
    int8_top1, float_top1, count = float(found[1]), float(found[2]), int(found[3])
    meta = load_model_file(run / "best.keras", compile=False).metadata
    assert meta is not None
    x, y = _val_tensors(shapes, meta)
    direct_int8, direct_float = _direct_top1(run, out, x, y)
    assert count == len(y) == 60 and found[4] == str(shapes)
    assert int8_top1 == pytest.approx(direct_int8, abs=5e-4)
    assert float_top1 == pytest.approx(direct_float, abs=5e-4)
    assert float(found[5]) == pytest.approx((direct_int8 - direct_float) * 100, abs=0.051)
    assert direct_float > 0.35  # the run learned something (chance is 0.25): a real comparison


def test_json_report_for_a_flat_class_folder_with_a_bounded_calibration(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = make_shapes(tmp_path / "flat", classes=4, per_class=20, layout="flat", seed=5)
    out = tmp_path / "q.tflite"
    argv = ["export", str(run), "--to", "tflite", "--quantize", "int8", "-o", str(out)]
    argv += ["--calibration", str(flat), "--calibration-samples", "24", "--format", "json"]
    assert cli.run(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration"] == {"source": str(flat), "images": 24, "available": 64}
    accuracy = report["int8_accuracy"]
    assert accuracy["data"] == str(flat) and accuracy["split"] == "val"
    assert accuracy["held_out"] == "a 0.2 share held out with seed 0"
    meta = load_model_file(run / "best.keras", compile=False).metadata
    assert meta is not None
    x, y = _val_tensors(flat, meta)
    direct_int8, direct_float = _direct_top1(run, out, x, y)
    assert accuracy["images"] == len(y) == 16
    assert accuracy["int8_top1"] == pytest.approx(direct_int8, abs=1e-12)
    assert accuracy["float_top1"] == pytest.approx(direct_float, abs=1e-12)
    assert accuracy["top1_points"] == pytest.approx((direct_int8 - direct_float) * 100)
    assert 0.0 <= accuracy["agreement"] <= 1.0 and accuracy["int8_top5"] == 1.0  # 4 classes


# ------------------------------------------------------------------------ calibration images


def test_calibration_images_from_each_layout(shapes: Path, tmp_path: Path) -> None:
    split = calibration_images(shapes)
    assert split.labelled and split.available == len(split.files) == 180
    assert all(p.parent.parent == shapes / "train" for p in split.files)
    drawn = calibration_images(shapes, samples=20, seed=3)
    assert len(drawn.files) == 20 and set(drawn.files) <= set(split.files)
    assert drawn == calibration_images(shapes, samples=20, seed=3)  # seeded
    assert drawn.files != calibration_images(shapes, samples=20, seed=4).files
    # DIR/<class>/*: the train part of the seeded split, never the val images
    flat = make_shapes(tmp_path / "flat", classes=3, per_class=10, layout="flat")
    chosen = calibration_images(flat, seed=1)
    val = {s.path for s in data.discover(flat, seed=1).splits["val"]}
    assert chosen.labelled and len(chosen.files) == 24 and not val & set(chosen.files)
    # a folder of images without classes
    plain = calibration_images(flat / "circle", samples=4)
    assert not plain.labelled and len(plain.files) == 4 and plain.available == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="no images"):
        calibration_images(tmp_path / "empty")
    with pytest.raises(SpecError, match="neither a folder nor random:N"):
        calibration_images(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not an image")
    with pytest.raises(SpecError, match=r"bad\.png"):
        calibration_images(broken)


# ------------------------------------------------------------------------ bad input


def test_a_folder_that_is_not_a_run(
    tmp_path: Path, shapes: Path, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.run(["export", str(shapes), "--to", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "is not a run folder: it has no best.keras" in err and "Traceback" not in err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "best.keras").write_bytes(b"not a zip")
    assert cli.run(["export", str(damaged), "--to", "tflite"]) == 2
    assert "not a zip archive" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]  # nothing written


def test_arguments_are_checked_before_any_work(
    run: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "m.tflite")]
    cases = [
        (["--eval-data", str(shapes)], "--eval-data: error: is only used with --quantize int8"),
        (["--quantize", "int8", "--calibration-samples", "5"], "random:N gives its own count"),
        (["--quantize", "int8", "--calibration-samples", "0"], "must be at least 1"),
        (["--quantize", "int8", "--eval-data", str(tmp_path / "no")], "does not exist"),
    ]
    for extra, message in cases:
        assert cli.run(["export", str(run), "--to", "tflite", *out, *extra]) == 2
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_class_mismatch_between_model_and_data(
    run: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    six = make_shapes(tmp_path / "six", classes=6, per_class=4)
    out = tmp_path / "m.tflite"
    argv = ["export", str(run), "--to", "tflite", "--quantize", "int8", "-o", str(out)]
    assert cli.run([*argv, "--calibration", str(shapes), "--eval-data", str(six)]) == 2
    err = capsys.readouterr().err
    assert f"--eval-data {six}: error: the data has classes the model was not trained on" in err
    assert "'cross', 'ring'" in err and "the model knows 'circle'" in err
    # a model without class names: the counts are compared
    model = load_model_file(run / "best.keras", compile=False).model
    nameless = tmp_path / "nameless.keras"
    save_model_file(model, nameless, ModelMetadata(mean=(0.5,) * 3, std=(0.25,) * 3))
    argv[1] = str(nameless)
    assert cli.run([*argv, "--calibration", str(six)]) == 2
    assert "the data has 6 classes but the model has 4 outputs" in capsys.readouterr().err
    assert not out.exists()
