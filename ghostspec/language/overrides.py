"""Reading spec files with the position of every node, and applying `--set` overrides.

Nothing is interpreted here: the result is plain data plus a way to map a path inside it back to a
line and column, which is what every later diagnostic needs. No language rule lives here either:
a language (specs, recipes) hands in what it needs, such as the column names of its compact rows.

Scalars are read by YAML 1.2's core schema, exactly as editors read them (yaml-language-server,
the server behind VS Code's YAML extension, uses it): `1_000`, `0b101`, `1:30` and `yes` are text,
not numbers or booleans, so ghostspec and the editor never see different values in one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.reading import MAX_DEPTH, Language, parse_text

PathKey = str | int
DocPath = tuple[PathKey, ...]


@dataclass(frozen=True)
class Override:
    """One `--set key.path=value`, parsed."""

    text: str
    path: DocPath
    value: Any
    created: bool = False


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
