"""Bad input of every kind: a clear message, a 1-based position where one applies, exit code 2.

Each test writes a spec into `tmp_path`, runs `ghostspec validate --format json` in-process and
checks the diagnostic records; stderr must never hold a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ghostspec.cli import run

Record = dict[str, Any]

# A small valid spec; line numbers below refer to it.
VALID = """\
ghostspec: 1
name: tiny
input: {shape: [64, 64, 3]}
stages:
  - [[16, 16, 0, 1, 3]]
  - [[48, 24, 0, 2, 3]]
"""


def write(tmp_path: Path, content: str | bytes, name: str = "spec.yaml") -> Path:
    """Write a spec file (text is dedented) and return its path."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


def validate(
    capsys: pytest.CaptureFixture[str], path: Path | str, *overrides: str
) -> tuple[int, list[Record]]:
    """Run `validate --format json`; return the exit code and the diagnostic records."""
    argv = ["validate", str(path), "--format", "json"]
    for override in overrides:
        argv += ["--set", override]
    code = run(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "internal error" not in err
    return code, json.loads(out)["diagnostics"]


def validate_text(capsys: pytest.CaptureFixture[str], path: Path | str, *overrides: str) -> str:
    """Run `validate` with text output; return stderr (the exit code must be 2)."""
    argv = ["validate", str(path)]
    for override in overrides:
        argv += ["--set", override]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def single(capsys: pytest.CaptureFixture[str], path: Path | str, *overrides: str) -> Record:
    """The one diagnostic of an invalid spec (exit code 2)."""
    code, records = validate(capsys, path, *overrides)
    assert code == 2
    assert len(records) == 1, records
    return records[0]


def at(record: Record) -> tuple[int | None, int | None]:
    return record["line"], record["column"]


# --- the shape of the file ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"]
)
def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    d = single(capsys, write(tmp_path, text))
    assert "empty" in d["message"]
    assert "ghostspec: 1" in d["hint"]
    assert at(d) == (1, 1)


def test_top_level_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, "- ghostspec: 1\n- name: tiny\n"))
    assert "top level must be a mapping" in d["message"]
    assert "list" in d["message"]
    assert at(d) == (1, 1)


def test_top_level_scalar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, "42\n"))
    assert "top level must be a mapping" in d["message"]
    assert at(d) == (1, 1)


def test_invalid_utf8_points_at_the_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, b'ghostspec: 1\nname: tiny\ndescription: "ab\xff"\n'))
    assert "invalid UTF-8" in d["message"]
    assert "0xff" in d["message"]
    assert "UTF-8" in d["hint"]
    assert at(d) == (3, 17)


def test_invalid_utf8_column_counts_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = 'ghostspec: 1\nname: tiny\ndescription: "éé'.encode() + b'\xff"\n'
    d = single(capsys, write(tmp_path, text))
    assert at(d) == (3, 17)


def test_tab_indentation_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, b"ghostspec: 1\nname: tiny\nhead:\n\tclasses: 3\n"))
    assert d["message"].startswith("YAML syntax")
    assert at(d) == (4, 1)


def test_tab_indentation_has_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, b"ghostspec: 1\nname: tiny\nhead:\n\tclasses: 3\n"))
    assert d["hint"] is not None
    assert "tab" in d["hint"]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("ghostspec: 1\nname: [tiny\nhead: 3\n", (3, 5), "expected ',' or ']'"),
        ("ghostspec: 1\nname: a: b\n", (2, 8), "mapping values are not allowed"),
    ],
    ids=["unclosed-flow", "colon-in-value"],
)
def test_yaml_syntax_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    where: tuple[int, int],
    words: str,
) -> None:
    d = single(capsys, write(tmp_path, text))
    assert d["message"].startswith("YAML syntax")
    assert words in d["message"]
    assert at(d) == where


