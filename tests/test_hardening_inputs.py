"""Hardening of the inputs of train and evaluate (issue 17: items 1, 5, 7, 8 and 9): no output
inside an input, TF_CONFIG and a recipe's input size checked like a spec, images TensorFlow
cannot read decoded by Pillow, classes a split lacks named, backbones refused by evaluate, a
run evaluated on its own validation split, a built GhostNetV3 exported.

Each case asserts the exit code, the message and the files before and after. One tiny training
run on a plain DIR/<class>/* folder (module fixture) serves the evaluate cases.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imagegen import make_shapes
from PIL import Image

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
head: {filters: 64, hidden: 128, dropout: 0.1, classes: 4}
"""
V3 = """\
ghostspec: 1
name: v3
input: {shape: [32, 32, 3]}
width: 0.25
ghost: {attention: dfc, attention_from: 1, branches: 3}
stages: [[[16, 16, 0, 1, 3], [48, 24, 0.25, 2, 5]], [[72, 24, 0, 1, 3]]]
head: {filters: 64, hidden: 32, classes: 4}
"""
FAST = [
    "batch_size=16",
    "optimizer.reference_batch=16",
    "optimizer.lr=0.005",
    "schedule.warmup_epochs=0",
    "augment.crop=null",
    "seed=7",  # a split that evaluate's own default (seed 0) would not draw
]


