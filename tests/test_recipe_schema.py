"""The committed recipe schema and the recipe models accept and refuse the same documents.

Editors check recipes with schemas/ghostspec-recipe.schema.json, ghostspec with
`Recipe.model_validate`. The rules that compare two numbers (a backwards [low, high] range, a
warm-up above the rate it warms up to, a warm-up longer than the run, a cosine floor above the
rate) are beyond draft-07; the corpus keeps clear of them, and `test_rules_beyond_the_schema`
pins that only ghostspec refuses them. NaN and infinities are not JSON and are left out.
"""

from __future__ import annotations

import copy
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
from ghostspec.language.languages import RECIPE
from ghostspec.language.recipe import RECIPES_DIR, Recipe
from ghostspec.language.recipe_schema import render
from ghostspec.language.source import load_document

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "ghostspec-recipe.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

BASE: dict[str, Any] = {
    "ghostspec-recipe": 1,
    "epochs": 5,
    "batch_size": 32,
    "optimizer": {"kind": "sgd", "lr": 0.1},
    "schedule": {"kind": "cosine", "warmup_epochs": 1},
    "augment": {"crop": {"scale": [0.2, 1.0]}, "randaugment": {"magnitude": 5}},
    "distill": {"teacher": "teacher.keras"},
}

Key = schema_checks.Key


def with_value(path: tuple[Key, ...], value: Any) -> dict[str, Any]:
    return schema_checks.with_value(BASE, path, value)


def without(key: str) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    del doc[key]
    return doc


def pydantic_accepts(doc: Any) -> bool:
    try:
        Recipe.model_validate(doc)
    except ValidationError:
        return False
    return True


def schema_accepts(doc: Any) -> bool:
    return VALIDATOR.is_valid(doc)


OPT = ("optimizer",)
SCHED = ("schedule",)
CROP = ("augment", "crop")
RA = ("augment", "randaugment")
DISTILL = ("distill",)

