"""The backbone form, `head: {features: [...]}`: taps from the plan, timm parity per level, the
deploy form, dynamic sizes, export per output, and a classifier checkpoint loaded into a backbone.

The parity fixtures (`*_features.npz`, tools/make_fixtures.py) hold, for the committed classifier
weights and one 65x65 input, timm's `features_only=True` maps and the output of the last block at
each reduction, taken with forward hooks.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ghostspec
from ghostspec import cli
from ghostspec.deploy import export, tflite
from ghostspec.diagnostics import SpecError
from ghostspec.keras.weights import load_weights
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Plan

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TOLERANCE = 1e-4
SPECS = {
    "ghostnet_": "large.yaml",
    "ghostnetv2_": "ghostnetv2.yaml",
    "ghostnetv3_": "ghostnetv3.yaml",
}
MODES = {"timm": "timm_taps", "last": "last_taps"}


def feature_fixtures() -> list[dict[str, Any]]:
    manifest = FIXTURES / "manifest.json"
    return json.loads(manifest.read_text()).get("features", []) if manifest.is_file() else []


def fixture_plan(fixture: dict[str, Any], mode: str, levels: list[int] | None = None) -> Plan:
    spec = ROOT / "specs" / next(v for k, v in SPECS.items() if fixture["timm_model"].startswith(k))
    _, h, w, c = fixture["input_nhwc"]
    levels = levels or [t["level"] for t in fixture[MODES[mode]]]
    overrides = [
        f"width={fixture['width']}",
        f"input.shape=[{h}, {w}, {c}]",
        f"head.features={levels}",
        f"head.taps={mode}",
    ]
    return ghostspec.plan(spec, overrides)


def timm_node(module: str) -> str:
    """timm's module name of a tap as a plan node: `blocks.3` is stage 3's only block here."""
    return "conv_stem" if module == "conv_stem" else f"{module}.0"


# ------------------------------------------------------------------------------- the plan's taps


def test_default_taps_are_the_last_block_at_each_stride() -> None:
    plan = ghostspec.plan("specs/large.yaml", ["head.features=[1, 2, 3, 4, 5]"])
    taps = plan.features
    assert [t.node for t in taps] == [
        "blocks.0.0",
        "blocks.2.0",
        "blocks.4.0",
        "blocks.6.4",
        "blocks.8.3",
    ]
    assert [t.channels for t in taps] == [16, 24, 40, 112, 160]
    assert [t.reduction for t in taps] == [2, 4, 8, 16, 32]
    assert [t.size for t in taps] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert [t.name for t in taps] == [f"features_{level}" for level in range(1, 6)]
    assert not any(t.pre_norm for t in taps)
    # nothing after the last tap is built: no last 1x1 conv, no pooling, no classifier
    assert plan.nodes[-1].name == "blocks.8.3"
    assert plan.omitted == ("blocks.9.0", "conv_head", "classifier")
    assert plan.output_shape == (7, 7, 160)


def test_timm_taps_at_1x() -> None:
    plan = ghostspec.plan("specs/large.yaml", ["head.features=[1, 2, 3, 4, 5]", "head.taps=timm"])
    taps = plan.features
    assert [(t.node, t.pre_norm) for t in taps] == [
        ("conv_stem", True),  # timm returns the stem conv before bn1
        ("blocks.1.0", False),
        ("blocks.3.0", False),
        ("blocks.5.0", False),
        ("blocks.7.0", False),
    ]
    assert [t.channels for t in taps] == [16, 24, 40, 80, 160]
    assert [t.reduction for t in taps] == [2, 4, 8, 16, 32]
    assert plan.nodes[-1].name == "blocks.7.0"


@pytest.mark.parametrize("fixture", feature_fixtures(), ids=lambda f: f["name"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_taps_match_the_reference_modules(fixture: dict[str, Any], mode: str) -> None:
    """Nodes, channels and reductions from the plan equal timm's feature_info (timm mode) and the
    modules found by hooks (last mode); the timm backbone has timm's parameter count."""
    plan = fixture_plan(fixture, mode)
    expected = fixture[MODES[mode]]
    got = [(t.node, t.channels, t.reduction, t.level) for t in plan.features]
    modules = [timm_node(t["module"]) if mode == "timm" else t["module"] for t in expected]
    assert got == [
        (m, t["channels"], t["reduction"], t["level"])
        for m, t in zip(modules, expected, strict=True)
    ]
    if mode == "timm":
        assert plan.params == fixture["timm_param_count"]