def _bomb(open_: str, close: str, item: str) -> str:
    """Nine levels of ten aliases each: 10**9 nodes once expanded (billion laughs)."""
    lines = ["ghostspec: 1", "name: bomb"]
    prev = None
    for level in range(9):
        if prev is None:
            body = ", ".join(item.format(i=i, v='"lol"') for i in range(10))
        else:
            body = ", ".join(item.format(i=i, v=f"*{prev}") for i in range(10))
        name = f"l{level}"
        lines.append(f"{name}: &{name} {open_}{body}{close}")
        prev = name
    lines.append("stages: [[[16, 16, 0, 1, 3]]]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text",
    [_bomb("[", "]", "{v}"), _bomb("{", "}", "k{i}: {v}")],
    ids=["lists", "mappings"],
)
def test_alias_bomb_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    d = single(capsys, write(tmp_path, text))
    assert "expands to more than 100000 nodes" in d["message"]
    assert "aliases" in d["hint"]
    assert d["line"] is not None


def test_deep_nesting_is_refused_at_a_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    depth = 300
    d = single(
        capsys, write(tmp_path, "ghostspec: 1\nname: t\nstages: " + "[" * depth + "]" * depth)
    )
    assert "64" in d["message"]
    assert d["line"] == 3


# --- values of the wrong kind or size -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words", "where"),
    [
        ("width: 1e400", "expected a finite number", (7, 8)),
        ("width: 1000000000", "above the maximum 10.0", (7, 8)),
        (f"stem: {{filters: {10**40}}}", f"{10**40} is above the maximum 100000", (7, 17)),
        (f"divisor: {10**40}", "above the maximum 256", (7, 10)),
        ("head: {classes: -1e400}", "expected a whole number", (7, 17)),
        ("head: {classes: 0}", "below the minimum 1", (7, 17)),
    ],
    ids=[
        "inf-width",
        "huge-width",
        "huge-channels",
        "huge-divisor",
        "-inf-classes",
        "zero-classes",
    ],
)
def test_absurd_numbers_are_refused_with_bounds(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    words: str,
    where: tuple[int, int],
) -> None:
    d = single(capsys, write(tmp_path, VALID + line + "\n"))
    assert words in d["message"]
    assert at(d) == where


def test_huge_channels_in_a_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("[[48, 24, 0, 2, 3]]", f"[[48, {10**40}, 0, 2, 3]]")
    d = single(capsys, write(tmp_path, text))
    assert "above the maximum 100000" in d["message"]
    assert d["path"] == "stages[1][0] column 2 (out)"
    assert at(d) == (6, 11)


def test_strings_where_numbers_belong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
        ghostspec: 1
        name: tiny
        width: "1.0"
        input: {shape: [64, "64", 3]}
        stages:
          - [[16, 16, 0, 1, "3"]]
          - [{hidden: 48, out: 24, stride: yes}]
        """
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    got = [(d["path"], d["message"], at(d)) for d in records]
    assert got == [
        ("width", "expected a number, got string '1.0'", (3, 8)),
        ("input.shape[1]", "expected a whole number, got string '64'", (4, 21)),
        ("stages[0][0] column 5 (kernel)", "expected a whole number, got string '3'", (6, 21)),
        ("stages[1][0].stride", "expected a whole number, got string 'yes'", (7, 36)),
    ]


def test_booleans_where_numbers_belong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
        ghostspec: 1
        name: tiny
        width: true
        stem: {filters: 16, stride: true}
        stages:
          - [[16, 16, 0, true, 3]]
          - [{hidden: 48, out: false}]
        """
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    got = [(d["path"], d["message"], at(d)) for d in records]
    assert got == [
        ("width", "expected a number, got boolean true", (3, 8)),
        ("stem.stride", "expected a whole number, got boolean true", (4, 29)),
        ("stages[0][0] column 4 (stride)", "expected a whole number, got boolean true", (6, 18)),
        ("stages[1][0].out", "expected a whole number, got boolean false", (7, 24)),
    ]


