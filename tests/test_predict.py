"""predict: top-1 equals evaluate's on the val split and export's int8 figure; .keras, .tflite and
.onnx agree; the CLI's json equals ghostspec.predict; bad inputs are one message, exit 2, and
leave every file as it was.

One epoch of training (module fixture, tests/imagegen.py shapes) gives the run folder, whose
best.keras then gets spread weights (as tests/test_evaluate.py does) so its predictions differ
from image to image; its three exports (fp32 TFLite, ONNX, int8 TFLite with the int8 top-1
comparison) are made once.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imagegen import make_shapes

import ghostspec
from ghostspec import cli, evaluate

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
    "epochs=1",
]


def _cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 24 train and 8 val images a class
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=4, per_class=32)


@pytest.fixture(scope="module")
def run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ghostspec.train import train

    base = tmp_path_factory.mktemp("run")
    spec = base / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    out = base / "runs" / "tiny-1"
    train(spec, shapes, hp=FAST, output=out, echo=lambda line: None)
    _spread(out / "best.keras")
    return out


def _spread(path: Path) -> None:
    """Spread the barely trained model's outputs, so top-1 is neither one class nor chance."""
    from ghostspec.keras.modelfile import load_model_file, save_model_file

    loaded = load_model_file(path, compile=False)
    rng = np.random.default_rng(0)
    for w in loaded.model.weights:
        if "kernel" in w.path:
            w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
    save_model_file(loaded.model, path, loaded.metadata, include_optimizer=False)


