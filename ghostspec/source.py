"""Reading spec files with the position of every node, and applying `--set` overrides.

Nothing is interpreted here: the result is plain data plus a way to map a path inside it back to a
line and column, which is what every later diagnostic needs. No language rule lives here either:
a language (specs, recipes) hands in what it needs, such as the column names of its compact rows.

Scalars are read by YAML 1.2's core schema, exactly as editors read them (yaml-language-server,
the server behind VS Code's YAML extension, uses it): `1_000`, `0b101`, `1:30` and `yes` are text,
not numbers or booleans, so ghostspec and the editor never see different values in one file.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
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


@dataclass(frozen=True)
class Override:
    """One `--set key.path=value`, parsed."""

    text: str
    path: DocPath
    value: Any
    created: bool = False


@dataclass
class Document:
    """A loaded file: the round-trip tree (positions), its plain data, the overrides applied and
    the language it was read for (its compact-row columns name positions)."""

    name: str
    text: str
    tree: Any
    overrides: tuple[Override, ...] = ()
    language: Language = Language()
    _lines: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._lines = self.text.splitlines()

    def data(self) -> Any:
        """The tree as plain dicts, lists and scalars, refusing alias bombs and custom tags."""
        walker = _PlainWalker(self)
        result = walker.convert(self.tree, ())
        if walker.problems:
            raise SpecError(walker.problems)
        return result

    def diagnostic(
        self, path: DocPath, message: str, hint: str | None = None, *, at_key: bool = False
    ) -> Diagnostic:
        """A diagnostic for the node at `path`: its position, or the nearest ancestor's."""
        line, column = self.position(path, at_key=at_key)
        override = self.override_for(path)
        if override is not None:
            inside = len(override.path) < len(self.resolve(path))
            if override.created:
                line = column = None
            elif inside:
                line, column = self.position(override.path)
        source_line = None
        if line is not None and 0 < line <= len(self._lines):
            source_line = self._lines[line - 1]
        return Diagnostic(
            file=self.name,
            message=message,
            path=format_path(path, self.tree, self.language.row_columns),
            line=line,
            column=column,
            hint=hint,
            override=override.text if override else None,
            override_flag=self.language.flag if override else None,
            source_line=source_line,
        )

    def override_for(self, path: DocPath) -> Override | None:
        """The last override that set this node, one of its parents or one of its children."""
        resolved = self.resolve(path)
        for ov in reversed(self.overrides):
            n = min(len(ov.path), len(resolved))
            if ov.path[:n] == resolved[:n]:
                return ov
        return None

    def resolve(self, path: DocPath) -> DocPath:
        """The path with compact-row field names turned into column indices."""
        node = self.tree
        out: list[PathKey] = []
        for key in path:
            if isinstance(node, CommentedSeq) and isinstance(key, str):
                key = _column_index(key, node, self.language.row_columns)
            out.append(key)
            node = _child(node, key)
        return tuple(out)

    def position(self, path: DocPath, *, at_key: bool = False) -> tuple[int | None, int | None]:
        """1-based line and column of the node at `path` (of its key with `at_key`)."""
        node = self.tree
        best: tuple[int, int] | None = (
            (0, 0) if isinstance(node, CommentedMap | CommentedSeq) else None
        )
        for i, key in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedSeq) and isinstance(key, str):
                key = _column_index(key, node, self.language.row_columns)
            if isinstance(node, CommentedMap) and key in node:
                pos = _lookup(node.lc.key if (last and at_key) else node.lc.value, key)
                key_pos = _lookup(node.lc.key, key)
                if node[key] is None and pos and key_pos and pos[0] != key_pos[0]:
                    pos = key_pos  # `key:` with nothing after it: ruamel marks the next line
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                pos = _lookup(node.lc.item, key)
                node = node[key]
            else:
                break
            if pos is not None and pos[0] is not None:
                best = (pos[0], pos[1])
        if best is None:
            return None, None
        return best[0] + 1, best[1] + 1


def _child(node: Any, key: PathKey) -> Any:
    """The child at `key`, or None where there is none."""
    if isinstance(node, dict) and key in node:
        return node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _lookup(getter: Any, key: Any) -> tuple[int, int] | None:
    """ruamel's recorded position, or None for nodes an override created."""
    try:
        return getter(key)
    except (KeyError, IndexError, TypeError):
        return None


