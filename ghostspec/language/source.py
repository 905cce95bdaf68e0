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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.overrides import Override, _exists, apply_override, parse_override
from ghostspec.language.reading import (
    CORE_TAGS,
    MAX_DEPTH,
    MAX_NODES,
    DocPath,
    Language,
    PathKey,
    language_of,
    parse_text,
    read_text,
)


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


def _lookup(getter: Callable[[Any], tuple[int, int] | None], key: Any) -> tuple[int, int] | None:
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
