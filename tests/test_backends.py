"""Every Keras backend computes the same function: the parity matrix, layouts, old files.

The matrix runs each backend in its own process (tests/backend_worker.py), JAX and PyTorch with
TensorFlow made unimportable, and compares their outputs with the TensorFlow backend's for the
same weights: v1, v2, v3; static and any input size; as built and in both deploy forms; `.keras`
files saved on each backend loaded on each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from backend_worker import STAGES
from isolation import without_tensorflow

import ghostspec
from ghostspec.keras.modelfile import load_model_file, save_model_file
from ghostspec.keras.weights import load_weights
from ghostspec.plan.ir import layer_name

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
WORKER = ROOT / "tests" / "backend_worker.py"
TOLERANCE = {"v1": 1e-5, "v2": 1e-5, "v3": 5e-5}  # v3 sums up to four branches per conv
OTHERS = ("jax", "torch")
LEGACY = FIXTURES / "legacy_dotted_v2.keras"
LEGACY_OVERRIDES = ["width=0.1", "head.classes=10", "input.shape=[null, null, 3]"]
BACKEND = keras.backend.backend()


def work(backend: str, out: Path, *args: str) -> None:
    """Run the worker under `backend`; JAX and PyTorch without TensorFlow."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [str(WORKER), str(out), *args]
    blocked = backend != "tensorflow"
    argv = without_tensorflow(command) if blocked else [sys.executable, *command]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{backend}:\n{result.stdout}\n{result.stderr[-4000:]}"


def table(rows: dict[str, float]) -> str:
    return "\n".join(f"{key}: {value:.2e}" for key, value in sorted(rows.items()))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the matrix starts every backend itself")
def test_every_backend_computes_what_tensorflow_computes(
    tmp_path: Path, record_property: Any
) -> None:
    work("tensorflow", tmp_path)
    for backend in OTHERS:
        work(backend, tmp_path)
    work("tensorflow", tmp_path, "load")  # the files JAX and PyTorch saved
    work("jax", tmp_path, "load")  # PyTorch's
    with np.load(tmp_path / "tensorflow.npz") as data:
        expected = {key: data[key] for key in data.files}
    assert len(expected) == 3 * 2 * 3
    diffs: dict[str, float] = {}
    for backend in OTHERS:
        report = json.loads((tmp_path / f"{backend}.json").read_text())
        assert report == {"backend": backend, "tensorflow_imported": False}
        with np.load(tmp_path / f"{backend}.npz") as data:
            got = {key: data[key] for key in data.files}
        assert len(got) == 3 * 2 * 3 + 3 * 3  # and channels-first, static size
        for key, value in got.items():
            model, size, form = key.split("/")
            reference = expected[f"{model}/{size}/{form.removesuffix('_cf')}"]
            assert value.shape == reference.shape, key
            diffs[f"{backend} {key}"] = float(np.abs(value - reference).max())
    for backend in ("tensorflow", *OTHERS):
        with np.load(tmp_path / f"{backend}_loaded.npz") as data:
            assert len(data.files) == 3 * 2, backend  # every other backend's three files
            for key in data.files:
                source, model = key.split("/")
                with np.load(tmp_path / f"{source}.npz") as saved:
                    reference = saved[f"{model}/dynamic/built"]
                diffs[f"{source} -> {backend} .keras {model}"] = float(
                    np.abs(data[key] - reference).max()
                )
    record_property("parity", diffs)
    print(table(diffs))
    over = {
        key: value
        for key, value in diffs.items()
        if value > TOLERANCE[next(m for m in TOLERANCE if f" {m}" in key or f"{m}/" in key)]
    }
    assert not over, table(over)


def test_layer_names_hold_no_dots_and_map_to_the_reference() -> None:
    plan = ghostspec.plan(
        ROOT / "specs" / "ghostnetv3.yaml", [*LEGACY_OVERRIDES, f"stages={STAGES}"]
    )
    model = ghostspec.build(plan)
    assert not [layer.name for layer in model.layers if "." in layer.name]
    assert {layer.layer_name for node in plan.nodes for layer in node.layers()} <= {
        layer.name for layer in model.layers
    }
    state = ghostspec.export_state_dict(model)
    assert set(state) == {t.name for t in plan.tensors()}  # the reference names, dots and all