def _column_index(name: str, row: CommentedSeq, columns: tuple[str, ...]) -> str | int:
    """A field name inside a compact row maps to its column (rows are lists of scalars)."""
    if name in columns and all(not isinstance(v, dict | list) for v in row):
        return columns.index(name)
    return name


def format_path(path: DocPath, tree: Any = None, row_columns: tuple[str, ...] = ()) -> str:
    """`stages[1][0] column 4 (stride)` for compact rows, `head.classes` for mappings."""
    out = ""
    node = tree
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif isinstance(node, list) and key in row_columns:
            out += f" column {row_columns.index(key) + 1} ({key})"
            node = None
            continue
        else:
            out += f".{key}" if out else key
        node = _child(node, key)
    return out


class _PlainWalker:
    """Converts ruamel's tree to plain data with a node budget, so alias bombs stop early."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
        self.problems: list[Diagnostic] = []
        self.stopped = False

    def fail(self, path: DocPath, message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.diagnostic(path, message, hint))

    def convert(self, node: Any, path: DocPath) -> Any:
        if self.stopped:
            return None
        self.count += 1
        if self.count > MAX_NODES:
            self.stopped = True
            self.fail(
                path,
                f"the document expands to more than {MAX_NODES} nodes",
                "anchors and aliases (& and *) are expanded; no ghostspec file needs that many",
            )
            return None
        if len(path) > MAX_DEPTH:
            self.stopped = True
            self.fail(path, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        tag = getattr(node, "tag", None)
        tag_value = getattr(tag, "value", tag)
        if isinstance(tag_value, str) and tag_value not in CORE_TAGS:
            shown = tag_value.replace("tag:yaml.org,2002:", "!!")
            self.fail(
                path,
                f"YAML tag {shown!r} is not allowed",
                "remove the tag; ghostspec files are plain data",
            )
            return None
        if type(node).__name__ == "TaggedScalar":
            return str(node.value)
        if isinstance(node, dict):
            result: dict[Any, Any] = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    self.fail(path, f"key {key!r} is not a string", "quote the key")
                    continue
                result[key] = self.convert(value, (*path, key))
            return result
        if isinstance(node, list):
            return [self.convert(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, bool) or node is None:
            return node
        if type(node).__name__ == "ScalarBoolean":
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        self.fail(path, f"unsupported YAML value {node!r}")
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
    if not path.exists():
        raise SpecError([Diagnostic(file=name, message="no such file", hint="check the path")])
    if path.is_dir():
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


def load_document(
    source: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    text: str | None = None,
    language: Language = Language(),
    others: Sequence[Language] = (),
    shown_as: str | None = None,
) -> Document:
    """Read a file (or `text` named `source`) and apply overrides. Raises SpecError.

    `others`: the languages a file might be by mistake; one of theirs is refused in one line.
    `shown_as`: the file's name in diagnostics, where it is not the path read."""
    name = str(source) if shown_as is None else shown_as
    if text is None:
        text = read_text(Path(source), language)
    tree = parse_text(text, name)
    if tree is None:
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message="the file is empty",
                    line=1,
                    column=1,
                    hint=language.start,
                )
            ]
        )
    if not isinstance(tree, CommentedMap):
        kind = "list" if isinstance(tree, list) else f"single value ({str(tree)[:40]!r})"
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"the top level must be a mapping of keys to values, not a {kind}",
                    line=1,
                    column=1,
                    hint=language.start,
                    source_line=text.splitlines()[0] if text.splitlines() else None,
                )
            ]
        )
    declared = language_of(tree, others)
    if declared is not None and language.version_key not in tree:
        raise SpecError([_other_language(name, text, tree, declared, language)])
    doc = Document(name=name, text=text, tree=tree, language=language)
    applied = []
    problems = []
    for text_ in overrides:
        ov = parse_override(text_, name, language=language)
        created = not _exists(tree, ov.path)
        problem = apply_override(tree, ov)
        if problem:
            problems.append(
                Diagnostic(
                    file=name, message=problem, override=ov.text, override_flag=language.flag
                )
            )
        applied.append(dataclasses.replace(ov, created=created))
    if problems:
        raise SpecError(problems)
    doc.overrides = tuple(applied)
    return doc


