"""The registry of named reference networks: totals against the reference, and names wherever a
command takes a SPEC (paths win, unknown names get a hint). No TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from isolation import assert_imports_no_framework

import ghostspec
from ghostspec import cli
from ghostspec.diagnostics import SpecError
from ghostspec.language.names import ENTRIES, REGISTRY, resolve
from ghostspec.plan.fuse import fuse_plan

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "tests" / "fixtures" / "manifest.json"

# /work/shared/reference/ghostnet.md, "Totals of the reference" (1000 classes, 224x224):
# parameters, and MACs in millions as the table rounds them (to 0.1 M; timm's exact count for
# GhostNetV2 1.0x, 167,048,288, is given as 167.1), so MACs are compared within 0.06 M.
REFERENCE = {
    "ghostnet_050": (2_587_292, 42.3),
    "ghostnet_100": (5_182_508, 141.2),
    "ghostnet_130": (7_358_820, 227.0),
    "ghostnetv2_100": (6_156_908, 167.1),
    "ghostnetv2_130": (8_960_404, 269.3),
    "ghostnetv2_160": (12_392_698, 398.6),
}
# GhostNetV3 1.0x: 8,129,028 with its training branches, 6,147,588 fused (the same table).
V3_100 = (8_129_028, 6_147_588)
# timm's GhostNetV3 at width 0.5 with 10 classes, counted by tools/make_fixtures.py
# (manifest.json, fixtures ghostnetv3_050_c10_97 and its fused form).
V3_050_C10 = (2_127_194, 1_584_986)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_v1_and_v2_names_match_the_reference_totals(name: str) -> None:
    params, mmacs = REFERENCE[name]
    plan = ghostspec.plan(name)
    assert plan.name == name
    assert plan.params == params
    assert plan.macs is not None and abs(plan.macs / 1e6 - mmacs) < 0.06
    if MANIFEST.exists():  # timm's exact counts
        totals = json.loads(MANIFEST.read_text())["reference_totals"]
        assert plan.macs == totals["macs_224x224_1000_classes"][name]
        assert plan.params == totals["params_1000_classes"][name]


def test_ghostnetv3_100_matches_the_reference_with_and_without_branches() -> None:
    plan = ghostspec.plan("ghostnetv3_100")
    assert (plan.params, fuse_plan(plan).params) == V3_100


def test_ghostnetv3_050_matches_timms_count() -> None:
    plan = ghostspec.plan("ghostnetv3_050", ["head.classes=10"])
    assert (plan.params, fuse_plan(plan).params) == V3_050_C10
    # 1000 classes: the classifier grows by 990 rows of 1280 weights and a bias each
    full = ghostspec.plan("ghostnetv3_050")
    assert full.params - plan.params == 990 * 1281


@pytest.mark.parametrize(("width", "v2"), [("050", None), ("130", 269.3), ("160", 398.6)])
def test_ghostnetv3_deploys_to_ghostnetv2s_graph(width: str, v2: float | None) -> None:
    """Fused, GhostNetV3 at a width costs GhostNetV2's MACs at that width (the paper: 1.3x at
    269 M); its extra training-time parameters are branches fusion removes."""
    v3 = ghostspec.plan(f"ghostnetv3_{width}")
    fused = fuse_plan(v3)
    reference = ghostspec.plan("specs/ghostnetv2.yaml", [f"width={int(width) / 100}"])
    assert fused.macs == reference.macs
    if v2 is not None:
        assert fused.macs is not None and abs(fused.macs / 1e6 - v2) < 0.06
    assert [b.name for b in v3.blocks] == [b.name for b in reference.blocks]
    assert v3.params > fused.params


def test_ghostnet_small_100_is_the_shipped_small_spec() -> None:
    """No reference count exists for this layout; it must be specs/small.yaml exactly."""
    plan = ghostspec.plan("ghostnet_small_100")
    small = ghostspec.plan("specs/small.yaml")
    assert (plan.params, plan.macs) == (small.params, small.macs) == (2_341_808, 40_221_600)
    assert [b.name for b in plan.blocks] == [b.name for b in small.blocks]


def test_every_registered_name_is_checked_above() -> None:
    checked = set(REFERENCE) | {f"ghostnetv3_{w}" for w in ("050", "100", "130", "160")}
    assert checked | {"ghostnet_small_100"} == set(REGISTRY)
    assert [e.name for e in ENTRIES] == list(REGISTRY)  # no duplicates
    for entry in ENTRIES:
        assert entry.path.is_file()
        assert ghostspec.plan(entry.name).width == entry.width


def test_user_overrides_come_after_the_registered_width() -> None:
    plan = ghostspec.plan("ghostnet_100", ["width=0.5"])
    assert plan.params == REFERENCE["ghostnet_050"][0]
    assert plan.name == "ghostnet_100"


def test_a_path_always_wins_over_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ghostnet_100").mkdir()  # e.g. an output folder named like the model
    assert resolve("ghostnet_100") == (Path("ghostnet_100"), ())
    assert cli.run(["validate", "ghostnet_100"]) == 2
    assert "is a directory, not a spec file" in capsys.readouterr().err
    # a spec file is read as it is, even one that shares a registered model's stem
    (tmp_path / "ghostnet_050.yaml").write_text(
        "ghostspec: 1\nname: mine\nstages: [[[16, 16, 0, 1, 3]]]\n"
    )
    assert ghostspec.plan("ghostnet_050.yaml").name == "mine"
    assert ghostspec.plan("ghostnet_050").name == "ghostnet_050"


def test_unknown_name_gets_a_did_you_mean_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["inspect", "ghostnetv2_10"]) == 2
    err = capsys.readouterr().err
    assert "ghostnetv2_10: error: no such file, and no registered model has this name" in err
    assert "did you mean ghostnetv2_100" in err and "ghostspec list" in err
    assert cli.run(["validate", "resnet50", "--format", "json"]) == 2
    (record,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert record["file"] == "resnet50" and "did you mean" not in record["hint"]


def test_a_missing_path_is_still_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["validate", "specs/ghostnet_100.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_problems_in_a_named_model_point_into_its_shipped_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.run(["validate", "ghostnet_050", "--set", "stages.1.0.3=3", "--format", "json"]) == 2
    (record,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert Path(record["file"]).resolve() == REGISTRY["ghostnet_050"].path.resolve()
    assert (record["line"], record["override"]) == (28, "stages.1.0.3=3")


def test_commands_take_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["validate", "ghostnetv3_130", "specs/large.yaml"]) == 0
    out = capsys.readouterr().out
    assert "ghostnetv3_130: ok (ghostnetv3_130, 16 blocks, 12,217,720 parameters)" in out
    assert cli.run(["inspect", "ghostnet_130", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["name"], report["params"]) == ("ghostnet_130", REFERENCE["ghostnet_130"][0])
    assert cli.run(["plot", "ghostnet_small_100", "-o", str(tmp_path / "small.svg")]) == 0
    assert (tmp_path / "small.svg").read_text().count("blocks.") > 0


def test_list_json_gives_every_model_with_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["list", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list(REGISTRY)
    by_name = {r["name"]: r for r in records}
    for name, (params, mmacs) in REFERENCE.items():
        assert by_name[name]["params"] == params
        assert abs(by_name[name]["macs"] / 1e6 - mmacs) < 0.06
        assert by_name[name]["deploy_params"] == params
    assert (by_name["ghostnetv3_100"]["params"], by_name["ghostnetv3_100"]["deploy_params"]) == (
        V3_100
    )
    assert all(r["input_shape"] == [224, 224, 3] and r["description"] for r in records)


def test_list_table_shows_names_totals_and_descriptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.run(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ghost")}
    assert set(rows) == set(REGISTRY)
    assert "5.18 M" in rows["ghostnet_100"] and "141.15 M" in rows["ghostnet_100"]
    assert "6.15 M, 167.05 M" in rows["ghostnetv3_100"]  # deployed
    assert "MobileNetV3-Small" in rows["ghostnet_small_100"]


def test_names_list_and_inspect_import_no_tensorflow() -> None:
    assert_imports_no_framework(
        """