# YAML 1.1 forms that YAML 1.2 (ghostspec and editors) reads as text: refused where a number or
# a boolean belongs, at the value, with the plain form in the hint.
@pytest.mark.parametrize(
    ("line", "where", "plain"),
    [
        ("head: {classes: 1_000}", (7, 17), "write 1000"),
        ("head: {classes: 0b1010}", (7, 17), "write 10"),
        ("head: {classes: 1:30}", (7, 17), "write 90"),
        ("divisor: +0x8", (7, 10), "write 8"),
        ("divisor: -0o7", (7, 10), "write -7"),
        ("width: 1_0.5", (7, 8), "write 10.5"),
        ("head: {include_top: yes}", (7, 21), "write true"),
        ("head: {include_top: Off}", (7, 21), "write false"),
    ],
    ids=[
        "underscore",
        "binary",
        "sexagesimal",
        "signed-hex",
        "signed-octal",
        "float",
        "yes",
        "off",
    ],
)
def test_yaml_1_1_forms_are_refused_with_the_plain_form(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    where: tuple[int, int],
    plain: str,
) -> None:
    d = single(capsys, write(tmp_path, VALID + line + "\n"))
    assert "got string" in d["message"]
    assert at(d) == where
    assert d["hint"].endswith(plain), d["hint"]
    assert "YAML 1.2" in d["hint"]


def test_yaml_1_2_core_forms_are_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the core schema calls numbers, ghostspec reads as numbers (ruamel's own 1.2 rules
    read `.5e1` as text and `+0x8` as a number; editors do the opposite)."""
    import ghostspec

    text = VALID + "width: .5e1\ndivisor: 0o10\nhead: {classes: 0x10, dropout: 1.e-1}\n"
    spec = ghostspec.load("core.yaml", text=text)
    assert (spec.width, spec.divisor, spec.head.classes, spec.head.dropout) == (5.0, 8, 16, 0.1)
    assert ghostspec.load("o.yaml", text=VALID + "head: {classes: 017}\n").head.classes == 17
    described = ghostspec.load("d.yaml", text=VALID + "description: 2001-12-14 10:00:00\n")
    assert described.description == "2001-12-14 10:00:00"  # no timestamps in the core schema
    code, _ = validate(capsys, write(tmp_path, VALID + "head: {include_top: yes}\n"))
    assert code == 2  # and `yes` is text, not a boolean


def test_yaml_1_1_directive_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, "# a comment\n%YAML 1.1\n---\n" + VALID))
    assert d["message"] == "%YAML 1.1 is not supported; ghostspec reads YAML 1.2"
    assert at(d) == (2, 1)
    code, _ = validate(capsys, write(tmp_path, "%YAML 1.2\n---\n" + VALID, "ok.yaml"))
    assert code == 0


def test_an_empty_value_is_reported_on_its_key_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`key:` with nothing after it is null; ruamel marks such a value on the next line, editors
    on the key's, and so does ghostspec."""
    code, records = validate(
        capsys, write(tmp_path, VALID + "ghost:\nhead:\n  pooling:\n  classes: 10\n")
    )
    assert code == 2
    assert [(d["path"], d["line"]) for d in records] == [("ghost", 7), ("head.pooling", 9)]


def test_std_entries_must_be_above_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("{shape: [64, 64, 3]}", "{shape: [64, 64, 3], std: [0.2, 0, -1]}")
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    assert [(d["path"], d["message"], at(d)) for d in records] == [
        ("input.std[1]", "0 must be greater than 0.0", (3, 40)),
        ("input.std[2]", "-1 must be greater than 0.0", (3, 43)),
    ]


