"""Reference state dicts: reading, validating against the plan, layouts, export round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import ghostspec
from ghostspec.diagnostics import SpecError
from ghostspec.keras import build_model
from ghostspec.keras.weights import export_state_dict, load_weights, read_state_dict
from ghostspec.language.reading import dump_yaml
from ghostspec.plan.ir import Plan

# CI runs these on every Keras backend; on PyTorch without gradients (but the training step)
pytestmark = [pytest.mark.backend_neutral, pytest.mark.inference]

ROOT = Path(__file__).resolve().parents[1]

SPEC: dict[str, Any] = {
    "ghostspec": 1,
    "name": "small",
    "input": {"shape": [32, 32, 3]},
    "width": 0.5,
    # ratio 3 gives depthwise convs with depth multiplier 2
    "ghost": {"ratio": 3, "cheap_kernel": 3},
    "stem": {"filters": 16, "kernel": 3, "stride": 2},
    "stages": [[[16, 16, 0, 1, 3]], [[48, 24, 0.25, 2, 5]]],
    "head": {"filters": 64, "hidden": 32, "classes": 7},
}


@pytest.fixture(scope="module")
def plan() -> Plan:
    return ghostspec.plan(ghostspec.load("small.yaml", text=dump_yaml(SPEC)))


@pytest.fixture
def model(plan: Plan) -> keras.Model:
    return build_model(plan)


def random_state(plan: Plan, seed: int = 0) -> dict[str, np.ndarray]:
    """A reference-layout state dict with every value distinct, as timm would save it."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for t in plan.tensors():
        value = rng.normal(size=t.shape).astype(np.float32)
        if t.name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, size=t.shape).astype(np.float32)
        state[t.name] = value
        if t.name.endswith("running_var"):
            state[t.name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    return state


def snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w.numpy()) for w in model.weights]


VARIANTS = {"v1": {}, "v2+v3": {"attention": "dfc", "attention_from": 0, "branches": 2}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_gives_identical_arrays(variant: str) -> None:
    """DFC attention (non-square depthwise kernels) and V3 branches included."""
    doc = {**SPEC, "ghost": {**SPEC["ghost"], **VARIANTS[variant]}}
    plan = ghostspec.plan(ghostspec.load("variant.yaml", text=dump_yaml(doc)))
    model = build_model(plan)
    state = random_state(plan)
    load_weights(model, plan, state)
    exported = export_state_dict(model)
    expected = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert set(exported) == set(expected)
    for name, value in expected.items():
        assert exported[name].dtype == np.float32
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_layouts(plan: Plan, model: keras.Model) -> None:
    state = random_state(plan)
    load_weights(model, plan, state)
    kernel = model.get_layer("blocks-0-0-ghost1-primary_conv-0").kernel.numpy()
    np.testing.assert_array_equal(
        kernel, state["blocks.0.0.ghost1.primary_conv.0.weight"].transpose(2, 3, 1, 0)
    )
    dense = model.get_layer("classifier").kernel.numpy()
    np.testing.assert_array_equal(dense, state["classifier.weight"].T)
    head = model.get_layer("conv_head").kernel.numpy()
    assert head.shape == (1, 1, 32, 32)
    bn = model.get_layer("bn1")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state["bn1.running_var"])
    np.testing.assert_array_equal(bn.gamma.numpy(), state["bn1.weight"])