# (id, document, valid?)
CORPUS: list[tuple[str, Any, bool]] = [
    ("base", BASE, True),
    ("minimal", {"ghostspec-recipe": 1}, True),
    ("missing-version", without("ghostspec-recipe"), False),
    ("version-2", with_value(("ghostspec-recipe",), 2), False),
    ("version-1.0", with_value(("ghostspec-recipe",), 1.0), True),
    ("version-string", with_value(("ghostspec-recipe",), "1"), False),
    ("version-true", with_value(("ghostspec-recipe",), True), False),
    ("spec-version-key", with_value(("ghostspec",), 1), False),
    ("unknown-top", with_value(("epoch",), 3), False),
    ("name", with_value(("name",), "ft-1"), True),
    ("name-space", with_value(("name",), "a b"), False),
    ("description-number", with_value(("description",), 3), False),
    ("epochs-0", with_value(("epochs",), 0), False),
    ("epochs-float-int", with_value(("epochs",), 3.0), True),
    ("epochs-float", with_value(("epochs",), 3.5), False),
    ("epochs-bool", with_value(("epochs",), True), False),
    ("batch-max", with_value(("batch_size",), 1_048_576), True),
    ("batch-over", with_value(("batch_size",), 1_048_577), False),
    ("input-size", with_value(("input_size",), [96, 128]), True),
    ("input-size-null", with_value(("input_size",), None), True),
    ("input-size-3", with_value(("input_size",), [96, 96, 3]), False),
    ("input-size-0", with_value(("input_size",), [0, 96]), False),
    ("optimizer-null", with_value(OPT, None), False),
    ("kind-rmsprop", with_value((*OPT, "kind"), "rmsprop"), True),
    ("kind-adam", with_value((*OPT, "kind"), "adam"), False),
    ("lr-0", with_value((*OPT, "lr"), 0), False),
    ("lr-100", with_value((*OPT, "lr"), 100), True),
    ("lr-string", with_value((*OPT, "lr"), "0.1"), False),
    ("momentum-1", with_value((*OPT, "momentum"), 1), False),
    ("momentum-0", with_value((*OPT, "momentum"), 0), True),
    ("epsilon-0", with_value((*OPT, "epsilon"), 0), False),
    ("beta-2-1", with_value((*OPT, "beta_2"), 1.0), False),
    ("weight-decay-neg", with_value((*OPT, "weight_decay"), -1e-5), False),
    ("decay-norm-1", with_value((*OPT, "decay_norm_and_bias"), 1), False),
    ("optimizer-extra", with_value((*OPT, "amsgrad"), True), False),
    # nesterov: true is refused with rmsprop and adamw when written; the default is unused
    ("nesterov-sgd", with_value(OPT, {"kind": "sgd", "nesterov": True}), True),
    ("nesterov-default-sgd", with_value(OPT, {"nesterov": True}), True),
    ("nesterov-rmsprop", with_value(OPT, {"kind": "rmsprop", "nesterov": True}), False),
    ("nesterov-adamw-false", with_value(OPT, {"kind": "adamw", "nesterov": False}), True),
    ("nesterov-adamw-unset", with_value(OPT, {"kind": "adamw"}), True),
    ("nesterov-string", with_value((*OPT, "nesterov"), "true"), False),
    ("schedule-step", with_value((*SCHED, "kind"), "step"), True),
    ("schedule-linear", with_value((*SCHED, "kind"), "linear"), False),
    ("decay-rate-1", with_value((*SCHED, "decay_rate"), 1), True),
    ("decay-rate-0", with_value((*SCHED, "decay_rate"), 0), False),
    ("decay-epochs-0", with_value((*SCHED, "decay_epochs"), 0), False),
    ("warmup-epochs-neg", with_value((*SCHED, "warmup_epochs"), -1), False),
    ("label-smoothing-1", with_value(("label_smoothing",), 1), False),
    ("label-smoothing-0.3", with_value(("label_smoothing",), 0.3), True),
    ("crop-null", with_value(CROP, None), True),
    ("crop-scale-equal", with_value((*CROP, "scale"), [1, 1]), True),
    ("crop-scale-0", with_value((*CROP, "scale"), [0, 1]), False),
    ("crop-scale-over", with_value((*CROP, "scale"), [0.5, 1.5]), False),
    ("crop-scale-1-item", with_value((*CROP, "scale"), [0.5]), False),
    ("crop-ratio", with_value((*CROP, "ratio"), [0.5, 2]), True),
    ("crop-ratio-3", with_value((*CROP, "ratio"), [0.5, 1, 2]), False),
    ("crop-extra", with_value((*CROP, "size"), 3), False),
    ("flip-string", with_value(("augment", "flip"), "yes"), False),
    ("randaugment-null", with_value(RA, None), True),
    ("magnitude-10", with_value((*RA, "magnitude"), 10), True),
    ("magnitude-11", with_value((*RA, "magnitude"), 11), False),
    ("layers-0", with_value((*RA, "layers"), 0), False),
    ("layers-2.0", with_value((*RA, "layers"), 2.0), True),
    ("erasing-1", with_value(("augment", "erasing"), 1), True),
    ("erasing-over", with_value(("augment", "erasing"), 1.01), False),
    ("crop-pct-0", with_value(("eval", "crop_pct"), 0), False),
    ("crop-pct-1", with_value(("eval", "crop_pct"), 1), True),
    ("ema-null", with_value(("ema",), None), True),
    ("ema-1", with_value(("ema", "decay"), 1), False),
    ("ema-number", with_value(("ema",), 0.999), False),
    ("seed-max", with_value(("seed",), 2**32 - 1), True),
    ("seed-over", with_value(("seed",), 2**32), False),
    ("deterministic-1", with_value(("deterministic",), 1), False),
    ("checkpoint-0", with_value(("checkpoint_every",), 0), False),
    ("early-stopping", with_value(("early_stopping",), {"patience": 3}), True),
    ("early-monitor-acc", with_value(("early_stopping",), {"monitor": "val_acc"}), False),
    ("precision-bf16", with_value(("precision",), "mixed_bfloat16"), True),
    ("precision-64", with_value(("precision",), "float64"), False),
    ("strategy-multiworker", with_value(("strategy",), "multiworker"), True),
    ("strategy-tpu", with_value(("strategy",), "tpu"), False),
    ("distill-null", with_value(DISTILL, None), True),
    ("teacher-h5", with_value((*DISTILL, "teacher"), "teacher.h5"), False),
    ("teacher-spec", with_value((*DISTILL, "teacher"), {"spec": "s.yaml", "weights": "w"}), True),
    ("teacher-spec-only", with_value((*DISTILL, "teacher"), {"spec": "s.yaml"}), False),
    (
        "teacher-spec-extra",
        with_value((*DISTILL, "teacher"), {"spec": "s", "weights": "w", "x": 1}),
        False,
    ),
    ("teacher-number", with_value((*DISTILL, "teacher"), 3), False),
    ("teacher-missing", with_value(DISTILL, {"weight": 1}), False),
    ("distill-weight-0", with_value((*DISTILL, "weight"), 0), True),
    ("distill-temperature-0", with_value((*DISTILL, "temperature"), 0), False),
    ("teacher-size", with_value((*DISTILL, "teacher_input_size"), [256, 256]), True),
    ("teacher-size-1", with_value((*DISTILL, "teacher_input_size"), [256]), False),
    ("not-a-mapping", [BASE], False),
]