def test_unknown_keys_suggest_the_known_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
        ghostspec: 1
        name: tiny
        stem: {filtres: 16}
        stages:
          - [{hidden: 16, out: 16, strde: 1}]
        head:
          clases: 10
          zzzzz: 1
        """
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    got = [(d["path"], d["message"], d["hint"], at(d)) for d in records]
    assert got[:3] == [
        ("stem.filtres", "unknown field 'filtres'", "did you mean 'filters'?", (3, 8)),
        ("stages[0][0].strde", "unknown field 'strde'", "did you mean 'stride'?", (5, 28)),
        ("head.clases", "unknown field 'clases'", "did you mean 'classes'?", (7, 3)),
    ]
    path, message, hint, where = got[3]
    assert (path, message, where) == ("head.zzzzz", "unknown field 'zzzzz'", (8, 3))
    assert hint.startswith("known fields:")
    assert "classes" in hint


# --- the file itself ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, tmp_path / "nope.yaml")
    assert d["message"] == "no such file"
    assert d["file"].endswith("nope.yaml")
    assert at(d) == (None, None)


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "specs.yaml"
    folder.mkdir()
    d = single(capsys, folder)
    assert "is a directory" in d["message"]
    assert at(d) == (None, None)


@pytest.mark.parametrize("name", ["spec.txt", "spec"])
def test_wrong_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    d = single(capsys, write(tmp_path, VALID, name))
    assert "unknown file type" in d["message"]
    assert ".yaml" in d["hint"]
    assert ".json" in d["hint"]


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("spec.yaml", "ghostspec: 1\nname: a\nname: b\nstages: [[[16, 16, 0, 1, 3]]]\n", (3, 1)),
        (
            "spec.json",
            '{"ghostspec": 1, "name": "a", "stages": [[[16, 16, 0, 1, 3]]],\n'
            ' "head": {"classes": 1, "classes": 2}}\n',
            (2, 25),
        ),
    ],
    ids=["yaml", "json"],
)
def test_duplicate_keys(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    where: tuple[int, int],
) -> None:
    d = single(capsys, write(tmp_path, text, name))
    assert d["message"].startswith("duplicate key")
    assert "once" in d["hint"]
    assert at(d) == where


@pytest.mark.parametrize(
    ("line", "tag", "where"),
    [
        pytest.param("name: !foo tiny", "!foo", (2, 7), id="custom-scalar"),
        pytest.param("description: !foo [1, 2]", "!foo", (7, 14), id="custom-list"),
        pytest.param(
            "description: !!python/object:os.system x",
            "python/object:os.system",
            (7, 14),
            id="python-scalar",
        ),
        pytest.param(
            "description: !!python/object:os.system [echo]",
            "python/object:os.system",
            (7, 14),
            id="python-list",
        ),
        pytest.param(
            "head: !!python/object:os.system {classes: 3}",
            "python/object:os.system",
            (7, 7),
            id="python-mapping",
        ),
    ],
)
def test_custom_tags_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    tag: str,
    where: tuple[int, int],
) -> None:
    named = line.startswith("name:")
    text = VALID.replace("name: tiny", line) if named else VALID + line + "\n"
    d = single(capsys, write(tmp_path, text))
    assert tag in d["message"]
    assert "not allowed" in d["message"]
    assert at(d) == where


def test_python_tag_on_stages_is_not_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worst case of the gap above: a python tag on a valid value validates."""
    text = VALID.replace("stages:", "stages: !!python/object/apply:os.system")
    code, _ = validate(capsys, write(tmp_path, text))
    assert code == 2


# --- compact rows and blocks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "n", "column"),
    [("[16, 16, 0, 1]", 4, 6), ("[16, 16, 0, 1, 3, 7]", 6, 6)],
    ids=["4-columns", "6-columns"],
)
def test_compact_row_with_wrong_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, n: int, column: int
) -> None:
    d = single(capsys, write(tmp_path, VALID.replace("[[16, 16, 0, 1, 3]]", f"[{row}]")))
    assert f"a compact row has 5 columns [hidden, out, se, stride, kernel], not {n}" == d["message"]
    assert "mapping form" in d["hint"]
    assert d["path"] == "stages[0][0]"
    assert at(d) == (5, column)


def test_even_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID + "  - [{hidden: 48, out: 24, kernel: 4}]\n"
    text = text.replace("[[48, 24, 0, 2, 3]]", "[[48, 24, 0, 2, 6]]")
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    assert [(d["path"], d["message"], at(d)) for d in records] == [
        ("stages[1][0] column 5 (kernel)", "6 is even; kernels must be odd", (6, 21)),
        ("stages[2][0].kernel", "4 is even; kernels must be odd", (7, 36)),
    ]


def test_stride_3_in_a_compact_row_points_at_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, VALID.replace("[[48, 24, 0, 2, 3]]", "[[48, 24, 0, 3, 3]]")))
    assert d["message"] == "3 is not one of 1, 2"
    assert d["path"] == "stages[1][0] column 4 (stride)"
    # `  - [[48, 24, 0, 3, 3]]`: the row starts at column 6, the stride is at column 18.
    assert at(d) == (6, 18)
    err = validate_text(capsys, write(tmp_path, VALID.replace("0, 2, 3", "0, 3, 3"), "b.yaml"))
    assert "b.yaml:6:18: error: stages[1][0] column 4 (stride): 3 is not one of 1, 2" in err
    assert "\n      |                  ^\n" in err