def torch_depthwise(x: np.ndarray, weight: np.ndarray, multiplier: int) -> np.ndarray:
    """PyTorch's grouped conv (groups = C, stride 1, padding k // 2), NHWC in and out."""
    k = weight.shape[-1]
    p = k // 2
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, weight.shape[0]), np.float64)
    for o in range(weight.shape[0]):
        channel = padded[..., o // multiplier]
        for i in range(k):
            for j in range(k):
                out[..., o] += channel[:, i : i + h, j : j + w] * weight[o, 0, i, j]
    return out


def test_depthwise_multiplier_channel_order(plan: Plan, model: keras.Model) -> None:
    """Output channel o of a PyTorch grouped conv reads input o // m; Keras must agree."""
    state = random_state(plan)
    load_weights(model, plan, state)
    name = "blocks.0.0.ghost1.cheap_operation.0"
    conv = plan.blocks[0].ghost1.cheap.conv
    assert conv.depthwise and conv.depth_multiplier == 2
    x = np.random.default_rng(3).normal(size=(1, 8, 8, conv.cin)).astype(np.float32)
    got = np.asarray(model.get_layer(name.replace(".", "-"))(x))
    expected = torch_depthwise(x, state[f"{name}.weight"], conv.depth_multiplier)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_read_formats(plan: Plan, model: keras.Model, tmp_path: Path, suffix: str) -> None:
    state = random_state(plan)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".npz":
        np.savez(path, **state)
    else:
        save_file(state, str(path))
    read = read_state_dict(path)
    assert set(read) == set(state)
    load_weights(model, plan, path)
    np.testing.assert_array_equal(model.get_layer("bn1").beta.numpy(), state["bn1.bias"])


def test_build_with_weights(plan: Plan, tmp_path: Path) -> None:
    state = random_state(plan)
    save_file(state, str(tmp_path / "w.safetensors"))
    model = ghostspec.build(plan, weights=tmp_path / "w.safetensors")
    np.testing.assert_array_equal(
        model.get_layer("classifier").bias.numpy(), state["classifier.bias"]
    )


def test_checkpoint_wrappers_are_undone(plan: Plan, model: keras.Model, tmp_path: Path) -> None:
    state = random_state(plan)
    load_weights(model, plan, {"state_dict": {f"module.{k}": v for k, v in state.items()}})
    load_weights(model, plan, {"model": state, "epoch": 3})
    np.savez(tmp_path / "dp.npz", **{f"module.{k}": v for k, v in state.items()})
    load_weights(model, plan, tmp_path / "dp.npz")
    np.testing.assert_array_equal(model.get_layer("bn1").beta.numpy(), state["bn1.bias"])


def test_every_problem_is_reported_and_nothing_is_loaded(
    plan: Plan, model: keras.Model, tmp_path: Path
) -> None:
    state = random_state(plan)
    del state["blocks.1.0.se.conv_reduce.bias"]
    state["blocks.1.0.se.extra.weight"] = np.zeros((3,), np.float32)
    state["classifier.weight"] = np.zeros((10, 32), np.float32)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    before = snapshot(model)
    with pytest.raises(SpecError) as caught:
        load_weights(model, plan, path)
    diagnostics = caught.value.diagnostics
    assert len(diagnostics) == 3
    assert all(d.file == str(path) for d in diagnostics)
    text = "\n".join(d.message for d in diagnostics)
    assert "missing tensor 'blocks.1.0.se.conv_reduce.bias'" in text
    assert "unexpected tensor 'blocks.1.0.se.extra.weight'" in text
    assert "'classifier.weight' has shape [10, 32], the model needs [7, 32]" in text
    for old, new in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(old, new)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such weights file"):
        read_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(SpecError, match="unknown weights format"):
        read_state_dict(tmp_path / "w.h5")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpecError, match="cannot read weights"):
        read_state_dict(tmp_path / "broken.safetensors")


def test_pytorch_files_without_torch_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    path = tmp_path / "ghostnet.pth.tar"
    path.write_bytes(b"\x80")
    with pytest.raises(SpecError) as caught:
        read_state_dict(path)
    (diagnostic,) = caught.value.diagnostics
    assert "PyTorch" in diagnostic.message and "pip install torch" in (diagnostic.hint or "")


def test_importing_weights_is_cheap() -> None:
    script = (
        "import sys, ghostspec.keras.weights; heavy = ('tensorflow', 'keras', 'torch'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