@pytest.mark.parametrize(("case", "doc", "valid"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_agreement(case: str, doc: Any, valid: bool) -> None:
    assert (pydantic_accepts(doc), schema_accepts(doc)) == (valid, valid), case


def test_corpus_is_large_and_mixed() -> None:
    verdicts = [c[2] for c in CORPUS]
    assert len(verdicts) >= 60
    assert 25 <= sum(verdicts) <= len(verdicts) - 25


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((*CROP, "scale"), [0.9, 0.1]),
        ((*CROP, "ratio"), [2.0, 0.5]),
        ((*SCHED, "warmup_lr"), 5.0),  # above the scaled lr 0.1 * 32 / 256
        ((*SCHED, "warmup_epochs"), 6),  # longer than the 5 epochs
        ((*SCHED, "min_lr"), 1.0),  # a cosine floor above the rate
    ],
)
def test_rules_beyond_the_schema(path: tuple[Key, ...], value: Any) -> None:
    doc = with_value(path, value)
    assert schema_accepts(doc)
    assert not pydantic_accepts(doc)


def test_shipped_recipes_are_valid_for_both() -> None:
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        data = load_document(path, language=RECIPE).data()
        assert pydantic_accepts(data), path
        assert schema_accepts(data), path


# --- random single-field values -------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 1, 2, 9, 10, 11, 16, 17, 100, 101, 2**32 - 1, 2**32, 1_048_577]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1e-6, 0.1, 0.5, 0.9, 0.9999, 1.0, 1.5, 2.4, 100.0, 100.5]),
    st.text(max_size=8),
    st.sampled_from(["sgd", "adamw", "step", "cosine", "val_top1", "x.keras", "auto", "one"]),
)
PAIRS = st.lists(st.one_of(st.floats(0.001, 2.0), st.integers(0, 3)), max_size=3).map(sorted)
VALUES = st.one_of(
    SCALARS,
    PAIRS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(
        st.sampled_from(["decay", "patience", "spec", "weights", "x"]), SCALARS, max_size=2
    ),
)