@pytest.fixture(scope="module")
def exported(run: Path, shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The run as fp32 TFLite, ONNX and int8 TFLite, and the int8 export's json report."""
    folder = tmp_path_factory.mktemp("artifacts")
    paths = {"tflite": folder / "m.tflite", "onnx": folder / "m.onnx"}
    for kind, path in paths.items():
        code, _, err = _cli("export", str(run), "--to", kind, "-o", str(path))
        assert code == 0, err
    int8 = folder / "m_int8.tflite"
    code, out, err = _cli(
        "export", str(run), "--to", "tflite", "--quantize", "int8", "--calibration",
        str(shapes), "-o", str(int8), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    return {**paths, "int8": int8, "int8_report": json.loads(out)}


def _top1(records: list[dict[str, Any]]) -> float:
    """Share of records whose first class is the image's folder name (its true class)."""
    right = [r["top"][0]["class"] == Path(r["image"]).parent.name for r in records]
    return float(np.mean(right))


def _tree(*roots: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------------- agreement


def test_top1_on_the_val_split_equals_evaluates(run: Path, shapes: Path) -> None:
    records = ghostspec.predict(run, shapes / "val", top_k=2, batch=64)
    assert len(records) == 32 and all(len(r["top"]) == 2 for r in records)
    result = evaluate.evaluate(run, shapes, batch_size=64)
    assert result.count == 32
    assert len({r["top"][0]["class"] for r in records}) > 1  # not one class for all
    assert _top1(records) == pytest.approx(result.top1, abs=1e-12)
    # folders are walked in sorted order; probabilities are a softmax, best first
    assert [r["image"] for r in records] == sorted(r["image"] for r in records)
    for r in records:
        p = [t["probability"] for t in r["top"]]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-9


def test_the_cli_json_is_the_python_records(run: Path, shapes: Path) -> None:
    images = [str(shapes / "val" / "circle"), str(shapes / "val" / "square" / "*.png")]
    code, out, err = _cli("predict", str(run), *images, "--format", "json", "--top-k", "3")
    assert code == 0, err
    assert json.loads(out) == ghostspec.predict(run, images, top_k=3)
    assert "predicted 12 images with tiny-1" in err  # 8 circles, 4 square PNGs


def test_int8_top1_equals_exports_figure(exported: dict[str, Any], shapes: Path) -> None:
    figure = exported["int8_report"]["int8_accuracy"]
    records = ghostspec.predict(exported["int8"], shapes / "val", top_k=1)
    assert len(records) == figure["images"] == 32
    assert _top1(records) == pytest.approx(figure["int8_top1"], abs=1e-12)


def test_keras_tflite_and_onnx_give_the_same_predictions(
    run: Path, exported: dict[str, Any], shapes: Path
) -> None:
    def table(model: Path) -> tuple[list[int], np.ndarray]:
        records = ghostspec.predict(model, shapes / "val", top_k=4)
        probs = np.array(
            [
                [t["probability"] for t in sorted(r["top"], key=lambda t: t["index"])]
                for r in records
            ]
        )
        return [r["top"][0]["index"] for r in records], probs

    top1, probs = table(run / "best.keras")
    for kind in ("tflite", "onnx"):
        other_top1, other_probs = table(exported[kind])
        assert other_top1 == top1, kind
        assert np.abs(other_probs - probs).max() <= 1e-4, kind


def test_outputs_in_csv_and_table_and_skipped_files_are_named(
    run: Path, shapes: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    shutil.copytree(shapes / "val" / "circle", images)
    (images / "broken.png").write_bytes(b"not a picture")
    (images / "notes.txt").write_text("not an image name: not walked")
    target = tmp_path / "out.csv"
    code, out, err = _cli("predict", str(run), str(images), "-o", str(target), "--top-k", "2")
    assert code == 0, err
    rows = target.read_text().splitlines()
    assert rows[0] == "image,rank,class,index,probability" and len(rows) == 1 + 8 * 2
    assert "broken.png" in err and "1 skipped" in out
    code, out, _ = _cli("predict", str(run), str(images / "circle_0024.jpg"), "--top-k", "1")
    assert code == 0 and out.splitlines()[0].split() == ["image", "top-1"]


# ---------------------------------------------------------------------- bad inputs


def _refused(capsys: Any, *args: str, expect: str, roots: tuple[Path, ...]) -> None:
    before = _tree(*roots)
    code, out, err = _cli("predict", *args)
    said = out + err  # with --format json the diagnostics are json on stdout
    assert code == 2, said
    assert expect in said and "Traceback" not in said
    if "--format" not in args:
        assert out == "" and err.count(": error: ") == 1, err  # one message
    assert _tree(*roots) == before


def test_bad_inputs_are_one_message_and_change_nothing(
    run: Path, exported: dict[str, Any], shapes: Path, tmp_path: Path, capsys: Any
) -> None:
    val = shapes / "val"
    image = val / "circle" / "circle_0024.jpg"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("a")
    bare = tmp_path / "bare.tflite"
    shutil.copyfile(exported["tflite"], bare)  # without its metadata file
    stale = tmp_path / "stale.tflite"
    shutil.copyfile(exported["tflite"], stale)
    shutil.copyfile(Path(f"{exported['int8']}.json"), tmp_path / "stale.tflite.json")
    roots = (tmp_path, val, run)
    cases = [
        ((str(run), str(broken)), "broken.png"),
        ((str(run), str(texts)), "holds no images"),
        ((str(bare), str(image)), "carries no ghostspec metadata"),
        ((str(stale), str(image)), "describes another export"),
        ((str(run), str(image), "-o", str(image), "--format", "json"), "same file as the input"),
        ((str(run), str(val), "-o", str(val / "out.json")), "inside the input folder"),
        ((str(run), str(image), "-o", str(run / "p.json")), "inside the input folder"),
        ((str(run), str(image), "--top-k", "0"), "must be at least 1"),
        ((str(run), str(image), "--top-k", "5"), "more than the model's 4 classes"),
        ((str(TINY_SPEC), str(image)), "not a trained model"),
    ]
    for args, expect in cases:
        _refused(capsys, *args, expect=expect, roots=roots)


TINY_SPEC = Path(__file__).resolve().parents[1] / "specs" / "small.yaml"