import contextlib, io, sys
from ghostspec import cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    assert cli.run(["list"]) == 0
    assert cli.run(["inspect", "ghostnetv2_160"]) == 0
    assert cli.run(["validate", "ghostnet_10"]) == 2
    assert cli.run(["build", "ghostnet_10"]) == 2
"""
    )


def test_a_name_too_long_for_the_file_system_is_a_diagnostic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # e.g. a spec's text passed where its path belongs: the file system refuses such a name
    text = "ghostspec: 1\nname: tiny\n" + "#" * 300
    with pytest.raises(SpecError) as caught:
        ghostspec.load(text)
    assert "no such file" in str(caught.value)
    assert cli.run(["validate", text]) == 2
    assert "Traceback" not in capsys.readouterr().err
    long = "x" * 300  # one component longer than any file system takes
    for argv in (
        ["fmt", long],
        ["sweep", f"{long}.yaml"],
        ["predict", f"{long}.keras", "."],
        ["build", "ghostnet_050", "-o", f"{long}.keras"],
        ["validate", f"{long}/spec.yaml"],
    ):
        assert cli.run(argv) == 2, argv
        err = capsys.readouterr().err
        assert "File name too long" in err and "Traceback" not in err, argv
        assert err.startswith(argv[-1] if argv[0] == "build" else argv[1]), argv