def error_text(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.err + captured.out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes in a plain folder; `stripes` has a single image, so it has no val image."""
    root = make_shapes(tmp_path_factory.mktemp("flat"), classes=4, per_class=24, layout="flat")
    for extra in sorted((root / "stripes").iterdir())[1:]:
        extra.unlink()
    return root


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(spec: Path, flat: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 2-epoch run on the flat folder: the run folder, its output, warnings, exit code."""
    run = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", str(spec), "--data", str(flat), "-o", str(run), "--epochs", "2"]
    for hp in FAST:
        args += ["--hp", hp]
    records = Records()
    logging.getLogger("ghostspec").addHandler(records)
    stream = io.StringIO()
    try:
        with contextlib.redirect_stdout(stream):
            code = cli.run(args)
    finally:
        logging.getLogger("ghostspec").removeHandler(records)
    return {"run": run, "out": stream.getvalue(), "warnings": records.lines, "code": code}


# ------------------------------------------------------------------- 1. no output inside an input


def test_a_confusion_matrix_never_goes_over_an_image_or_into_the_run(
    trained: dict[str, Any], flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained["run"]
    assert trained["code"] == 0, trained["out"]
    image = sorted((flat / "circle").iterdir())[0]
    link = tmp_path / "picture.png"
    link.symlink_to(image)  # the same image under other names, outside the folder
    hard = tmp_path / "hard.png"
    os.link(image, hard)
    data_before, run_before = snapshot(flat), snapshot(run)
    base = ["evaluate", str(run), "--data", str(flat)]
    for target, words in (
        (image, "is inside the input folder"),
        (run / "curves.png", "is inside the input folder"),
        (link, "is inside the input folder"),  # where the link leads
        (hard, "the same file as the input"),  # by inode: one of the images it reads
    ):
        assert cli.run([*base, "--confusion", str(target)]) == 2, target
        err = error_text(capsys)
        assert words in err and "Traceback" not in err, err
    assert snapshot(flat) == data_before and snapshot(run) == run_before
    assert link.is_symlink() and link.resolve() == image.resolve()


def test_a_run_folder_inside_the_image_folder_is_refused(
    spec: Path, flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(flat)
    alias = tmp_path / "alias"
    alias.symlink_to(flat)
    for output in (flat / "runs" / "sub", alias / "sub", flat / "circle" / "run"):
        argv = ["train", str(spec), "--data", str(flat), "-o", str(output), "--epochs", "1"]
        assert cli.run(argv) == 2, output
        err = error_text(capsys)
        assert "the run folder is" in err and "input folder" in err, err
        assert "would become a class of the next training" in err
    assert snapshot(flat) == before and sorted(p.name for p in flat.iterdir()) == [
        "circle",
        "square",
        "stripes",
        "triangle",
    ]


def test_an_artifact_inside_the_calibration_folder_is_refused(
    spec: Path, flat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(flat)
    argv = ["export", str(spec), "--to", "tflite", "--quantize", "int8", "--calibration"]
    assert cli.run([*argv, str(flat), "-o", str(flat / "m.tflite")]) == 2
    assert "is inside the input folder" in error_text(capsys)
    assert snapshot(flat) == before


# ------------------------------------------------------------- 5. TF_CONFIG and the input size


def test_tf_config_is_validated_as_a_document(
    spec: Path, flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = tmp_path / "run"
    argv = ["train", str(spec), "--data", str(flat), "--strategy", "multiworker", "-o", str(run)]
    task = {"type": "worker", "index": 0}
    cases = [
        ({"cluster": {"chief": 3, "worker": ["a:1"]}, "task": task}, "cluster.chief", "a list"),
        (
            {"cluster": {"worker": ["a:1"]}, "task": {"type": ["worker"], "index": 0}},
            "task.type",
            "expected a string, got a list",
        ),
        (
            {"cluster": {"worker": [f"h{i}:1" for i in range(10_000)]}, "task": task},
            "cluster.worker",
            "10,000 chief and worker tasks; ghostspec allows at most 1,024",
        ),
        (
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}},
            "task.type",
            "an evaluator task would train alone and keep nothing",
        ),
        ({"cluster": {"worker": ["a:1", "b"]}, "task": task}, "cluster.worker[1]", "host:port"),
    ]
    for config, path, words in cases:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        start = time.monotonic()
        assert cli.run(argv) == 2, config
        assert time.monotonic() - start < 10  # refused before TensorFlow starts
        err = error_text(capsys)
        assert "TF_CONFIG:1:" in err or "TF_CONFIG: error" in err, err
        assert f"error: {path}: " in err and words in err, err
        assert "Traceback" not in err
        assert not run.exists()
    assert "evaluate RUN_DIR" in cli_error(argv, monkeypatch, capsys, cases[3][0])


def cli_error(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any, config: Any) -> str:
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cli.run(argv) == 2
    return error_text(capsys)


def test_a_recipe_input_size_goes_through_the_planners_checks(
    spec: Path, flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", str(spec), "--data", str(flat), "-o", str(run), "--hp", "input_size=[1, 1]"]
    assert cli.run(argv) == 2
    err = error_text(capsys)
    assert "finetune.yaml: error: input_size[0]: height 1 is smaller than the network's " in err
    assert "total stride 4 (from --hp input_size=[1, 1])" in err
    assert "input_size[1]: width 1" in err and "Traceback" not in err
    assert not run.exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ghostspec-recipe: 1\nepochs: 1\ninput_size: [32, 2]\n")
    assert cli.run([*argv[:6], "--recipe", str(recipe)]) == 2
    err = error_text(capsys)
    assert f"{recipe}:3:" in err and "input_size[1]: width 2 is smaller" in err, err
    assert cli.run(["inspect", str(spec), "--input-size", "2", "2"]) == 2
    assert "--input-size: error: height 2 is smaller than the network's" in error_text(capsys)


# ---------------------------------------------------------- 7. images and classes a split lacks


def _odd_formats(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "1-bit BMP": folder / "one_bit.bmp",
        "palette BMP": folder / "palette.bmp",
        "16-bit PNG": folder / "deep.png",
        "CMYK JPEG": folder / "cmyk.jpg",
    }
    rgb.convert("1").save(files["1-bit BMP"])
    rgb.convert("P").save(files["palette BMP"])
    deep = rng.integers(0, 65535, (40, 48)).astype(np.uint16)
    Image.fromarray(deep).save(files["16-bit PNG"])
    rgb.convert("CMYK").save(files["CMYK JPEG"], quality=95)
    return files


def test_images_tensorflow_cannot_read_are_decoded_by_pillow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import tensorflow as tf

    from ghostspec.data import images, pipeline

    files = _odd_formats(tmp_path / "odd")
    before = snapshot(tmp_path)
    samples = [pipeline.Sample(path, 0) for path in files.values()]
    checked = pipeline.check_samples(samples)
    assert len(checked.samples) == 4
    for cache in (True, False):
        ds = pipeline.eval_dataset(
            checked, size=32, channels=3, mean=(0, 0, 0), std=(1, 1, 1), batch=8, cache=cache
        )
        assert sum(int(x.shape[0]) for x, _ in ds) == 4  # none skipped
    assert "skipping" not in caplog.text and "cannot be decoded" not in caplog.text
    for kind in ("1-bit BMP", "palette BMP", "CMYK JPEG"):  # exactly Pillow's pixels
        info = images.probe(files[kind])
        assert info.pillow, kind
        pixels = images.decode(tf.constant(files[kind].read_bytes()), 3, info.pillow).numpy()
        reference = np.asarray(Image.open(files[kind]).convert("RGB"))
        assert np.array_equal(pixels, reference), kind
    deep = images.decode(tf.constant(files["16-bit PNG"].read_bytes()), 1).numpy()[..., 0]
    scaled = np.asarray(Image.open(files["16-bit PNG"]), np.float64) / 257.0
    assert np.abs(deep - scaled).max() <= 1.0  # 16 bits scaled to 8, not clipped at 255
    assert snapshot(tmp_path) == before


def test_classes_without_images_in_a_split_are_named_before_training(
    trained: dict[str, Any],
) -> None:
    warnings = "\n".join(trained["warnings"])
    assert "class 'stripes' has no usable validation image" in warnings, warnings
    assert "class 'circle'" not in warnings
    out = trained["out"]
    assert out.index("epoch") > 0  # the run went on


def test_a_class_with_no_usable_training_image_is_named(tmp_path: Path) -> None:
    from ghostspec.data.pipeline import Sample
    from ghostspec.data.splits import coverage_warnings

    train = [Sample(tmp_path / "a.png", 0), Sample(tmp_path / "b.png", 0)]
    val = [Sample(tmp_path / "c.png", 1)]
    found = coverage_warnings(("cat", "dog"), train, val, tmp_path)
    text = [d.render() for d in found]
    assert len(found) == 2 and all(d.severity == "warning" for d in found)
    assert "class 'dog' has no usable training image: the network cannot learn it" in text[1]
    assert "class 'cat' has no usable validation image" in text[0]


# --------------------------------------------------------------------------------- 8. evaluate


def test_a_backbone_is_not_scored_as_a_classifier(
    spec: Path, flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ghostspec

    built = tmp_path / "backbone.keras"
    # head.filters 4: the pooled features are as many as the folder's 4 classes
    sets = ["--set", "head.include_top=false", "--set", "head.filters=4"]
    assert cli.run(["build", str(spec), *sets, "-o", str(built)]) == 0
    plain = tmp_path / "plain.keras"
    ghostspec.build(spec, ["head.include_top=false", "head.filters=4"]).save(plain)
    capsys.readouterr()
    for model in (built, plain):
        before = snapshot(tmp_path)
        assert cli.run(["evaluate", str(model), "--data", str(flat)]) == 2
        err = error_text(capsys)
        assert "has no classifier head: its 4 outputs are the pooled features" in err, err
        assert "top-1" not in err.replace("any top-1", "") and "Traceback" not in err
        assert snapshot(tmp_path) == before


def test_a_run_is_evaluated_on_its_own_validation_split(
    trained: dict[str, Any], flat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghostspec.data.pipeline import discover

    run = trained["run"]
    before = snapshot(run)
    assert cli.run(["evaluate", str(run), "--data", str(flat), "--format", "json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "the model's own validation split" in captured.err
    own = discover(flat, seed=7).splits["val"]  # the run's recipe seed
    other = discover(flat, seed=0).splits["val"]  # what evaluate drew before
    assert {s.path for s in own} != {s.path for s in other}
    assert result["count"] == len(own) and result["skipped"] == 0
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    best = max(float(row["val_top1"]) for row in rows)
    assert result["top1"] == pytest.approx(best, abs=1e-6)
    # another split of the run's own folder would score images it trained on
    for flag in (["--seed", "0"], ["--val-split", "0.5"]):
        assert cli.run(["evaluate", str(run), "--data", str(flat), *flag]) == 2
        err = error_text(capsys)
        assert "would draw another split, which holds images the model trained on" in err
    assert snapshot(run) == before


def test_the_split_check_follows_the_folder_not_its_name(
    trained: dict[str, Any], flat: Path, tmp_path: Path
) -> None:
    import shutil

    from ghostspec.data.splits import split_for_model
    from ghostspec.keras.modelfile import read_model_metadata

    record = read_model_metadata(trained["run"] / "best.keras").validation  # type: ignore[union-attr]
    assert record is not None and record.seed == 7 and record.fraction == 0.2
    copy = tmp_path / "copy"
    shutil.copytree(flat, copy)
    chosen = split_for_model(copy, record, val_split=None, seed=None, model="run")
    assert len(chosen.folder.splits["val"]) == record.images  # an identical copy: the same split
    (copy / "circle" / "new.png").write_bytes((flat / "square").iterdir().__next__().read_bytes())
    changed = split_for_model(copy, record, val_split=None, seed=None, model="run")
    assert changed.note is not None and "does not give those" in changed.note
    with pytest.raises(SpecError, match="would draw another split"):
        split_for_model(flat, record, val_split=None, seed=1, model="run")


# ---------------------------------------------------------------- 9. a built GhostNetV3 exports


def test_a_built_ghostnetv3_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ghostspec.keras.modelfile import read_model_metadata

    spec = tmp_path / "v3.yaml"
    spec.write_text(V3)
    model = tmp_path / "m.keras"
    assert cli.run(["build", str(spec), "-o", str(model)]) == 0
    meta = read_model_metadata(model)
    assert meta is not None and meta.spec is not None and "branches: 3" in meta.spec
    assert meta.input_size == (32, 32) and meta.classes is None
    out = tmp_path / "m.tflite"
    assert cli.run(["export", str(model), "--to", "tflite", "-o", str(out)]) == 0, error_text(
        capsys
    )
    text = capsys.readouterr().out
    assert "parity with Keras" in text and out.is_file()
    written = ["m.keras", "m.tflite", "m.tflite.json", "v3.yaml"]  # .json: predict's metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == written