def _other_language(
    name: str, text: str, tree: CommentedMap, declared: Language, expected: Language
) -> Diagnostic:
    """A recipe where a spec belongs, or the other way round: one diagnostic, on its version."""
    line, column = (v + 1 for v in tree.lc.key(declared.version_key))
    lines = text.splitlines()
    return Diagnostic(
        file=name,
        message=f"this is a {declared.title} (`{declared.version_key}:`), not a {expected.title}",
        line=line,
        column=column,
        hint=f"{declared.used_by}; {expected.start}",
        source_line=lines[line - 1] if 0 < line <= len(lines) else None,
    )


def detect_language(source: str | Path, languages: Sequence[Language]) -> Language:
    """The language a file declares by its version key, for commands that take several.

    An empty or non-mapping file counts as the first language, whose loading then says what is
    wrong; a mapping that declares none of them is refused with what it should start with.
    """
    name = str(source)
    text = read_text(Path(source), languages[0])
    tree = parse_text(text, name)
    if not isinstance(tree, CommentedMap):
        return languages[0]
    declared = language_of(tree, languages)
    if declared is None:
        lines = text.splitlines()
        line, column = (v + 1 for v in tree.lc.key(next(iter(tree)))) if tree else (1, 1)
        titles = " nor a ".join(language.title for language in languages)
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"the file is neither a {titles}: it has no version key",
                    line=line,
                    column=column,
                    hint="; ".join(str(language.start) for language in languages),
                    source_line=lines[line - 1] if 0 < line <= len(lines) else None,
                )
            ]
        )
    return declared


def _exists(tree: Any, path: DocPath) -> bool:
    node = tree
    for key in path:
        if isinstance(node, dict) and str(key) in node:
            node = node[str(key)]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return False
    return True


def parse_override(text: str, file: str = "--set", *, language: Language = Language()) -> Override:
    """`a.b.0=value`: the value is YAML, read like a file (core schema, the same depth guard)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    flag = language.flag
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not sep or not key:
        examples = " or ".join(f"{flag} {e}" for e in language.examples)
        raise SpecError(
            [
                Diagnostic(
                    file=file,
                    message=f"override {shown!r} is not of the form key.path=value",
                    hint=f"for example {examples}",
                )
            ]
        )
    segments = key.split(".")
    if len(segments) > MAX_DEPTH:
        raise SpecError(
            [
                Diagnostic(
                    file=file,
                    message=f"override {shown!r}: the key has more than {MAX_DEPTH} parts",
                    override=shown,
                    override_flag=flag,
                )
            ]
        )
    parts: list[PathKey] = []
    for part in segments:
        if not part:
            raise SpecError(
                [Diagnostic(file=file, message=f"override {shown!r} has an empty path segment")]
            )
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses
        parts.append(int(part) if part.isascii() and part.isdigit() else part)
    if not raw.strip():
        return Override(text=text, path=tuple(parts), value=None)
    try:
        value = parse_text(raw, file)
    except SpecError as err:
        first = err.diagnostics[0]
        problem, hint = f"in the value: {first.message}", first.hint
        if first.message.startswith("YAML syntax: "):
            problem = f"the value is not valid YAML ({first.message.removeprefix('YAML syntax: ')})"
            hint = f"quote values with spaces or brackets: {flag} 'key=[1, 2, 3]'"
        raise SpecError(
            [
                Diagnostic(
                    file=file,
                    message=f"override {shown!r}: {problem}",
                    hint=hint,
                    override=shown,
                    override_flag=flag,
                )
            ]
        ) from None
    return Override(text=text, path=tuple(parts), value=value)


def apply_override(tree: Any, ov: Override) -> str | None:
    """Set the value in place; missing mapping keys are created. Returns a problem or None."""
    node = tree
    for i, key in enumerate(ov.path):
        last = i == len(ov.path) - 1
        where = ".".join(str(k) for k in ov.path[: i + 1])
        if isinstance(node, list):
            if not isinstance(key, int):
                parent = ".".join(map(str, ov.path[:i])) or "the top"
                return f"{where}: {parent} is a list; use an index"
            if not 0 <= key < len(node):
                return f"{where}: index {key} is out of range (the list has {len(node)} items)"
            if last:
                node[key] = ov.value
                return None
            node = node[key]
        elif isinstance(node, dict):
            key = str(key)
            if last:
                node[key] = ov.value
                return None
            if key not in node or node[key] is None:
                node[key] = CommentedMap()
            node = node[key]
        else:
            return f"{where}: cannot descend into a scalar value"
    return None


def dump_yaml(data: Any) -> str:
    stream = io.StringIO()
    yaml_io().dump(data, stream)
    return stream.getvalue()