def test_named_taps_in_the_listed_order() -> None:
    plan = ghostspec.plan(
        "specs/large.yaml", ["head.features=[blocks.6, conv_stem, 3, blocks.6.2, blocks.9]"]
    )
    taps = plan.features
    assert [t.name for t in taps] == [
        "features_blocks_6",
        "features_conv_stem",
        "features_3",
        "features_blocks_6_2",
        "features_blocks_9",
    ]
    assert [t.node for t in taps] == [
        "blocks.6.4",
        "conv_stem",
        "blocks.4.0",
        "blocks.6.2",
        "blocks.9.0",
    ]
    assert [t.channels for t in taps] == [112, 16, 40, 80, 960]
    assert [t.level for t in taps] == [4, 1, 3, 4, 5]
    assert plan.nodes[-1].name == "blocks.9.0"
    assert plan.omitted == ("conv_head", "classifier")


def test_a_stem_without_a_block_at_its_stride_is_the_first_level() -> None:
    """small.yaml's first block has stride 2, so level 1 is the stem's output."""
    plan = ghostspec.plan("specs/small.yaml", ["head.features=[1, 2]"])
    first = plan.features[0]
    assert (first.node, first.pre_norm, first.reduction) == ("conv_stem", False, 2)


def test_deploy_plan_keeps_the_taps_and_timms_stem_batch_norm() -> None:
    plan = ghostspec.plan(
        "specs/ghostnetv3.yaml", ["head.features=[1, 2, 3, 4, 5]", "head.taps=timm"]
    )
    deploy = fuse_plan(plan, batch_norm=True)
    assert deploy.features == plan.features
    stem = deploy.node("conv_stem")
    assert stem.op.bn is not None  # type: ignore[union-attr]
    assert all(block.ghost2.primary.bn is None for block in deploy.blocks)  # type: ignore[union-attr]