# --- semantic rules (valid for the schema, refused by validation) ---------------------------


def test_repeat_with_stride_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID + "  - [{hidden: 48, out: 24, stride: 2, repeat: 3}]\n"
    d = single(capsys, write(tmp_path, text))
    assert "repeat 3 with stride 2" in d["message"]
    assert "stride-1 block" in d["hint"]
    assert d["path"] == "stages[2][0].repeat"
    assert at(d) == (7, 47)


def test_input_smaller_than_total_stride(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, VALID.replace("[64, 64, 3]", "[64, 2, 3]")))
    assert d["message"] == "width 2 is smaller than the network's total stride 4"
    assert "at least 4x4" in d["hint"]
    assert d["path"] == "input.shape[1]"
    assert at(d) == (3, 21)


def test_include_top_needs_pooling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, VALID + "head:\n  pooling: null\n"))
    assert "classifier needs global pooling" in d["message"]
    assert "include_top" in d["hint"]
    assert at(d) == (8, 12)
    code, _ = validate(
        capsys, write(tmp_path, VALID + "head: {pooling: null, include_top: false}\n", "ok.yaml")
    )
    assert code == 0


@pytest.mark.parametrize(
    "overrides",
    [
        ("width=10", "stages.0.0.0=100000", "stages.0.0.1=100000"),
        ("stem.filters=100000", "stages.1.0.0=100000", "stages.1.0.1=100000"),
    ],
    ids=["width", "channels"],
)
def test_network_over_the_size_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: tuple[str, ...]
) -> None:
    code, records = validate(capsys, write(tmp_path, VALID), *overrides)
    assert code == 2
    params = [d for d in records if "parameters" in d["message"]]
    assert params, records
    message = params[0]["message"]
    assert "the network would have" in message
    assert "(limit 1,000,000,000)" in message
    assert params[0]["line"] is not None


def test_many_huge_blocks_over_the_size_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join("  - [{hidden: 100000, out: 100000, repeat: 64}]\n" for _ in range(4))
    text = "ghostspec: 1\nname: huge\ninput: {shape: [64, 64, 3]}\nstages:\n" + rows
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    messages = " ".join(d["message"] for d in records)
    assert "parameters (limit 1,000,000,000)" in messages
    assert "multiply-adds" in messages


# --- several errors, and the JSON records ---------------------------------------------------