@pytest.mark.skipif(BACKEND != "tensorflow", reason="files before 0.2 load on TensorFlow")
def test_a_dotted_keras_file_from_before_still_loads_and_maps(tmp_path: Path) -> None:
    """Layer names were the reference names, dots included, before they became legal on
    PyTorch (tools/make_legacy_keras.py). Such files load on TensorFlow with the same outputs,
    export the same state dict, take reference weights and fuse."""
    with np.load(FIXTURES / "legacy_dotted_v2.npz") as data:
        x, y = data["input"], data["output"]
        state = {key[6:]: data[key] for key in data.files if key.startswith("state/")}
    model = load_model_file(LEGACY).model
    assert model.get_layer("blocks.3.0.ghost1.primary_conv.0")  # as it was written
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), y)
    exported = ghostspec.export_state_dict(model)
    assert exported.keys() == state.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    plan = ghostspec.plan(ROOT / "specs" / "ghostnetv2.yaml", LEGACY_OVERRIDES)
    load_weights(model, plan, state)
    fused = ghostspec.fuse(model, plan, batch_norm=True)
    scale = float(np.abs(y).max())
    assert np.abs(np.asarray(fused(x, training=False)) - y).max() <= 1e-6 * scale
    fresh = ghostspec.build(plan)
    load_weights(fresh, plan, exported)
    np.testing.assert_array_equal(np.asarray(fresh(x, training=False)), y)


def tiny_v2(features: bool = False) -> Any:
    """GhostNetV2's first five stages at any input size: DFC attention, upsampled at run time."""
    overrides = ["width=0.25", "head.classes=10", "input.shape=[null, null, 3]", f"stages={STAGES}"]
    if features:
        overrides.append("head.features=[1, 2, 3]")
    return ghostspec.plan(ROOT / "specs" / "ghostnetv2.yaml", overrides)


@pytest.mark.backend_neutral
@pytest.mark.inference
@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow's CPU convs are channels-last")
def test_channels_first_is_the_same_function(tmp_path: Path) -> None:
    """With image_data_format channels_first the model takes and returns (N, C, H, W) tensors:
    the same outputs for the same weights, feature maps too, and the same after a save."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 67, 61, 3)).astype("float32")
    for features in (False, True):
        plan = tiny_v2(features)
        last = ghostspec.build(plan)
        state = ghostspec.export_state_dict(last)
        keras.config.set_image_data_format("channels_first")
        try:
            first = ghostspec.build(plan)
            load_weights(first, plan, state)
            assert tuple(first.inputs[0].shape) == (None, 3, None, None)
            got = keras.tree.flatten(first(x.transpose(0, 3, 1, 2), training=False))
            fused = ghostspec.fuse(first, plan, batch_norm=True)
            folded = keras.tree.flatten(fused(x.transpose(0, 3, 1, 2), training=False))
        finally:
            keras.config.set_image_data_format("channels_last")
        want = keras.tree.flatten(last(x, training=False))
        for a, b, c in zip(got, want, folded, strict=True):
            a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
            if b.ndim == 4:  # a feature map: channels first
                a, c = a.transpose(0, 2, 3, 1), c.transpose(0, 2, 3, 1)
            np.testing.assert_allclose(a, b, atol=1e-5)
            np.testing.assert_allclose(c, b, atol=1e-5)
    path = save_model_file(first, tmp_path / "first.keras")
    loaded = load_model_file(path).model  # loads channels-first whatever the global setting
    again = keras.tree.flatten(loaded(x.transpose(0, 3, 1, 2), training=False))
    for a, b in zip(again, got, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.backend_neutral
@pytest.mark.inference
def test_layer_names_serve_every_backend_in_a_saved_file(tmp_path: Path) -> None:
    """Saving and loading (which PyTorch refused with dotted names) round-trips on this
    backend, and the loaded model maps back to the reference state dict."""
    plan = tiny_v2()
    model = ghostspec.build(plan)
    path = save_model_file(model, tmp_path / "v2.keras")
    loaded = load_model_file(path).model
    assert loaded.get_layer(layer_name("blocks.1.0.ghost1.primary_conv.0"))
    state, again = ghostspec.export_state_dict(model), ghostspec.export_state_dict(loaded)
    assert state.keys() == again.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