def test_inspect_shows_the_features(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "inspect",
        "specs/large.yaml",
        "--set",
        "head.features=[2, 5]",
        "--set",
        "head.taps=timm",
    ]
    assert cli.run([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["features"] == [
        {
            "output": "features_2",
            "node": "blocks.1.0",
            "point": "output",
            "level": 2,
            "reduction": 4,
            "channels": 24,
            "size": [56, 56],
        },
        {
            "output": "features_5",
            "node": "blocks.7.0",
            "point": "output",
            "level": 5,
            "reduction": 32,
            "channels": 160,
            "size": [7, 7],
        },
    ]
    assert cli.run(argv) == 0
    table = capsys.readouterr().out
    assert "features_5" in table and "blocks.7.0" in table and "2 feature maps" in table
    assert cli.run([*argv, "--format", "markdown"]) == 0
    assert "| features_2 | blocks.1.0 | 2 | 4 | 24 | 56x56 |" in capsys.readouterr().out


def test_plot_marks_the_taps(tmp_path: Path) -> None:
    from ghostspec.views.plot import plot_plan

    out = tmp_path / "backbone.svg"
    plot_plan(ghostspec.plan("specs/large.yaml", ["head.features=[1, 3]", "head.taps=timm"]), out)
    text = out.read_text()
    assert "▼ features_1 (pre-BN)" in text and "▼ features_3" in text
    assert "features_2" not in text
    assert "2 feature maps: 112x112x16, 28x28x40" in text


# ---------------------------------------------------------------------------------- diagnostics


SPEC = """\
ghostspec: 1
name: backbone
input: {shape: [64, 64, 3]}
stages:
  - [[16, 16, 0, 1, 3]]
  - [[48, 24, 0, 2, 3], [72, 24, 0, 1, 3]]
  - [[72, 40, 0.25, 2, 5]]
head:
"""


def problems(tmp_path: Path, head: str) -> list[Any]:
    path = tmp_path / "backbone.yaml"
    path.write_text(SPEC + textwrap.indent(textwrap.dedent(head), "  "))
    with pytest.raises(SpecError) as err:
        ghostspec.plan(path)
    return err.value.diagnostics


def test_a_level_out_of_range_is_located(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "features: [2, 6]")
    assert (d.line, d.column, d.path) == (9, 17, "head.features[1]")
    assert "level 6 (stride 64) does not exist" in d.message
    assert "1 (stride 2) to 3 (stride 8)" in d.message


def test_an_unknown_node_gets_a_suggestion(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "features: [blocks.1.2]")
    assert d.path == "head.features[0]" and "no node 'blocks.1.2'" in d.message
    assert d.hint == "did you mean 'blocks.1.1'?"


def test_a_map_tapped_twice(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "features: [3, blocks.2]")
    assert d.path == "head.features[1]" and "already tapped by head.features[0]" in d.message


def test_timm_taps_need_a_stage_ending_in_stride_2(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "features: [1, 2, 3]\ntaps: timm")
    assert d.path == "head.features[1]"
    assert "timm has no map at level 2" in d.message and "levels 1, 3" in d.message
    assert d.hint is not None and "blocks.1.1" in d.hint


def test_features_with_include_top_true(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "include_top: true\nfeatures: [2]")
    assert (d.line, d.path) == (9, "head.include_top")
    assert "has no classifier" in d.message


def test_taps_without_features(tmp_path: Path) -> None:
    [d] = problems(tmp_path, "taps: timm")
    assert d.path == "head.taps" and "not set" in d.message


def test_a_bad_entry_is_one_clear_message(tmp_path: Path) -> None:
    found = problems(tmp_path, "features: [true, stem, 17]")
    assert [d.message for d in found] == [
        "expected a level (a whole number) or a node name such as blocks.6.4, got boolean true",
        "'stem' is not a node name: use conv_stem, blocks.S (stage S's output) or blocks.S.I "
        "(a block)",
        "level 17 is outside 0 to 16",
    ]


@pytest.mark.parametrize("overrides", [[], ["head.features=[2, blocks.6]", "head.taps=timm"]])
def test_a_resolved_spec_reads_back(overrides: list[str]) -> None:
    """Every field written out (as run folders store specs), defaults included, is valid."""
    from ghostspec.language.reading import dump_yaml

    spec = ghostspec.load("specs/large.yaml", overrides)
    assert ghostspec.load("resolved.yaml", text=dump_yaml(spec.model_dump())) == spec


def test_features_imply_no_classifier() -> None:
    spec = ghostspec.load("x.yaml", text=SPEC + "  features: [2]\n")
    assert spec.head.include_top is False


# --------------------------------------------------------------------- Keras: parity with timm


@pytest.mark.parametrize("fixture", feature_fixtures(), ids=lambda f: f["name"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_feature_maps_match_timm(fixture: dict[str, Any], mode: str, record_property: Any) -> None:
    """timm mode equals timm's features_only, last mode the hooked block outputs, per level,
    within 1e-4, with the classifier checkpoint loaded into the backbone; the deploy form too."""
    plan = fixture_plan(fixture, mode)
    model = ghostspec.build(plan)
    skipped = load_weights(model, plan, FIXTURES / fixture["weights"])
    assert skipped and all(k.startswith(("blocks.", "conv_head.", "classifier.")) for k in skipped)
    assert any(k.startswith("classifier.") for k in skipped)
    deploy = ghostspec.fuse(model, batch_norm=True)
    assert deploy is not model
    with np.load(FIXTURES / fixture["files"][0]) as data:
        x = data["input"]
        expected = [data[f"{mode}_{t.level}"] for t in plan.features]
    for form, m in (("as built", model), ("deploy", deploy)):
        outputs = m(x, training=False)
        assert isinstance(outputs, list) and len(outputs) == len(plan.features)
        assert m.output_names == [t.name for t in plan.features]
        for tap, out, ref in zip(plan.features, outputs, expected, strict=True):
            assert tuple(out.shape[1:]) == tap.shape == ref.shape[1:]
            diff = float(np.abs(np.asarray(out) - ref).max())
            record_property(f"{form} {tap.name} max_abs_diff", diff)
            print(f"{fixture['name']} {mode} {form} {tap.name} ({tap.node}): max |diff| {diff:.3g}")
            assert diff <= TOLERANCE, (form, tap.name, diff)


def test_backbone_weights_are_the_classifiers(tmp_path: Path) -> None:
    """Every tensor the backbone has comes from the classifier; the head's are skipped, and a
    checkpoint that does not fit the backbone is still refused."""
    classifier_plan = ghostspec.plan("specs/large.yaml", ["width=0.5", "input.shape=[32, 32, 3]"])
    rng = np.random.default_rng(0)
    state = {t.name: rng.normal(size=t.shape).astype(np.float32) for t in classifier_plan.tensors()}
    plan = ghostspec.plan(
        "specs/large.yaml", ["width=0.5", "input.shape=[32, 32, 3]", "head.features=[2, 3]"]
    )
    model = ghostspec.build(plan)
    skipped = load_weights(model, plan, state)
    kept = {t.name for t in plan.tensors()}
    assert set(skipped) == set(state) - kept
    assert "blocks.5.0.ghost1.primary_conv.0.weight" in skipped
    exported = ghostspec.export_state_dict(model)
    assert set(exported) == kept
    for name in kept:
        assert np.array_equal(exported[name], state[name]), name
    # a wrong width is not a head: the backbone's own tensors do not fit
    wrong = ghostspec.plan("specs/large.yaml", ["width=1.0", "input.shape=[32, 32, 3]"])
    wide = {t.name: np.zeros(t.shape, np.float32) for t in wrong.tensors()}
    with pytest.raises(SpecError, match="has shape"):
        load_weights(model, plan, wide)


def test_build_notes_the_skipped_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.numpy import save_file

    overrides = ["width=0.5", "input.shape=[32, 32, 3]"]
    classifier = ghostspec.plan("specs/large.yaml", overrides)
    weights = tmp_path / "classifier.safetensors"
    save_file({t.name: np.ones(t.shape, np.float32) for t in classifier.tensors()}, str(weights))
    argv = ["build", "specs/large.yaml", "-o", str(tmp_path / "b.keras"), "--weights", str(weights)]
    for o in [*overrides, "head.features=[4, 5]"]:
        argv += ["--set", o]
    assert cli.run(argv) == 0
    out = capsys.readouterr().out
    assert "outputs features_4 2x2x56, features_5 1x1x80" in out
    # blocks.9.0's conv and BatchNorm (5), conv_head (2) and the classifier (2)
    assert "note:" in out and "skipped 9 tensors" in out
    assert "(blocks.9.0, classifier, conv_head)" in out


# ------------------------------------------------------- dynamic sizes, saving, export per output


def test_dynamic_input_sizes() -> None:
    """A backbone with null height and width (and its deploy form) runs at any size; each map
    has the size its reduction gives and equals the static-size model's output (same weights)."""
    overrides = ["width=0.5", "head.features=[2, 3, 4, 5]"]
    dynamic_plan = ghostspec.plan(
        "specs/ghostnetv2.yaml", [*overrides, "input.shape=[null, null, 3]"]
    )
    assert all(t.size == (None, None) for t in dynamic_plan.features)
    dynamic = ghostspec.build(dynamic_plan)
    deploy = ghostspec.fuse(dynamic, batch_norm=True)
    rng = np.random.default_rng(1)
    for h, w in ((97, 80),):  # odd and not square
        static_plan = ghostspec.plan(
            "specs/ghostnetv2.yaml", [*overrides, f"input.shape=[{h}, {w}, 3]"]
        )
        static = ghostspec.build(static_plan)
        load_weights(static, static_plan, ghostspec.export_state_dict(dynamic))
        x = rng.standard_normal((1, h, w, 3)).astype(np.float32)
        maps = zip(dynamic_plan.features, dynamic(x), static(x), deploy(x), strict=True)
        for tap, a, b, c in maps:
            assert a.shape[1:] == (-(-h // tap.reduction), -(-w // tap.reduction), tap.channels)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
            np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-4)


@pytest.fixture(scope="module")
def small_backbone() -> Any:
    import keras

    plan = ghostspec.plan(
        "specs/large.yaml",
        ["width=0.5", "input.shape=[48, 48, 3]", "head.features=[1, 3, 5]", "head.taps=timm"],
    )
    keras.utils.set_random_seed(3)
    model = ghostspec.build(plan)
    rng = np.random.default_rng(0)
    for w in model.weights:  # non-trivial BatchNorm statistics, so the folding is exercised
        if "moving_variance" in w.path or "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.2, w.shape).astype("float32"))
    return model


def test_saved_backbone_loads_with_its_outputs(small_backbone: Any, tmp_path: Path) -> None:
    import keras

    path = tmp_path / "backbone.keras"
    small_backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.output_names == ["features_1", "features_3", "features_5"]
    x = np.random.default_rng(2).standard_normal((2, 48, 48, 3)).astype(np.float32)
    for a, b in zip(small_backbone(x), loaded(x), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tflite_export_has_one_checked_output_per_map(small_backbone: Any, tmp_path: Path) -> None:
    deploy = ghostspec.fuse(small_backbone, batch_norm=True)
    out = tmp_path / "backbone.tflite"
    result = export.export(
        deploy, "tflite", out, input_size=(48, 48), batch=None, reference_model=small_backbone
    )
    assert [name for name, _ in result.outputs] == ["features_1", "features_3", "features_5"]
    assert all(p.max_abs_diff <= TOLERANCE for _, p in result.outputs)
    assert result.parity.max_abs_diff == max(p.max_abs_diff for _, p in result.outputs)
    runner = tflite.tflite_interpreter(out.read_bytes()).get_signature_runner()
    shapes = {name: tuple(d["shape"]) for name, d in runner.get_output_details().items()}
    assert shapes == {
        "features_1": (1, 24, 24, 8),
        "features_3": (1, 6, 6, 20),
        "features_5": (1, 2, 2, 80),
    }


def test_export_names_the_output_that_differs() -> None:
    """The fp32 check is per output: one map off by more than 1e-4 fails the export, and the
    message names that map (the conversion itself is covered above)."""
    rng = np.random.default_rng(0)
    reference = [rng.normal(size=(2, 4, 4, 8)).astype(np.float32) for _ in range(3)]
    outputs = [reference[0], reference[1] + 1e-3, reference[2] + 1e-6]
    names = ["features_1", "features_3", "features_5"]
    worst, per = export._check(reference, outputs, names)
    assert [name for name, _ in per] == names
    assert worst.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    with pytest.raises(export.ExportFault, match=r"in features_3 \("):
        export._require(worst, "none", per)
    close, per = export._check(reference, [reference[0], reference[1], outputs[2]], names)
    export._require(close, "none", per)  # 1e-6 passes
