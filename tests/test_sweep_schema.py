"""The committed sweep schema and the sweep models accept and refuse the same documents.

Editors check sweeps with schemas/ghostspec-sweep.schema.json (mapped in .vscode/settings.json),
ghostspec with `Sweep.model_validate`. Beyond draft-07, and so only ghostspec's: a backwards
range (two numbers compared) and a path the base spec does not have (another file); the corpus
keeps clear of them and `test_rules_beyond_the_schema` pins that only ghostspec refuses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schema_checks
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ghostspec.cli import run
from ghostspec.language.languages import SWEEP
from ghostspec.language.source import load_document
from ghostspec.language.sweep import Sweep
from ghostspec.language.sweep_schema import render

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "ghostspec-sweep.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

BASE: dict[str, Any] = {
    "ghostspec-sweep": 1,
    "name": "s",
    "spec": "large.yaml",
    "recipe": "finetune",
    "space": {
        "width": {"range": [0.5, 1.3], "step": 0.1},
        "stages.3.*.2": {"choice": [0, 0.25]},
        "stages.6": {"depth": [2, 3]},
        "recipe.optimizer.lr": {"log_range": [0.01, 0.3]},
    },
    "constraints": {"params": 5000000, "macs": 150000000, "latency_ms": 5},
    "objectives": {"val_top1": "maximize", "latency_ms": "minimize"},
    "budget": {"trials": 20, "minutes": 30},
    "search": "nsga2",
    "latency": {"threads": 2, "quantize": "int8", "repeats": 5},
}
Key = schema_checks.Key


def doc_with(path: tuple[Key, ...], value: Any) -> dict[str, Any]:
    return schema_checks.with_value(BASE, path, value)


def pydantic_accepts(doc: Any) -> bool:
    try:
        Sweep.model_validate(doc)
    except ValidationError:
        return False
    return True


SPACE = ("space",)
CORPUS: list[tuple[str, Any, bool]] = [
    ("base", BASE, True),
    ("minimal", {"ghostspec-sweep": 1, "spec": "x", "space": {"w": {"choice": [1]}}}, True),
    ("no-version", {k: v for k, v in BASE.items() if k != "ghostspec-sweep"}, False),
    ("version-2", doc_with(("ghostspec-sweep",), 2), False),
    ("version-true", doc_with(("ghostspec-sweep",), True), False),
    ("no-spec", {k: v for k, v in BASE.items() if k != "spec"}, False),
    ("empty-spec", doc_with(("spec",), ""), False),
    ("no-space", {k: v for k, v in BASE.items() if k != "space"}, False),
    ("empty-space", doc_with(SPACE, {}), False),
    ("unknown-top", doc_with(("trails",), 3), False),
    ("choice-empty", doc_with((*SPACE, "w"), {"choice": []}), False),
    ("choice-rows", doc_with((*SPACE, "w"), {"choice": [[1, 2], {"a": 1}, "x", None]}), True),
    ("two-forms", doc_with((*SPACE, "w"), {"choice": [1], "range": [0, 1]}), False),
    ("no-form", doc_with((*SPACE, "w"), {"pick": [1]}), False),
    ("bare-list", doc_with((*SPACE, "w"), [1, 2]), False),
    ("range-three", doc_with((*SPACE, "w"), {"range": [0, 1, 2]}), False),
    ("range-text", doc_with((*SPACE, "w"), {"range": ["a", 1]}), False),
    ("range-no-step", doc_with((*SPACE, "w"), {"range": [0, 1]}), True),
    ("range-null-step", doc_with((*SPACE, "w"), {"range": [0, 1], "step": None}), True),
    ("step-zero", doc_with((*SPACE, "w"), {"range": [0, 1], "step": 0}), False),
    ("step-negative", doc_with((*SPACE, "w"), {"range": [0, 1], "step": -1}), False),
    ("range-extra", doc_with((*SPACE, "w"), {"range": [0, 1], "log": True}), False),
    ("log-zero", doc_with((*SPACE, "w"), {"log_range": [0, 1]}), False),
    ("log-ok", doc_with((*SPACE, "w"), {"log_range": [0.001, 1]}), True),
    ("depth-zero", doc_with((*SPACE, "w"), {"depth": [0, 2]}), False),
    ("depth-65", doc_with((*SPACE, "w"), {"depth": [65]}), False),
    ("depth-float", doc_with((*SPACE, "w"), {"depth": [1.5]}), False),
    ("depth-empty", doc_with((*SPACE, "w"), {"depth": []}), False),
    ("params-zero", doc_with(("constraints", "params"), 0), False),
    ("params-float", doc_with(("constraints", "params"), 1.5), False),
    ("latency-zero", doc_with(("constraints", "latency_ms"), 0), False),
    ("constraint-unknown", doc_with(("constraints", "flops"), 3), False),
    ("objective-unknown", doc_with(("objectives",), {"flops": "minimize"}), False),
    ("objective-direction", doc_with(("objectives",), {"macs": "lower"}), False),
    ("objectives-empty", doc_with(("objectives",), {}), False),
    ("trials-zero", doc_with(("budget", "trials"), 0), False),
    ("minutes-negative", doc_with(("budget", "minutes"), -1), False),
    ("search-unknown", doc_with(("search",), "bayes"), False),
    ("search-grid", doc_with(("search",), "grid"), True),
    ("pruner-none", doc_with(("pruner",), "none"), True),
    ("pruner-unknown", doc_with(("pruner",), "asha"), False),
    ("seed-negative", doc_with(("seed",), -1), False),
    ("threads-zero", doc_with(("latency", "threads"), 0), False),
    ("quantize-fp16", doc_with(("latency", "quantize"), "fp16"), False),
    ("best-101", doc_with(("best",), 101), False),
    ("name-bad", doc_with(("name",), "has space"), False),
    ("recipe-null", doc_with(("recipe",), None), True),
]


@pytest.mark.parametrize(("case", "doc", "valid"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_agreement(case: str, doc: Any, valid: bool) -> None:
    assert pydantic_accepts(doc) is valid, case
    assert VALIDATOR.is_valid(doc) is valid, case


@pytest.mark.parametrize(
    ("path", "value"),
    [((*SPACE, "w"), {"range": [2, 1]}), ((*SPACE, "w"), {"log_range": [0.3, 0.01]})],
)
def test_rules_beyond_the_schema(path: tuple[Key, ...], value: Any) -> None:
    doc = doc_with(path, value)
    assert VALIDATOR.is_valid(doc) and not pydantic_accepts(doc)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 200),
    st.floats(-2, 2, allow_nan=False),
    st.sampled_from(["tpe", "grid", "x", "minimize", "int8", ""]),
    st.lists(st.integers(-1, 70), max_size=3),
)
fields = st.sampled_from(
    [
        ("seed",),
        ("best",),
        ("search",),
        ("pruner",),
        ("budget", "trials"),
        ("budget", "minutes"),
        ("constraints", "macs"),
        ("constraints", "latency_ms"),
        ("latency", "threads"),
        ("latency", "quantize"),
        ("latency", "repeats"),
        (*SPACE, "w", "step"),
        (*SPACE, "w", "choice"),
        (*SPACE, "x", "depth"),
    ]
)


@settings(deadline=None, max_examples=300)
@given(fields, values)
def test_random_single_field_agreement(path: tuple[Key, ...], value: Any) -> None:
    base = doc_with((*SPACE, "w"), {"range": [0, 1]}) if path[-1] == "step" else BASE
    doc = schema_checks.with_value(base, path, value)
    if path[-1] == "depth":
        doc["space"]["x"] = {"depth": value}
    if path[-1] == "choice":
        doc["space"]["w"] = {"choice": value}
    assert pydantic_accepts(doc) is VALIDATOR.is_valid(doc)


def test_shipped_sweeps_are_valid_for_both() -> None:
    shipped = sorted((ROOT / "examples").glob("*.sweep.yaml"))
    assert shipped
    for path in shipped:
        data = load_document(path, (), language=SWEEP).data()
        assert VALIDATOR.is_valid(data) and pydantic_accepts(data), path


def test_editor_mapping_names_the_schema() -> None:
    settings_json = json.loads((ROOT / ".vscode" / "settings.json").read_text())
    assert (
        "**/*.sweep.yaml" in settings_json["yaml.schemas"]["./schemas/ghostspec-sweep.schema.json"]
    )


def test_schema_is_valid_draft_07_and_described() -> None:
    schema_checks.assert_draft_07(SCHEMA)
    assert schema_checks.undescribed(SCHEMA) == []


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render()


def test_schema_check_covers_the_sweep_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schemas").mkdir()
    for name in ("ghostspec.schema.json", "ghostspec-recipe.schema.json"):
        (tmp_path / "schemas" / name).write_bytes((ROOT / "schemas" / name).read_bytes())
    assert run(["schema", "--check"]) == 1
    assert "ghostspec schema --sweep -o schemas/ghostspec-sweep.schema.json" in (
        capsys.readouterr().err
    )
    assert run(["schema", "--sweep", "-o", "schemas/ghostspec-sweep.schema.json"]) == 0
    assert run(["schema", "--check"]) == 0
    assert "schemas/ghostspec-sweep.schema.json: up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:  # one schema at a time
        run(["schema", "--recipe", "--sweep"])
    assert exited.value.code == 2
