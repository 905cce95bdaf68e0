"""Diagnostics: every problem with a user's input becomes one of these, with a position."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class Diagnostic:
    """One problem, located in a file (1-based line and column) or on a command-line override."""

    file: str
    message: str
    path: str = ""
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    override: str | None = None
    override_flag: str | None = None  # the option that gave `override`: --set (specs), --hp
    source_line: str | None = None
    severity: Literal["error", "warning"] = "error"

    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.line or 0, self.column or 0)

    def render(self) -> str:
        """Compiler-style text: `FILE:LINE:COL: error: PATH: MESSAGE`, the line, a caret."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        head = f"{where}: {self.severity}: "
        if self.path:
            head += f"{self.path}: "
        head += self.message
        if self.override:
            head += f" (from {self.override_flag or '--set'} {self.override})"
        lines = [head]
        if self.source_line is not None and self.line is not None:
            gutter = f"{self.line:>5} | "
            text = self.source_line.replace("\t", " ")
            lines.append(gutter + text)
            lines.append(" " * (len(gutter) - 2) + "| " + " " * ((self.column or 1) - 1) + "^")
        if self.hint:
            lines.append(f"      = hint: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        record = asdict(self)
        record.pop("source_line")
        if record["override_flag"] is None:
            record.pop("override_flag")  # present only with an override
        return record


class SpecError(Exception):
    """Raised with every diagnostic of an input at once; the CLI prints them and exits 2."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__(render_text(self.diagnostics))


def render_text(diagnostics: list[Diagnostic]) -> str:
    count = len(diagnostics)
    body = "\n".join(d.render() for d in diagnostics)
    noun = "error" if count == 1 else "errors"
    return f"{body}\n{count} {noun}." if count else ""


def render_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)
