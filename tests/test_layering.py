"""Dependencies point down: the reader knows no language, and no module imports the package face.

The reader (source.py) is shared by every language built on it (specs today, recipes next), so
a language hands it what it needs (`source.Language`) instead of the reader importing the spec.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ghostspec.diagnostics import SpecError
from ghostspec.language.overrides import parse_override
from ghostspec.language.reading import Language
from ghostspec.language.source import load_document

PACKAGE = Path(__file__).resolve().parent.parent / "ghostspec"
FACE = ("__init__.py", "__main__.py", "cli.py")  # the top: the API, the entry points


def imported(path: Path) -> set[str]:
    """Every ghostspec module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "ghostspec")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ghostspec"):
            module = node.module or ""
            if module == "ghostspec":  # `from ghostspec import x`: x is a module or the face
                names.update(
                    f"ghostspec.{a.name}" if (PACKAGE / f"{a.name}.py").exists() else module
                    for a in node.names
                )
            else:
                names.add(module)
    return names


def test_the_reader_imports_no_language() -> None:
    assert imported(PACKAGE / "source.py") <= {"ghostspec.diagnostics", "ghostspec.files"}


@pytest.mark.parametrize(
    "module",
    sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name not in FACE),
)
def test_no_module_below_the_face_imports_it(module: str) -> None:
    assert "ghostspec" not in imported(PACKAGE / module), module


def test_fusion_needs_only_the_plan_and_the_backend() -> None:
    assert imported(PACKAGE / "fusion.py") <= {
        "ghostspec.diagnostics",
        "ghostspec.plan",
        "ghostspec.keras",
    }


# --- the reader with another language -------------------------------------------------------

RECIPE_LIKE = Language(
    row_columns=("low", "high"), flag="--hp", examples=("epochs=10",), start="a recipe starts so"
)
TEXT = "crop: [0.08, 1.0]\nepochs: 10\n"


def test_row_columns_come_from_the_language() -> None:
    doc = load_document("r.yaml", text=TEXT, language=RECIPE_LIKE)
    d = doc.diagnostic(("crop", "high"), "too big")
    assert (d.path, d.line, d.column) == ("crop column 2 (high)", 1, 14)
    plain = load_document("r.yaml", text=TEXT)  # no row columns: names stay names
    d = plain.diagnostic(("crop", "high"), "too big")
    assert (d.path, d.line, d.column) == ("crop.high", 1, 7)


def test_override_hints_use_the_language_flag() -> None:
    with pytest.raises(SpecError) as caught:
        parse_override("epochs", language=RECIPE_LIKE)
    assert caught.value.diagnostics[0].hint == "for example --hp epochs=10"
    with pytest.raises(SpecError) as caught:
        load_document("r.yaml", text="", language=RECIPE_LIKE)
    assert caught.value.diagnostics[0].hint == "a recipe starts so"
    doc = load_document("r.yaml", ["crop.1=0.9"], text=TEXT, language=RECIPE_LIKE)
    assert doc.data()["crop"] == [0.08, 0.9]
