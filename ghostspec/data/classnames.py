"""Class names are data: stored losslessly, shown escaped.

A class name is a folder name, which may hold any byte but "/" and NUL: a newline, a tab, bytes
that are not UTF-8 (Python keeps those as lone surrogates, PEP 383). A run folder stores them as
`classes.json`, a JSON list with every non-ASCII character escaped, which reads back exactly;
`classes.txt` (one name a line) is still read from runs of earlier versions. Messages and tables
show a name with its unprintable characters escaped (`shown`), so one name is one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file, write_text

CLASSES_JSON = "classes.json"
CLASSES_TXT = "classes.txt"  # earlier versions: one name a line
LIMIT = 16 * 2**20


def shown(name: str) -> str:
    """`name` as one printable line: itself when it is plain, else JSON-escaped in quotes
    (a newline as \\n, a byte that is not UTF-8 as \\udcXX)."""
    if name.isprintable() and name.strip() == name and name:
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    return json.dumps(name, ensure_ascii=True)


def write_class_names(folder: Path, classes: Sequence[str]) -> None:
    write_text(folder / CLASSES_JSON, json.dumps(list(classes), ensure_ascii=True) + "\n")


def _refuse(path: Path, message: str, hint: str) -> SpecError:
    return SpecError([Diagnostic(file=str(path), message=message, hint=hint)])


def read_class_names(folder: Path, hint: str = "restore the file from a copy") -> tuple[str, ...]:
    """The class names a run folder stores: classes.json, else classes.txt. SpecError when the
    file is missing or damaged (not JSON, not UTF-8, not a list of names)."""
    path = folder / CLASSES_JSON
    if path.exists():
        raw = read_regular_file(path, LIMIT, "class list", hint)
        try:
            names = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise _refuse(
                path, f"the class list is damaged: it is not JSON ({err})", hint
            ) from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise _refuse(path, "the class list is damaged: not a list of names", hint)
        return tuple(names)
    path = folder / CLASSES_TXT
    raw = read_regular_file(path, LIMIT, "class list", hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        message = f"the class list is not UTF-8 text (byte {raw[err.start]:#04x} at {err.start})"
        raise _refuse(path, message, hint) from None
    return tuple(line for line in text.splitlines() if line)


def class_names_file(folder: Path) -> Path | None:
    """The class list of a run folder (either form), or None when it has none."""
    for name in (CLASSES_JSON, CLASSES_TXT):
        if (folder / name).is_file():
            return folder / name
    return None
