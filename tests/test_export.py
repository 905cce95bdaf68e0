"""Export to SavedModel, TFLite and ONNX on a small spec, each with its parity check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ghostspec
from ghostspec import cli
from ghostspec.deploy import export, tflite

TINY = """
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
width: 0.5
stages:
  - [[16, 16, 0.25, 2, 3]]
  - [[48, 24, 0, 2, 5], [48, 24, 0.25, 1, 3]]
head: {filters: 64, hidden: 128, classes: 7, dropout: 0.2}
"""


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_spec: Path) -> Any:
    import keras

    # with this seed XNNPACK refuses the int8 graph, so the runner falls back to built-in kernels
    keras.utils.set_random_seed(7)
    model = ghostspec.build(tiny_spec)
    # non-trivial BatchNorm statistics and biases, so parity is not checked on near-zeros
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "moving_variance" in w.path or "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path or "bias" in w.path:
            w.assign(rng.normal(0, 0.2, w.shape).astype("float32"))
    return model


@pytest.mark.parametrize("to", ["savedmodel", "tflite", "onnx"])
def test_fp32_exports_agree_within_1e_4(tiny_model: Any, tmp_path: Path, to: str) -> None:
    out = tmp_path / {"savedmodel": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}[to]
    result = export.export(tiny_model, to, out, input_size=(32, 32), batch=None)  # type: ignore[arg-type]
    assert out.exists() and result.size_bytes > 10_000
    assert result.parity.max_abs_diff <= 1e-4
    assert result.parity.cosine > 0.9999
    assert result.parity.top1_agreement == 1.0
    # nothing else left behind; a TFLite file's metadata beside it (ghostspec.deploy.artifact)
    sidecar = [f"{out.name}.json"] if to == "tflite" else []
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, *sidecar]


def test_savedmodel_has_a_named_serving_input(tiny_model: Any, tmp_path: Path) -> None:
    import tensorflow as tf

    export.export(tiny_model, "savedmodel", tmp_path / "sm", input_size=(32, 32), batch=None)
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == ["input"]


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_quantized_tflite_reports_its_agreement(
    tiny_model: Any, tmp_path: Path, quantize: str
) -> None:
    fp32 = export.export(tiny_model, "tflite", tmp_path / "a.tflite", input_size=(32, 32), batch=1)
    out = tmp_path / f"{quantize}.tflite"
    result = export.export(
        tiny_model,
        "tflite",
        out,
        input_size=(32, 32),
        batch=1,
        quantize=quantize,  # type: ignore[arg-type]
        calibration="random:8",
    )
    assert result.size_bytes < fp32.size_bytes
    assert result.parity.cosine > 0.9
    assert result.parity.top1_agreement is not None
    if quantize == "int8":
        interpreter = tflite.tflite_interpreter(out.read_bytes())
        assert interpreter.get_input_details()[0]["dtype"] == np.int8


def test_export_command_from_spec_and_from_keras_file(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.run(["export", str(tiny_spec), "--to", "tflite"]) == 0
    line = capsys.readouterr().out
    assert "wrote tiny.tflite" in line and "max |diff|" in line
    assert cli.run(["build", str(tiny_spec), "-o", "tiny.keras"]) == 0
    capsys.readouterr()
    assert cli.run(["export", "tiny.keras", "--to", "onnx", "-o", "from_keras.onnx"]) == 0
    assert Path("from_keras.onnx").stat().st_size > 10_000


def test_calibration_from_a_folder_of_images(tiny_model: Any, tmp_path: Path) -> None:
    import tensorflow as tf

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        pixels = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
        tf.io.write_file(str(images / f"{i}.png"), tf.io.encode_png(pixels))
    pre = export.Preprocessing()
    batch = list(export.calibration_batches(str(images), (32, 32, 3), pre))
    assert len(batch) == 3 and batch[0].shape == (1, 32, 32, 3)
    assert float(np.min(batch[0])) > -2.2 and float(np.max(batch[0])) < 2.7  # normalised
    result = export.export(
        tiny_model,
        "tflite",
        tmp_path / "q.tflite",
        input_size=(32, 32),
        batch=1,
        quantize="int8",
        calibration=str(images),
    )
    assert result.parity.cosine > 0.5


def diagnostics(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def test_bad_output_path_leaves_nothing(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "m.tflite"
    assert cli.run(["export", str(tiny_spec), "--to", "tflite", "-o", str(out)]) == 2
    assert "does not exist" in diagnostics(capsys)
    assert not (tmp_path / "missing").exists()


def test_unreadable_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    assert cli.run(["export", str(broken), "--to", "tflite", "-o", str(tmp_path / "x.tflite")]) == 2
    assert "is not a Keras model file (not a zip archive)" in diagnostics(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.keras"]


def test_unknown_format_is_an_argument_error(tiny_spec: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.run(["export", str(tiny_spec), "--to", "coreml"])
    assert caught.value.code == 2


def test_quantize_only_for_tflite(tiny_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["export", str(tiny_spec), "--to", "onnx", "--quantize", "int8"]) == 2
    assert "TFLite only" in diagnostics(capsys)


def test_a_failed_parity_check_removes_the_artifact(
    tiny_model: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "m.tflite"
    out.write_bytes(b"the previous artifact")
    monkeypatch.setattr(export, "FP32_TOLERANCE", -1.0)
    with pytest.raises(export.ExportFault):
        export.export(tiny_model, "tflite", out, input_size=(32, 32), batch=1)
    assert out.read_bytes() == b"the previous artifact"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_the_export_command_checks_the_deploy_form_against_the_model_as_built(
    tiny_spec: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import ghostspec.keras.fusion

    fold = ghostspec.keras.fusion.folded_weights

    def off_by_one(model: Any, op: Any) -> Any:  # a folding bug: every folded bias 1 too big
        kernel, bias = fold(model, op)
        return kernel, bias + 1.0

    monkeypatch.setattr(ghostspec.keras.fusion, "folded_weights", off_by_one)
    monkeypatch.chdir(tmp_path)
    assert cli.run(["export", str(tiny_spec), "--to", "tflite"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert cli.run(["export", str(tiny_spec), "--to", "tflite", "--no-fuse"]) == 0


def test_onnx_without_the_extra_says_what_to_install(
    tiny_model: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("tf2onnx", "onnxruntime"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ghostspec.SpecError) as caught:
        export.export(tiny_model, "onnx", tmp_path / "m.onnx", input_size=(32, 32), batch=None)
    assert "ghostspec[onnx]" in (caught.value.diagnostics[0].hint or "")
    assert not list(tmp_path.iterdir())


def test_inspect_markdown_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["inspect", "specs/large.yaml", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| node |") and lines[1].startswith("|---|")
    assert json.dumps(lines).count("blocks.6.3") == 1
