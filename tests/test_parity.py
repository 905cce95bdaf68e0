"""Parity with the reference: timm's weights give timm's logits (fixtures from tools/).

GhostNet (v1), GhostNetV2 (DFC attention), GhostNetV3 with its training-time branches and
GhostNetV3 re-parameterised for deployment (the fused plan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ghostspec
from ghostspec.plan.fuse import fuse_plan

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TOLERANCE = 1e-4


# timm model family -> the spec that describes it
SPECS = {
    "ghostnet_": "large.yaml",
    "ghostnetv2_": "ghostnetv2.yaml",
    "ghostnetv3_": "ghostnetv3.yaml",
}


def fixtures() -> list[dict[str, Any]]:
    manifest = FIXTURES / "manifest.json"
    if not manifest.is_file():
        return []
    return json.loads(manifest.read_text())["fixtures"]


def spec_for(fixture: dict[str, Any]) -> Path:
    family = next(k for k in SPECS if fixture["timm_model"].startswith(k))
    return ROOT / "specs" / SPECS[family]


@pytest.mark.parametrize("fixture", fixtures(), ids=lambda e: e["name"])
def test_logits_match_timm(fixture: dict[str, Any], record_property: Any) -> None:
    weights = FIXTURES / f"{fixture['name']}.safetensors"
    data_file = FIXTURES / f"{fixture['name']}.npz"
    if not (weights.is_file() and data_file.is_file()):
        pytest.skip(f"fixture {fixture['name']} not generated (tools/make_fixtures.py)")
    _, h, w, c = fixture["input_nhwc"]
    overrides = [
        f"width={fixture['width']}",
        f"head.classes={fixture['num_classes']}",
        f"input.shape=[{h}, {w}, {c}]",
    ]
    plan = ghostspec.plan(spec_for(fixture), overrides)
    if fixture.get("reparameterized"):  # timm's reparameterize_model: GhostNetV3 for deployment
        plan = fuse_plan(plan)
    assert plan.params == fixture["param_count"]
    model = ghostspec.build(plan, weights=weights)
    with np.load(data_file) as data:
        x, expected = data["input"], data["output"]
    logits = np.asarray(model(x, training=False))
    diff = float(np.abs(logits - expected).max())
    record_property("max_abs_diff", diff)
    print(f"{fixture['name']}: max |diff| = {diff:.3g}")
    assert logits.shape == expected.shape
    assert diff <= TOLERANCE, f"max |diff| {diff} above {TOLERANCE}"


def test_every_family_has_a_fixture() -> None:
    if not fixtures():
        pytest.skip("no fixtures; run tools/make_fixtures.py in an environment with timm")
    families = {next(k for k in SPECS if f["timm_model"].startswith(k)) for f in fixtures()}
    assert families == set(SPECS)