def test_several_errors_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
        ghostspec: 2
        name: "bad name!"
        width: -1
        stem: {kernel: 2, stride: 3}
        stages:
          - [[16, 16, 0, 1]]
          - [{hidden: 0, out: 24, se: 1.5}]
        head: {dropout: 1, colour: red}
        """
    code, records = validate(capsys, write(tmp_path, text))
    assert code == 2
    got = [(d["line"], d["path"]) for d in records]
    assert got == [
        (1, "ghostspec"),
        (2, "name"),
        (3, "width"),
        (4, "stem.kernel"),
        (4, "stem.stride"),
        (6, "stages[0][0]"),
        (7, "stages[1][0].hidden"),
        (7, "stages[1][0].se"),
        (8, "head.dropout"),
        (8, "head.colour"),
    ]
    positions = [(d["line"], d["column"]) for d in records]
    assert positions == sorted(positions)
    err = validate_text(capsys, write(tmp_path, text))
    assert err.rstrip().endswith("10 errors.")


def test_json_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, VALID, "good.yaml")
    bad = write(tmp_path, VALID.replace("0, 2, 3", "0, 3, 3"), "bad.yaml")
    code = run(["validate", str(good), str(bad), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == ""
    report = json.loads(out)
    assert set(report) == {"valid", "diagnostics"}
    assert [v["file"] for v in report["valid"]] == [str(good)]
    assert report["valid"][0]["name"] == "tiny"
    assert isinstance(report["valid"][0]["params"], int)
    (d,) = report["diagnostics"]
    assert d == {
        "file": str(bad),
        "message": "3 is not one of 1, 2",
        "path": "stages[1][0] column 4 (stride)",
        "line": 6,
        "column": 18,
        "hint": None,
        "override": None,
        "severity": "error",
    }


# --- overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["width", "=3", "a..b=1"])
def test_override_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str) -> None:
    d = single(capsys, write(tmp_path, VALID), override)
    assert repr(override) in d["message"]
    assert "override" in d["message"]


def test_override_without_value_has_an_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, VALID), "width")
    assert "key.path=value" in d["message"]
    assert "--set width=1.3" in d["hint"]


def test_override_into_a_scalar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = single(capsys, write(tmp_path, VALID), "name.x=3")
    assert d["message"] == "name.x: cannot descend into a scalar value"
    assert d["override"] == "name.x=3"


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("stages.5.0.0=3", "stages.5: index 5 is out of range (the list has 2 items)"),
        ("stages.0.0.9=3", "stages.0.0.9: index 9 is out of range (the list has 5 items)"),
        ("stages.x=3", "stages is a list; use an index"),
    ],
)
def test_override_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, words: str
) -> None:
    d = single(capsys, write(tmp_path, VALID), override)
    assert words in d["message"]
    assert d["override"] == override


def test_override_value_that_fails_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID)
    d = single(capsys, path, "stages.1.0.3=3")
    assert d["message"] == "3 is not one of 1, 2"
    assert d["override"] == "stages.1.0.3=3"
    assert at(d) == (6, 18)  # the value the override replaced
    d = single(capsys, path, "width=20")
    assert d["message"] == "20 is above the maximum 10.0"
    assert d["override"] == "width=20"
    assert at(d) == (None, None)  # the override created the key
    err = validate_text(capsys, path, "head.clases=3")
    assert "head.clases: unknown field 'clases' (from --set head.clases=3)" in err
    assert "did you mean 'classes'?" in err


def test_override_collection_is_not_located_in_its_own_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, VALID), 'input.shape=[96, "x", 3]')
    assert d["override"] == 'input.shape=[96, "x", 3]'
    assert d["line"] in (None, 3)


def test_override_index_of_non_ascii_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'²' passes str.isdigit() but not int(): it is a key, and a list has no keys."""
    d = single(capsys, write(tmp_path, VALID), "stages.²=1")
    assert d["message"] == "stages.²: stages is a list; use an index"
    assert d["override"] == "stages.²=1"
    d = single(capsys, write(tmp_path, VALID), "head.٣=1")  # an Arabic-Indic three
    assert d["message"] == "unknown field '٣'"


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("input.shape=" + "[" * 5000, "nesting deeper than 64 levels"),
        ("input.shape=" + "{a: " * 5000, "nesting deeper than 64 levels"),
        ("input.shape=" + "- " * 3000 + "1", "nesting is too deep to read"),
        (".".join(["head"] * 5000) + "=1", "the key has more than 64 parts"),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists", "long-key"],
)
def test_deep_override_is_refused_like_a_deep_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, words: str
) -> None:
    d = single(capsys, write(tmp_path, VALID), override)
    assert words in d["message"]
    assert d["message"].startswith("override '")
    assert len(d["message"]) < 200  # the 5000 characters are not repeated back
    assert d["override"].endswith("...")


def test_override_values_are_read_like_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = single(capsys, write(tmp_path, VALID), "head.classes=1_000")
    assert d["message"] == "expected a whole number, got string '1_000'"
    assert d["hint"].endswith("write 1000")
    assert d["override"] == "head.classes=1_000"
    code, _ = validate(capsys, write(tmp_path, VALID), "width=.5e1", "divisor=0o10")
    assert code == 0


def test_override_shape_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, records = validate(capsys, write(tmp_path, VALID), "input.shape=[96,96,3]")
    assert (code, records) == (0, [])


# --- commands that would import TensorFlow --------------------------------------------------

NO_TENSORFLOW = """\
import sys
from ghostspec.cli import run
codes = [run(["build", sys.argv[1], "-o", sys.argv[2]]), run(["inspect", sys.argv[1]])]
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(codes, heavy)
"""


def test_build_and_inspect_refuse_a_bad_spec_without_tensorflow(tmp_path: Path) -> None:
    spec = write(tmp_path, VALID.replace("0, 2, 3", "0, 3, 3"))
    output = tmp_path / "out.keras"
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(spec), str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "[2, 2] []", result.stderr
    assert "Traceback" not in result.stderr
    assert "3 is not one of 1, 2" in result.stderr
    assert not output.exists()
