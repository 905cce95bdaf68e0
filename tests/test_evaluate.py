"""evaluate: its figures equal a direct Keras computation on the same tensors; model sources
(run folder, .keras, spec + weights); class checks; the CLI's json and confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imagegen import make_shapes

import ghostspec
from ghostspec import cli, evaluate
from ghostspec.data import pipeline as data
from ghostspec.diagnostics import SpecError

TINY = """
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
stages: [[[16, 16, 0, 1, 3]], [[32, 24, 0, 2, 3]]]
head: {classes: 6}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=6, per_class=8, test=True)


def _scrambled(model: Any) -> Any:
    """Spread the untrained model's outputs, so top-1 and top-5 are not trivially 0 or 1."""
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "kernel" in w.path:
            w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def model_file(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    _scrambled(ghostspec.build(spec)).save(path)
    return path


def _tensors(root: Path, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    samples = data.discover(root).splits[split]
    ds = data.eval_dataset(
        samples, size=32, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch=7
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _keras_figures(model: Any, x: np.ndarray, y: np.ndarray, from_logits: bool) -> list[float]:
    import keras

    out = model.predict(x, verbose=0)
    top1 = keras.metrics.SparseCategoricalAccuracy()
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    top1.update_state(y, out)
    top5.update_state(y, out)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)(y, out)
    return [float(top1.result()), float(top5.result()), float(loss)]


def test_figures_equal_keras_on_the_same_tensors(model_file: Path, root: Path) -> None:
    import keras

    result = evaluate.evaluate(model_file, root, batch_size=5)
    model = keras.saving.load_model(model_file)
    x, y = _tensors(root)
    top1, top5, loss = _keras_figures(model, x, y, from_logits=True)
    # Keras keeps its metrics in float32: equal counts, so equal to float32 precision
    assert result.count == len(y) == 12 and result.from_logits
    assert 0 < result.top1 < 1 and 0 < result.top5 < 1  # the check is not trivial
    assert result.top1 == pytest.approx(top1, abs=1e-6)
    assert result.top5 == pytest.approx(top5, abs=1e-6)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert result.confusion.sum() == 12 and np.trace(result.confusion) == round(top1 * 12)
    predicted = model.predict(x, verbose=0).argmax(1)
    for k in range(6):
        expected = float(np.mean(predicted[y == k] == k))
        assert result.per_class[k] == pytest.approx(expected)


def test_a_softmax_model_is_scored_from_probabilities(
    spec: Path, root: Path, tmp_path: Path
) -> None:
    import keras

    path = tmp_path / "soft.keras"
    soft = ghostspec.build(spec, ["head.classifier_activation=softmax"])
    _scrambled(soft).save(path)
    result = evaluate.evaluate(path, root, split="test")
    x, y = _tensors(root, "test")
    top1, top5, loss = _keras_figures(keras.saving.load_model(path), x, y, from_logits=False)
    assert not result.from_logits
    assert (result.top1, result.top5) == pytest.approx((top1, top5), abs=1e-6)
    assert result.loss == pytest.approx(loss, rel=1e-5)


def test_metrics_by_hand() -> None:
    outputs = np.array([[3.0, 2, 1, 0, -1, -2, -3], [0, 0, 0, 0, 0, 0, 9.0], [1, 2, 3, 4, 5, 6, 7]])
    labels = np.array([0, 0, 0])
    result = evaluate.metrics(outputs, labels, list("abcdefg"), from_logits=True)
    assert result.top1 == pytest.approx(1 / 3)  # only the first row is right
    assert result.top5 == pytest.approx(2 / 3)  # row 2: class 0 ties with 5 others, counts in
    assert result.per_class == (pytest.approx(1 / 3), None, None, None, None, None, None)
    assert result.confusion[0].tolist() == [1, 0, 0, 0, 0, 0, 2]


def test_run_folder_gives_the_model_and_its_class_names(
    model_file: Path, root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "tiny-1"
    run.mkdir(parents=True)
    (run / "best.keras").write_bytes(model_file.read_bytes())
    # the run's index order differs from the folder's sorted one: labels are mapped by name
    names = ["triangle", "circle", "square", "stripes", "cross", "ring"]
    (run / "classes.txt").write_text("\n".join(names) + "\n")
    result = evaluate.evaluate(run, root)
    assert result.classes == tuple(names)
    assert [int(r.sum()) for r in result.confusion] == [2, 2, 2, 2, 2, 2]
    with pytest.raises(SpecError, match="is not a run folder"):
        evaluate.evaluate(tmp_path / "runs", root)


def test_a_class_count_or_name_mismatch_is_refused(model_file: Path, tmp_path: Path) -> None:
    four = make_shapes(tmp_path / "four", classes=4, per_class=4)
    with pytest.raises(SpecError) as err:
        evaluate.evaluate(model_file, four)
    assert "4 classes but the model has 6 outputs" in str(err.value)
    assert "--set head.classes=4" in str(err.value)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(model_file.read_bytes())
    (run / "classes.txt").write_text("a\nb\nc\nd\ne\nf\n")
    with pytest.raises(SpecError, match="classes the model was not trained on: 'circle'"):
        evaluate.evaluate(run, four)


def test_spec_with_weights_and_spec_without(spec: Path, root: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    model = _scrambled(ghostspec.build(spec))
    weights = tmp_path / "w.safetensors"
    save_file(ghostspec.export_state_dict(model), str(weights))
    from_spec = evaluate.evaluate(spec, root, weights=weights)
    path = tmp_path / "same.keras"
    model.save(path)
    from_file = evaluate.evaluate(path, root)
    assert from_spec.top1 == from_file.top1
    assert from_spec.loss == pytest.approx(from_file.loss, rel=1e-6)
    with pytest.raises(SpecError, match="untrained model"):
        evaluate.evaluate(spec, root)


def test_cli_json_and_confusion_png(
    model_file: Path, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "confusion.png"
    argv = ["evaluate", str(model_file), "--data", str(root), "--format", "json"]
    assert cli.run([*argv, "--confusion", str(png), "--batch-size", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    direct = evaluate.evaluate(model_file, root)
    assert report["count"] == 12 and report["top1"] == direct.top1 and report["top5"] == direct.top5
    assert [c["class"] for c in report["per_class"]] == list(data.discover(root).classes)
    assert np.array(report["confusion"]).shape == (6, 6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]  # no temporary left
    # table output names the figures; bad input is exit 2 with a message, before any work
    assert cli.run(["evaluate", str(model_file), "--data", str(root), "--split", "test"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert cli.run([*argv[:4], "--confusion", str(tmp_path / "no" / "c.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.run(["evaluate", str(model_file), "--data", str(tmp_path / "missing")]) == 2
    assert "the data folder does not exist" in capsys.readouterr().err


def test_the_model_files_metadata_names_the_classes_and_preprocessing(
    model_file: Path, root: Path, tmp_path: Path
) -> None:
    import keras

    from ghostspec.keras.modelfile import ModelMetadata, save_model_file

    names = ("ring", "cross", "triangle", "stripes", "square", "circle")
    path = tmp_path / "with_metadata.keras"
    meta = ModelMetadata(classes=names, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=1.0)
    save_model_file(keras.saving.load_model(model_file), path, meta)
    source = evaluate.load_source(path)
    assert (source.classes, source.mean, source.crop_pct) == (names, (0.5,) * 3, 1.0)
    result = evaluate.evaluate(path, root)
    assert result.classes == names
    samples = data.discover(root).splits["val"]
    ds = data.eval_dataset(
        samples, size=32, channels=3, mean=meta.mean, std=meta.std, crop_pct=1.0, batch=12
    )
    x, y = next(iter(ds))
    order = {name: i for i, name in enumerate(names)}
    folder = data.discover(root).classes
    labels = np.array([order[folder[int(k)]] for k in y.numpy()])
    predicted = source.model.predict(x.numpy(), verbose=0).argmax(1)
    assert result.top1 == pytest.approx(float(np.mean(predicted == labels)))
