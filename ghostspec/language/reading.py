"""Reading spec files with the position of every node, and applying `--set` overrides.

Nothing is interpreted here: the result is plain data plus a way to map a path inside it back to a
line and column, which is what every later diagnostic needs. No language rule lives here either:
a language (specs, recipes) hands in what it needs, such as the column names of its compact rows.

Scalars are read by YAML 1.2's core schema, exactly as editors read them (yaml-language-server,
the server behind VS Code's YAML extension, uses it): `1_000`, `0b101`, `1:30` and `yes` are text,
not numbers or booleans, so ghostspec and the editor never see different values in one file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.resolver import VersionedResolver

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file

PathKey = str | int
DocPath = tuple[PathKey, ...]

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64
SUFFIXES = (".yaml", ".yml", ".json")
CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")
)

# YAML 1.2.2, section 10.3.2 (the core schema): the only plain scalars that are not text. Merge
# keys (`<<`) are not core but editors apply them too, so they stay.
_CORE_SCALARS: tuple[tuple[str, str, str], ...] = (
    ("null", r"~|null|Null|NULL|", "~nN"),
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
    ("merge", r"<<", "<"),
)


class CoreResolver(VersionedResolver):
    """ruamel's resolver with YAML 1.2's core schema exactly (ruamel's own 1.2 rules also take
    `1_000`, `0b1` and `+0x1f` as numbers, which editors read as text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # first character -> (tag, pattern); ruamel looks up "" for the empty scalar
        self._core: dict[str, list[tuple[str, re.Pattern[str]]]] = {"": []}
        for name, pattern, first in _CORE_SCALARS:
            compiled = re.compile(f"^(?:{pattern})$")
            for ch in first:
                self._core.setdefault(ch, []).append((f"tag:yaml.org,2002:{name}", compiled))
        self._core[""].append(("tag:yaml.org,2002:null", re.compile("^$")))

    @property
    def versioned_resolver(self) -> Any:
        return self._core


@dataclass(frozen=True)
class Language:
    """What a language read through this module tells the reader (which knows no rule itself).

    `version_key`: the top-level key that declares a file of the language (`ghostspec`,
    `ghostspec-recipe`); `noun` and `title` name it in messages. `row_columns`: the column names
    of its compact rows (a list of scalars such as `[16, 16, 0, 1, 3]`); a path that names a field
    inside such a list means that column, and prints as `stages[1][0] column 4 (stride)`. `flag`
    and `examples`: how its overrides are written on the command line, for hints. `start`: how a
    file of the language begins, and `used_by`: where such files go, for hints.
    """

    row_columns: tuple[str, ...] = ()
    flag: str = "--set"
    examples: tuple[str, ...] = ("key.path=1",)
    start: str | None = None
    version_key: str = ""
    noun: str = "document"
    title: str = "document"
    used_by: str = ""


def language_of(tree: Any, languages: Sequence[Language]) -> Language | None:
    """The language a top-level mapping declares by its version key, if any."""
    if isinstance(tree, dict):
        for language in languages:
            if language.version_key and language.version_key in tree:
                return language
    return None


def yaml_io() -> YAML:
    """ruamel's round-trip reader and writer with the core schema (see the module docstring)."""
    yaml = YAML(typ="rt")
    yaml.Resolver = CoreResolver
    yaml.allow_duplicate_keys = False
    return yaml


_YAML11_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), "true"),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), "false"),
}
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_CORE_NUMBER = re.compile("|".join(p for n, p, _ in _CORE_SCALARS if n in ("int", "float")))
_NUMBER_1_1 = re.compile(
    r"[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
    r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)"
)


def yaml11_reading(text: str) -> str | None:
    """The plain YAML 1.2 form of `text` where YAML 1.1 (PyYAML, older tools) would read a number
    or a boolean and YAML 1.2 reads text: `1_000` -> `1000`, `0b101` -> `5`, `1:30` -> `90`,
    `+0x1f` -> `31`, `yes` -> `true`. None for anything else, core numbers included."""
    if _CORE_NUMBER.fullmatch(text):
        return None
    if text in _YAML11_BOOLEANS:
        return _YAML11_BOOLEANS[text]
    sign = "-" if text.startswith("-") else ""
    body = text.lstrip("+-").replace("_", "")
    if _SEXAGESIMAL.fullmatch(text):
        whole, _, fraction = body.partition(".")
        value = 0
        for part in whole.split(":"):
            value = value * 60 + int(part)
        return f"{sign}{value}" + (f".{fraction}" if fraction else "")
    if not _NUMBER_1_1.fullmatch(text) or not any(c.isdigit() for c in body):
        return None
    plain = body
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if body[:2].lower() == prefix:
            if len(body) == 2:
                return None
            plain = str(int(body[2:], base))
    return sign + plain


