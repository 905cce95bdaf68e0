"""specs/large.yaml is the reference GhostNet: totals, widths and layout, fact by fact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ghostspec
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import BatchNorm, Bottleneck, make_divisible

MANIFEST = Path(__file__).parent / "fixtures" / "manifest.json"


@pytest.mark.parametrize(
    ("width", "params", "mmacs"),
    [(0.5, 2_587_292, 42.3), (1.0, 5_182_508, 141.2), (1.3, 7_358_820, 227.0)],
)
def test_large_totals_match_the_reference(width: float, params: int, mmacs: float) -> None:
    plan = ghostspec.plan("specs/large.yaml", [f"width={width}"])
    assert plan.params == params
    assert plan.macs is not None
    assert round(plan.macs / 1e6, 1) == mmacs


def test_large_layout_matches_the_reference_state_dict() -> None:
    plan = ghostspec.plan("specs/large.yaml")
    tensors = list(plan.tensors())
    batchnorms = {t.name.rsplit(".", 1)[0] for t in tensors if t.name.endswith("running_var")}
    # the reference also stores num_batches_tracked once per BatchNorm
    assert len(tensors) + len(batchnorms) == 512
    assert len(batchnorms) == 80
    names = {t.name for t in tensors}
    for expected in (
        "conv_stem.weight",
        "bn1.running_mean",
        "blocks.1.0.conv_dw.weight",
        "blocks.1.0.bn_dw.bias",
        "blocks.3.0.se.conv_reduce.bias",
        "blocks.6.3.shortcut.2.weight",
        "blocks.9.0.conv.weight",
        "blocks.9.0.bn1.weight",
        "conv_head.bias",
        "classifier.weight",
    ):
        assert expected in names
    shapes = {t.name: t.shape for t in tensors}
    assert shapes["conv_head.weight"] == (1280, 960, 1, 1)
    assert shapes["blocks.3.0.ghost1.cheap_operation.0.weight"] == (36, 1, 3, 3)
    assert shapes["blocks.6.3.shortcut.0.weight"] == (80, 1, 3, 3)


def test_se_widths_follow_make_divisible() -> None:
    plan = ghostspec.plan("specs/large.yaml")
    reduced = {b.name: b.se.reduced for b in plan.blocks if b.se}
    assert reduced["blocks.3.0"] == 20  # 72 * 0.25 = 18 rounds to 20
    assert reduced["blocks.4.0"] == 32
    assert reduced["blocks.6.3"] == 120
    assert reduced["blocks.6.4"] == 168
    assert reduced["blocks.8.1"] == 240
    half = ghostspec.plan("specs/large.yaml", ["width=0.5"])
    block = half.node("blocks.3.0")
    assert isinstance(block, Bottleneck) and block.hidden == 36 and block.se is not None
    assert block.se.reduced == 12  # 8 is below 90% of 9: one divisor is added


def test_make_divisible() -> None:
    assert make_divisible(16 * 0.5, 4) == 8
    assert make_divisible(9, 4) == 12
    assert make_divisible(18, 4) == 20
    assert make_divisible(1, 4) == 4
    assert make_divisible(16 * 1.3, 4) == 20


def test_shortcuts_and_strides() -> None:
    plan = ghostspec.plan("specs/large.yaml")
    kinds = {b.name: b.shortcut_kind for b in plan.blocks}
    assert kinds["blocks.0.0"] == "identity"
    assert kinds["blocks.6.3"] == "projection"  # 80 -> 112 at stride 1
    assert kinds["blocks.6.4"] == "identity"
    assert [b.name for b in plan.blocks if b.stride == 2] == [
        "blocks.1.0",
        "blocks.3.0",
        "blocks.5.0",
        "blocks.7.0",
    ]
    assert plan.node("blocks.9.0").out_size == (7, 7)


def test_bn_settings_come_from_the_spec() -> None:
    plan = ghostspec.plan("specs/large.yaml", ["normalization.epsilon=0.001"])
    bns = [layer for node in plan.nodes for layer in node.layers() if isinstance(layer, BatchNorm)]
    assert {bn.epsilon for bn in bns} == {0.001}
    assert {bn.momentum for bn in bns} == {0.9}


def test_dynamic_input_has_symbolic_sizes() -> None:
    plan = ghostspec.plan("specs/large.yaml", ["input.shape=[null, null, 3]"])
    assert plan.node("blocks.9.0").out_size == (None, None)
    assert plan.macs is None
    sized = ghostspec.plan("specs/large.yaml", ["input.shape=[null, null, 3]"], input_size=(97, 97))
    assert sized.node("blocks.9.0").out_size == (4, 4)


def test_small_spec_is_mobilenetv3_small_shaped() -> None:
    plan = ghostspec.plan("specs/small.yaml")
    blocks = plan.blocks
    assert len(blocks) == 11
    assert [b.kernel for b in blocks] == [3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5]
    assert [b.stride for b in blocks] == [2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1]
    assert [b.se is not None for b in blocks] == [True, False, False] + [True] * 8
    assert [b.activation for b in blocks] == ["relu"] * 3 + ["hard_swish"] * 8
    assert [b.hidden for b in blocks] == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]
    assert plan.node("blocks.4.0").cout == 576
    assert plan.node("conv_head").cout == 1024


@pytest.mark.skipif(not MANIFEST.exists(), reason="no reference manifest")
def test_plan_agrees_exactly_with_timm_totals() -> None:
    """Counted from timm's modules by tools/make_fixtures.py (conv and linear multiply-adds)."""
    totals = json.loads(MANIFEST.read_text())["reference_totals"]
    for key, width in (("ghostnet_050", 0.5), ("ghostnet_100", 1.0), ("ghostnet_130", 1.3)):
        plan = ghostspec.plan("specs/large.yaml", [f"width={width}"])
        assert plan.params == totals["params_1000_classes"][key]
        assert plan.macs == totals["macs_224x224_1000_classes"][key]


