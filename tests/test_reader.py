"""The reader with a language it does not know: everything it needs comes from `Language`.

The reader (language/reading.py, source.py, overrides.py) is shared by every language built on
it, so a language hands it what it needs instead of the reader importing the spec; a contract in
pyproject.toml keeps the reader from importing any language.
"""

from __future__ import annotations

import pytest

from ghostspec.diagnostics import SpecError
from ghostspec.language.overrides import parse_override
from ghostspec.language.reading import Language
from ghostspec.language.source import load_document

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