def _yaml_error(name: str, text: str, err: YAMLError) -> Diagnostic:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    message = f"YAML syntax: {problem}"
    if context and isinstance(err, MarkedYAMLError):
        message += f" ({context})"
    hint = None
    offset = getattr(mark, "index", None)
    if "\t" in text and offset is not None and "\t" in text[max(0, offset - 1) : offset + 1]:
        hint = "YAML does not allow tabs for indentation; indent with spaces"
    elif "duplicate key" in str(err).lower():
        message = f"duplicate key: {problem}"
        hint = "each key may appear once in a mapping; remove or rename one of them"
    lines = text.splitlines()
    if mark is None:
        return Diagnostic(file=name, message=message, hint=hint)
    line = mark.line + 1
    return Diagnostic(
        file=name,
        message=message,
        line=line,
        column=mark.column + 1,
        hint=hint,
        source_line=lines[line - 1] if 0 < line <= len(lines) else None,
    )


def _flow_depth(text: str) -> tuple[int, int] | None:
    """Line and column where `[`/`{` nesting first passes MAX_DEPTH, found before ruamel, whose
    scanner is slow on deep nesting; None where it never does."""
    depth = 0
    quote = ""
    line, column = 1, 0
    previous = "\n"
    for ch in text:
        column += 1
        if ch == "\n":
            line, column = line + 1, 0
            if quote == "#":
                quote = ""
        elif quote:
            if ch == quote and quote != "#":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and previous in " \t\n":
            quote = "#"
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, column
        elif ch in "]}":
            depth = max(0, depth - 1)
        previous = ch
    return None


_DIRECTIVE = re.compile(r"%YAML[ \t]+(\S+)")


def _version_problem(text: str, name: str) -> Diagnostic | None:
    """A `%YAML 1.1` directive would switch ruamel (and editors) to YAML 1.1's number and boolean
    forms; ghostspec reads YAML 1.2 only, so say so instead of reading the file differently."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = _DIRECTIVE.match(line)
        if found is None:
            return None  # directives come first; this is content (or `---`)
        if found.group(1) != "1.2":
            return Diagnostic(
                file=name,
                message=f"%YAML {found.group(1)} is not supported; ghostspec reads YAML 1.2",
                line=number,
                column=1,
                hint="remove the %YAML line (in YAML 1.2, `yes` is text and numbers have no `_`)",
                source_line=line,
            )
    return None


def parse_text(text: str, name: str) -> Any:
    """Parse YAML (or JSON, which is YAML) into ruamel's round-trip tree."""
    deep = _flow_depth(text)
    if deep is not None:
        line, column = deep
        lines = text.splitlines()
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"nesting deeper than {MAX_DEPTH} levels",
                    line=line,
                    column=column,
                    hint="ghostspec files need a few levels at most",
                    source_line=lines[line - 1] if line <= len(lines) else None,
                )
            ]
        )
    problem = _version_problem(text, name)
    if problem:
        raise SpecError([problem])
    try:
        return yaml_io().load(text)
    except YAMLError as err:
        raise SpecError([_yaml_error(name, text, err)]) from None
    except RecursionError:
        raise SpecError([Diagnostic(file=name, message="nesting is too deep to read")]) from None


def read_text(path: Path, language: Language = Language()) -> str:
    """The file's text, with clear diagnostics for the ways reading can fail."""
    name = str(path)
    noun = language.noun
    try:
        exists, folder = path.exists(), path.is_dir()
    except OSError as err:  # the name is too long, or a link loops
        message = f"cannot read this path: {err.strerror or err}"
        raise SpecError([Diagnostic(file=name, message=message, hint="check the path")]) from None
    if not exists:
        raise SpecError([Diagnostic(file=name, message="no such file", hint="check the path")])
    if folder:
        raise SpecError(
            [
                Diagnostic(
                    file=name, message=f"is a directory, not a {noun} file", hint="name a file"
                )
            ]
        )
    if path.suffix.lower() not in SUFFIXES:
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"unknown file type {path.suffix or '(none)'!r}",
                    hint=f"{noun}s are .yaml, .yml or .json files",
                )
            ]
        )
    raw = read_regular_file(path, MAX_FILE_BYTES, f"{noun} file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        column = len(raw[line_start : err.start].decode("utf-8", errors="replace")) + 1
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"invalid UTF-8 (byte 0x{raw[err.start]:02x})",
                    line=line,
                    column=column,
                    hint="save the file as UTF-8",
                )
            ]
        ) from None


def dump_yaml(data: Any) -> str:
    stream = io.StringIO()
    yaml_io().dump(data, stream)
    return stream.getvalue()
