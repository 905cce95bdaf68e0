"""`ghostspec profile` and `inspect --latency` on a tiny spec: the table's nodes are the plan's,
every time is a positive measurement, shares sum to 100%. No assertion on absolute times."""

from __future__ import annotations

import itertools
import json
import math
import struct
from pathlib import Path

import pytest
from isolation import assert_imports_no_framework

import ghostspec
from ghostspec import cli
from ghostspec.deploy.latency import (
    Profile,
    read_profile,
    render_profile_markdown,
    render_profile_table,
)
from ghostspec.deploy.profile import measure, segments
from ghostspec.plan.fuse import fuse_plan

# GhostNetV2 attention and GhostNetV3 branches on a few blocks, any input size: the deploy form
# folds the branches and every BatchNorm, and the profile needs a size (--input-size).
TINY = """\
ghostspec: 1
name: tiny
input: {shape: [null, null, 3]}
width: 0.5
ghost: {attention: dfc, attention_from: 1, branches: 2}
stages:
  - [[16, 16, 0, 1, 3]]
  - [[48, 24, 0.25, 2, 5], [72, 24, 0, 1, 3]]
head: {filters: 64, hidden: 32, classes: 5}
"""
SIZE = (32, 32)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def measured(spec: Path) -> Profile:
    return measure(spec, input_size=SIZE, repeats=7)


def check_profile(profile: Profile, spec: Path) -> None:
    plan = ghostspec.plan(spec, input_size=SIZE)
    deploy = fuse_plan(plan, batch_norm=True)
    assert [s.name for s in profile.segments] == [n.name for n in plan.nodes]
    for segment, node in zip(profile.segments, deploy.nodes, strict=True):
        assert (segment.kind, segment.params, segment.macs) == (node.kind, node.params, node.macs)
        t = segment.time
        assert 0 < t.min_ms <= t.p25_ms <= t.median_ms <= t.p75_ms
    assert math.isclose(sum(s.share for s in profile.segments), 1.0, rel_tol=1e-9)
    assert profile.whole.median_ms > 0
    assert (profile.params, profile.macs) == (deploy.params, deploy.macs)
    assert profile.input_size == SIZE and profile.cpu


def test_profile_has_the_plans_nodes_positive_times_and_shares_summing_to_one(
    measured: Profile, spec: Path
) -> None:
    check_profile(measured, spec)
    assert (measured.quantize, measured.threads, measured.repeats) == ("none", 1, 7)
    assert measured.segments[1].output == [16, 16]
    assert measured.segments[-1].output == [5]  # the classifier


def test_int8_profile(spec: Path) -> None:
    profile = measure(spec, input_size=SIZE, repeats=3, quantize="int8", threads=2)
    check_profile(profile, spec)
    assert (profile.quantize, profile.threads) == ("int8", 2)


def test_cli_profile_saves_json_and_a_chart_and_inspect_joins_it(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved, chart = tmp_path / "p.json", tmp_path / "p.png"
    command = ["profile", str(spec), "--input-size", *map(str, SIZE), "--repeats", "5"]
    assert cli.run([*command, "--format", "json", "--save", str(saved), "-o", str(chart)]) == 0
    out = capsys.readouterr().out
    printed = Profile.model_validate_json(out)  # stdout is the JSON alone
    check_profile(printed, spec)
    assert read_profile(saved) == printed
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.png"]  # no temporaries

    inspect = ["inspect", str(spec), "--input-size", *map(str, SIZE), "--latency", str(saved)]
    assert cli.run([*inspect, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    shares = [n["latency"]["share"] for n in report["nodes"]]
    assert len(shares) == len(printed.segments) and math.isclose(sum(shares), 1.0)
    assert report["latency"]["notes"] == []
    assert cli.run(inspect) == 0
    table = capsys.readouterr().out
    assert "│ blocks.1.0" in table and "ms" in table and "1 thread on" in table
    assert cli.run([*inspect, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("| node |") and "| ms | share |" in markdown.splitlines()[0] + " |"


def test_profile_table_and_markdown(measured: Profile, spec: Path) -> None:
    markdown = render_profile_markdown(measured)
    assert "| node | output | params | MACs | ms | IQR ms | share | MMAC/ms |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| blocks.")]
    assert len(rows) == len(ghostspec.plan(spec, input_size=SIZE).blocks) + 1  # and blocks.N.0
    table = render_profile_table(measured)
    assert "batch 1, 32x32, 1 thread on" in table and "median of 7 runs" in table
    assert table.count("│ blocks.") == len(rows)


@pytest.mark.parametrize(
    ("arguments", "where"),
    [
        (["-o", "chart.jpg"], "chart.jpg"),
        (["-o", "missing/chart.png"], "missing/chart.png"),
        (["--save", "p.txt"], "p.txt"),
        (["--threads", "0"], "--threads"),
        (["--repeats", "0"], "--repeats"),
        (["--input-size", "0", "32"], "--input-size"),
        (["--set", "stages.0.0.3=3"], "tiny.yaml"),
    ],
)
def test_bad_profile_arguments_exit_2_before_measuring(
    spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    where: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.run(["profile", str(spec), *arguments]) == 2
    assert where in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such profile file"),
        ("{not json", "not a JSON profile"),
        ('{"ghostspec_profile": 1, "model": "x"}', "Field required"),
    ],
)
def test_bad_latency_files_exit_2(
    spec: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    assert cli.run(["inspect", str(spec), "--latency", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    if content is not None:
        assert "ghostspec profile" in err  # how to make a good one


def test_inspect_latency_notes_a_profile_of_another_network(
    measured: Profile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    path.write_text(measured.to_json())
    assert cli.run(["inspect", "ghostnet_050", "--latency", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    notes = " ".join(report["latency"]["notes"])
    assert "measured on tiny" in notes and "32x32" in notes and "blocks.3.0" in notes
    assert next(n for n in report["nodes"] if n["name"] == "blocks.3.0")["latency"] is None


def test_inspect_latency_imports_no_tensorflow(measured: Profile, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(measured.to_json())
    assert_imports_no_framework(
        f"""
import contextlib, io, sys
from ghostspec import cli
with contextlib.redirect_stdout(io.StringIO()):
    assert cli.run(["inspect", "ghostnet_050", "--latency", {str(path)!r}]) == 0
    assert cli.run(["profile", "ghostnet_050", "-o", "x.jpg"]) == 2
"""
    )


@pytest.mark.parametrize(("taps", "features"), [("last", "[1, 2]"), ("timm", "[1, blocks.1]")])
def test_a_backbone_is_cut_into_its_plan_nodes(spec: Path, taps: str, features: str) -> None:
    """Its output layers (the named feature maps) belong to no node; timm's stem tap keeps the
    stem's BatchNorm, which still ends the stem's segment."""
    overrides = [f"head.features={features}", f"head.taps={taps}", "input.shape=[32, 32, 3]"]
    plan = ghostspec.plan(spec, overrides)
    deploy = ghostspec.fuse(ghostspec.build(plan), plan, batch_norm=True)
    from ghostspec.keras.fusion import plan_of

    pieces = segments(deploy, plan_of(deploy))
    assert [node.name for node, _, _ in pieces] == [n.name for n in plan.nodes]
    for (_, piece, _), (_, _, feed) in itertools.pairwise(pieces):
        assert tuple(piece.outputs[0].shape) == tuple(feed.shape)
    ends = {node.name: piece.outputs[0] for node, piece, _ in pieces}
    for tap in plan.features:
        if not tap.pre_norm:
            assert tuple(ends[tap.node].shape[1:]) == tap.shape
