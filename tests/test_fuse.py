"""Fusion (GhostNetV3 branches, BatchNorm folding): the deploy model equals the training model
in inference mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ghostspec
from ghostspec.keras.fusion import fold_batch_norm
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import layer_name

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V3 = ["width=0.5", "head.classes=10", "input.shape=[97, 97, 3]"]


def randomise_statistics(model: Any, seed: int) -> None:
    """BatchNorm statistics and affine parameters far from their initial values."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "moving_mean")):
            w.assign(rng.normal(0.0, 0.2, w.shape).astype("float32"))


def test_fold_batch_norm_matches_conv_then_bn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))  # a 1x1 conv is a matrix product
    kernel = rng.normal(size=(1, 1, 3, 4))
    gamma, beta, mean, var = (
        rng.uniform(0.5, 2, 4),
        rng.normal(size=4),
        rng.normal(size=4),
        rng.uniform(0.5, 2, 4),
    )
    reference = (x @ kernel[0, 0] - mean) / np.sqrt(var + 1e-5) * gamma + beta
    folded, bias = fold_batch_norm(kernel, gamma, beta, mean, var, 1e-5, depthwise=False)
    assert np.allclose(x @ folded[0, 0] + bias, reference)


def test_fuse_equals_training_model_and_matches_plan() -> None:
    spec = ["ghostspec: 1", "name: v3", "input: {shape: [40, 40, 3]}", "width: 0.25"]
    spec += ["ghost: {attention: dfc, attention_from: 1, branches: 3}"]
    spec += ["stages: [[[16, 16, 0, 1, 3], [48, 24, 0.25, 2, 5]], [[72, 24, 0, 1, 3]]]"]
    spec += ["head: {filters: 64, hidden: 32, classes: 5}"]
    model = ghostspec.build(ghostspec.load("v3.yaml", text="\n".join(spec) + "\n"))
    randomise_statistics(model, 1)
    deploy = ghostspec.fuse(model)
    plan = fuse_plan(ghostspec.plan(ghostspec.load("v3.yaml", text="\n".join(spec) + "\n")))
    trainable = sum(int(np.prod(w.shape)) for w in deploy.trainable_weights)
    assert trainable == plan.params
    assert len(deploy.layers) < len(model.layers)
    assert not any("_rpr_" in layer.name for layer in deploy.layers)
    x = np.random.default_rng(2).normal(size=(2, 40, 40, 3)).astype("float32")
    training = np.asarray(model(x, training=False))
    diff = float(np.abs(training - np.asarray(deploy(x, training=False))).max())
    # float32 sums the branches in another order than the folded kernel: a rounding difference
    # that scales with the outputs (here logits of about 7; the reference fixture's are about 2)
    assert diff <= 1e-5 * max(1.0, float(np.abs(training).max()) / 2), diff


@pytest.mark.parametrize(
    ("spec", "overrides"),
    [
        ("specs/large.yaml", ["width=0.25", "head.classes=7", "input.shape=[48, 48, 3]"]),
        ("specs/ghostnetv2.yaml", ["width=0.25", "head.classes=7", "input.shape=[49, 49, 3]"]),
        ("specs/ghostnetv3.yaml", ["width=0.25", "head.classes=7", "input.shape=[48, 48, 3]"]),
    ],
)
def test_folding_every_batch_norm_keeps_the_outputs(spec: str, overrides: list[str]) -> None:
    import keras

    root = Path(__file__).resolve().parent.parent
    plan = ghostspec.plan(root / spec, overrides)
    keras.utils.set_random_seed(5)
    model = ghostspec.build(plan)
    randomise_statistics(model, 3)
    deploy = ghostspec.fuse(model, batch_norm=True)
    kinds = {type(layer) for layer in deploy.layers}
    assert keras.layers.BatchNormalization not in kinds
    gates = [x.name for x in deploy.layers if isinstance(x, keras.layers.Activation)]
    assert all(name.endswith("-gate") for name in gates)  # the rest moved into the convs
    deploy_plan = fuse_plan(plan, batch_norm=True)
    assert deploy.count_params() == deploy_plan.params
    # ghost1's halves stay apart wherever no attention sits in between (v2/v3: blocks 0 and 1)
    split = [n for n in deploy_plan.nodes if getattr(n, "split_ghost1", False)]
    names = {x.name for x in deploy.layers}
    assert split
    for node in split:
        assert layer_name(node.ghost2.primary.conv.name, "intrinsic") in names
        assert layer_name(node.ghost1.name, "concat") not in names
    if "ghostnetv" not in spec:
        assert len(split) == sum(n.kind == "bottleneck" for n in plan.nodes)
    with pytest.raises(ghostspec.SpecError, match="deploy model"):
        ghostspec.export_state_dict(deploy)
    x = np.random.default_rng(4).normal(size=(2, *plan.input_shape)).astype("float32")
    training = np.asarray(model(x, training=False))
    diff = float(np.abs(training - np.asarray(deploy(x, training=False))).max())
    # relative: random statistics blow GhostNetV3's summed branches up to logits of ~100, where
    # float32 rounding alone differs by ~1e-5 of the value; a wrong fold is off by ~100%
    assert diff <= 1e-4 * max(1.0, float(np.abs(training).max())), diff


def test_fuse_without_branches_returns_the_model() -> None:
    model = ghostspec.build("specs/small.yaml", ["width=0.25", "input.shape=[32, 32, 3]"])
    assert ghostspec.fuse(model) is model


@pytest.mark.skipif(not (FIXTURES / "ghostnetv3_050_c10_97.npz").exists(), reason="no fixture")
def test_fused_reference_weights_reproduce_the_reference_deploy_model() -> None:
    model = ghostspec.build(
        "specs/ghostnetv3.yaml", V3, weights=FIXTURES / "ghostnetv3_050_c10_97.safetensors"
    )
    deploy = ghostspec.fuse(model)
    with np.load(FIXTURES / "ghostnetv3_050_c10_97_fused.npz") as data:
        x, expected = data["input"], data["output"]
    training = np.asarray(model(x, training=False))
    fused = np.asarray(deploy(x, training=False))
    assert float(np.abs(fused - training).max()) <= 1e-5
    assert float(np.abs(fused - expected).max()) <= 1e-4
    # the fused model's weights are the reference's deploy state dict, name for name
    state = ghostspec.export_state_dict(deploy)
    from safetensors.numpy import load_file

    reference = load_file(FIXTURES / "ghostnetv3_050_c10_97_fused.safetensors")
    reference = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    assert set(state) == set(reference)
    worst = max(float(np.abs(state[k] - reference[k]).max()) for k in reference)
    assert worst <= 1e-4


def test_a_loaded_model_needs_its_spec_to_fuse(tmp_path: Path) -> None:
    text = "ghostspec: 1\nname: t\ninput: {shape: [32, 32, 3]}\nwidth: 0.25\n"
    text += "ghost: {branches: 2}\nstages: [[[16, 16, 0, 2, 3]]]\n"
    spec = tmp_path / "t.yaml"
    spec.write_text(text)
    model = ghostspec.build(spec)
    model.save(tmp_path / "t.keras")
    import keras

    loaded = keras.saving.load_model(tmp_path / "t.keras")
    with pytest.raises(ghostspec.SpecError) as caught:
        ghostspec.fuse(loaded)
    assert "pass the spec" in (caught.value.diagnostics[0].hint or "")
    deploy = ghostspec.fuse(loaded, spec)
    x = np.ones((1, 32, 32, 3), "float32")
    assert np.allclose(np.asarray(loaded(x)), np.asarray(deploy(x)), atol=1e-5)