# Every field the schema constrains that no two-number rule reads (see the module docstring).
FIELDS: list[tuple[Key, ...]] = [
    ("name",),
    ("description",),
    ("epochs",),
    ("batch_size",),
    ("input_size",),
    ("input_size", 0),
    (*OPT, "kind"),
    (*OPT, "momentum"),
    (*OPT, "rho"),
    (*OPT, "epsilon"),
    (*OPT, "beta_1"),
    (*OPT, "beta_2"),
    (*OPT, "weight_decay"),
    (*OPT, "decay_norm_and_bias"),
    (*SCHED, "decay_rate"),
    (*SCHED, "decay_epochs"),
    ("label_smoothing",),
    (*CROP, "scale"),
    (*CROP, "ratio"),
    ("augment", "flip"),
    (*RA, "magnitude"),
    (*RA, "magnitude_std"),
    (*RA, "layers"),
    RA,
    ("augment", "erasing"),
    ("eval", "crop_pct"),
    ("ema",),
    ("ema", "decay"),
    ("seed",),
    ("deterministic",),
    ("checkpoint_every",),
    ("early_stopping",),
    ("early_stopping", "patience"),
    ("early_stopping", "min_delta"),
    ("early_stopping", "monitor"),
    ("precision",),
    ("strategy",),
    (*DISTILL, "weight"),
    (*DISTILL, "temperature"),
    (*DISTILL, "teacher_input_size"),
]


@settings(deadline=None, max_examples=300)
@given(path=st.sampled_from(FIELDS), value=VALUES)
def test_random_single_field_agreement(path: tuple[Key, ...], value: Any) -> None:
    doc = with_value(path, value)
    assert pydantic_accepts(doc) == schema_accepts(doc), (path, value)


@settings(deadline=None, max_examples=100)
@given(
    kind=st.sampled_from(["sgd", "rmsprop", "adamw", None]),
    nesterov=st.sampled_from([True, False, None]),
)
def test_nesterov_agreement(kind: str | None, nesterov: bool | None) -> None:
    optimizer = {k: v for k, v in (("kind", kind), ("nesterov", nesterov)) if v is not None}
    doc = with_value(OPT, optimizer)
    assert pydantic_accepts(doc) == schema_accepts(doc), optimizer
    assert schema_accepts(doc) == (not (nesterov and kind in ("rmsprop", "adamw")))


# --- the committed schema file --------------------------------------------------------------


def test_schema_is_valid_draft_07_without_2020_12_keywords() -> None:
    schema_checks.assert_draft_07(SCHEMA)


def test_every_property_has_a_description() -> None:
    # the nesterov rule's if/then restates two fields without descriptions
    assert schema_checks.undescribed(SCHEMA, skip=("if", "then")) == []


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render()


def test_schema_check_covers_both_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schemas").mkdir()
    for name in (
        "ghostspec.schema.json",
        "ghostspec-recipe.schema.json",
        "ghostspec-sweep.schema.json",
    ):
        (tmp_path / "schemas" / name).write_bytes((ROOT / "schemas" / name).read_bytes())
    assert run(["schema", "--check"]) == 0
    out = capsys.readouterr().out
    assert "schemas/ghostspec.schema.json: up to date" in out
    assert "schemas/ghostspec-recipe.schema.json: up to date" in out

    stale = json.loads((ROOT / "schemas" / "ghostspec-recipe.schema.json").read_text())
    stale["description"] = "an older version"  # a schema, but not the models' current one
    (tmp_path / "schemas" / "ghostspec-recipe.schema.json").write_text(json.dumps(stale))
    assert run(["schema", "--check"]) == 1
    captured = capsys.readouterr()
    assert "schemas/ghostspec.schema.json: up to date" in captured.out
    assert "differs from the recipe models" in captured.err
    assert "ghostspec schema --recipe -o schemas/ghostspec-recipe.schema.json" in captured.err
    assert run(["schema", "--check", "--recipe"]) == 1
    capsys.readouterr()

    assert run(["schema", "--recipe", "-o", "schemas/ghostspec-recipe.schema.json"]) == 0
    assert run(["schema", "--check"]) == 0
    (tmp_path / "schemas" / "ghostspec.schema.json").unlink()
    assert run(["schema", "--check"]) == 1
    assert "ghostspec.schema.json is missing" in capsys.readouterr().err