@pytest.mark.parametrize(
    ("spec", "width", "key"),
    [
        ("specs/ghostnetv2.yaml", 1.0, "ghostnetv2_100"),
        ("specs/ghostnetv2.yaml", 1.3, "ghostnetv2_130"),
        ("specs/ghostnetv2.yaml", 1.6, "ghostnetv2_160"),
        ("specs/ghostnetv3.yaml", 1.0, "ghostnetv3_100"),
    ],
)
def test_v2_and_v3_totals_match_the_reference(spec: str, width: float, key: str) -> None:
    expected = {
        "ghostnetv2_100": 6_156_908,
        "ghostnetv2_130": 8_960_404,
        "ghostnetv2_160": 12_392_698,
        "ghostnetv3_100": 8_129_028,
    }
    plan = ghostspec.plan(spec, [f"width={width}"])
    assert plan.params == expected[key]
    if MANIFEST.exists():
        totals = json.loads(MANIFEST.read_text())["reference_totals"]
        assert plan.params == totals["params_1000_classes"][key]
        if key in totals["macs_224x224_1000_classes"]:
            assert plan.macs == totals["macs_224x224_1000_classes"][key]


def test_v3_fuses_to_the_reference_deploy_count() -> None:
    plan = ghostspec.plan("specs/ghostnetv3.yaml")
    fused = fuse_plan(plan)
    assert fused.params == 6_147_588
    assert fused.macs == 167_048_288  # v2's graph with biased convs in place of conv + BN
    names = {t.name for t in fused.tensors()}
    assert "blocks.3.0.conv_dw.bias" in names and "blocks.3.0.bn_dw.weight" not in names
    assert "blocks.3.0.ghost1.primary_conv.0.bias" in names


def test_v2_attention_sits_on_ghost1_from_the_third_block() -> None:
    plan = ghostspec.plan("specs/ghostnetv2.yaml")
    with_attention = [b.name for b in plan.blocks if b.ghost1.attention is not None]
    assert with_attention == [b.name for b in plan.blocks][2:]
    assert all(b.ghost2.attention is None for b in plan.blocks)
    sized = ghostspec.plan("specs/ghostnetv2.yaml", input_size=(97, 97))
    dfc = sized.node("blocks.7.0").ghost1.attention  # type: ignore[union-attr]
    assert dfc is not None and dfc.in_size == (7, 7) and dfc.pooled_size == (3, 3)  # floor
    assert dfc.upsample_indices() == ((0, 0, 0, 1, 1, 2, 2),) * 2  # 7 -> 3 -> 7, legacy nearest
    last = sized.node("blocks.8.0").ghost1.attention  # type: ignore[union-attr]
    assert last is not None and last.upsample_indices() == ((0, 0, 1, 1), (0, 0, 1, 1))
    at_224 = ghostspec.plan("specs/ghostnetv2.yaml").node("blocks.8.0").ghost1.attention  # type: ignore[union-attr]
    assert at_224 is not None and at_224.upsample_indices()[0] == (0, 0, 0, 1, 1, 2, 2)  # type: ignore[index]
