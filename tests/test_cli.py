"""The commands that need no TensorFlow, through `cli.run` (the console script calls it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ghostspec import cli

ROOT = Path(__file__).resolve().parents[1]


def test_validate_prints_one_line_per_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["validate", "specs/large.yaml", "specs/small.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "specs/large.yaml: ok (ghostnet_large, 16 blocks, 5,182,508 parameters)",
        "specs/small.yaml: ok (ghostnet_small, 11 blocks, 2,341,808 parameters)",
    ]


def test_inspect_json_has_a_row_per_node_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["inspect", "specs/large.yaml", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == 5_182_508
    assert report["macs"] == 141_150_512
    assert len(report["nodes"]) == 1 + 16 + 1 + 2
    assert sum(n["params"] for n in report["nodes"]) == report["params"]
    row = next(n for n in report["nodes"] if n["name"] == "blocks.6.3")
    assert (row["in"], row["hidden"], row["out"], row["se"], row["shortcut"]) == (
        80,
        480,
        112,
        120,
        "projection",
    )


def test_inspect_input_size_changes_sizes_and_macs(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.run(["inspect", "specs/large.yaml", "--input-size", "97", "97", "--format", "json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    last = next(n for n in report["nodes"] if n["name"] == "blocks.9.0")
    assert last["output"] == [4, 4]
    assert report["macs"] < 141_150_512 / 3


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert cli.run(["inspect", "specs/large.yaml", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_any_size_costs_at_the_reference_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dynamic spec is costed at 224x224, the numbers the same spec has fixed at 224."""
    fixed = inspect_json(capsys)
    assert fixed["costed_at"] == [224, 224]
    dynamic = inspect_json(capsys, "--set", "input.shape=[null, null, 3]")
    assert dynamic["input_shape"] == [None, None, 3]
    assert dynamic["costed_at"] == [224, 224]
    assert dynamic["macs"] == fixed["macs"] == 141_150_512
    assert [n["macs"] for n in dynamic["nodes"]] == [n["macs"] for n in fixed["nodes"]]
    assert [n["output"] for n in dynamic["nodes"]] == [n["output"] for n in fixed["nodes"]]
    half = inspect_json(capsys, "--set", "input.shape=[null, 160, 3]")
    assert half["costed_at"] == [224, 160]
    assert half["input_shape"] == [None, 160, 3]
    sized = inspect_json(capsys, "--set", "input.shape=[null, null, 3]", "--input-size", "97", "97")
    assert sized["costed_at"] == [97, 97]
    assert sized["macs"] < fixed["macs"] / 3


def test_inspect_any_size_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    dynamic = ["specs/small.yaml", "--set", "input.shape=[null, null, 3]"]
    assert cli.run(["inspect", *dynamic]) == 0
    table = capsys.readouterr().out
    first, last = table.splitlines()[0], table.splitlines()[-1]
    assert "any input size" in first and "224x224, the reference size" in first
    assert "--input-size" in first
    assert "input ?x?x3" in last and "multiply-adds at 224x224" in last
    rows = [line.split("│") for line in table.splitlines() if line.startswith("│ ")]
    macs = [cells[-2].strip() for cells in rows]
    assert len(macs) == 15 + 1 and "-" not in macs  # every node and the total are counted
    assert cli.run(["inspect", *dynamic, "--format", "markdown"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .startswith("ghostnet_small: any input size; output sizes and multiply-adds at 224x224")
    )


def test_inspect_any_size_without_room_at_the_reference_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Four more stride-2 blocks leave DFC attention nothing to pool at 224x224: no counts, and
    the report says how to get them."""
    strides = [f"--set=stages.{s}.0.3=2" for s in (0, 2, 4, 6)]
    dynamic = ["specs/ghostnetv2.yaml", "--set", "input.shape=[null, null, 3]", *strides]
    assert cli.run(["inspect", *dynamic, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["costed_at"], report["macs"]) == (None, None)
    assert cli.run(["inspect", *dynamic]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "any input size: pass --input-size H W" in first


def test_inspect_table_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["inspect", "specs/small.yaml"]) == 0
    table = capsys.readouterr().out
    assert "blocks.3.1" in table and "2,341,808" in table
    assert cli.run(["inspect", "specs/small.yaml", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("| node |")
    assert markdown.count("\n| blocks.") == 11 + 1  # and the last conv, blocks.4.0


def test_fmt_check_and_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "net.yaml"
    rows = "".join(f"    - {v}\n" for v in (16, 0, 1, 3))
    spec.write_text("# keep me\nghostspec: 1\nname: net\nstages:\n- - - 16\n" + rows)
    assert cli.run(["fmt", "--check", str(spec)]) == 1
    assert "would reformat" in capsys.readouterr().out
    assert cli.run(["fmt", str(spec)]) == 0
    text = spec.read_text()
    assert text == "# keep me\nghostspec: 1\nname: net\nstages:\n  - [[16, 16, 0, 1, 3]]\n"
    assert cli.run(["fmt", "--check", str(spec)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name != "net.yaml"]  # no temporary left


def test_shipped_specs_are_formatted() -> None:
    assert cli.run(["fmt", "--check", "specs/large.yaml", "specs/small.yaml"]) == 0


def test_schema_prints_draft_07(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_schema_check_is_current() -> None:
    assert cli.run(["schema", "--check"]) == 0


def test_unknown_command_and_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.run(["compile", "x.yaml"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        cli.run(["inspect", "specs/large.yaml", "--input-size", "a", "b"])
    assert caught.value.code == 2


def test_python_dash_m_and_console_script_agree() -> None:
    module = subprocess.run(
        [sys.executable, "-m", "ghostspec", "validate", "specs/large.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert module.returncode == 0 and "ok" in module.stdout
    script = shutil.which("ghostspec", path=str(Path(sys.executable).parent))
    if script:
        result = subprocess.run(
            [script, "validate", "specs/large.yaml"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.stdout == module.stdout
