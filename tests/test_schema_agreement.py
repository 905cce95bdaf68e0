"""The committed draft-07 schema and the pydantic models accept and reject the same documents.

Editors validate with schemas/ghostspec.schema.json, ghostspec with `Spec.model_validate`; a spec
that one accepts and the other refuses is a bug in one of them. Rules between fields that draft-07
can state (repeat with stride 2, include_top without pooling, std above 0) are in both and covered
here. Rules that no JSON Schema can express (lengths that depend on other values, an input smaller
than the total stride, attention_from past the last block) are checked after `Spec.model_validate`
and are out of scope: the corpus never relies on them. NaN and infinities are not JSON and are
left out as well.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ghostspec.cli import run
from ghostspec.language.schema import render
from ghostspec.language.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "ghostspec.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

BASE: dict[str, Any] = {
    "ghostspec": 1,
    "name": "tiny",
    "input": {"shape": [64, 64, 3]},
    "stages": [[[16, 16, 0, 1, 3]], [{"hidden": 48, "out": 24, "se": 0.25, "stride": 2}]],
}

Key = str | int


def with_value(path: tuple[Key, ...], value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """A deep copy of `base` with the value at `path` set (mappings on the way are created)."""
    doc = copy.deepcopy(base)
    node: Any = doc
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return doc


def without(path: tuple[Key, ...]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def pydantic_accepts(doc: Any) -> bool:
    try:
        Spec.model_validate(doc)
    except ValidationError:
        return False
    return True


def schema_accepts(doc: Any) -> bool:
    return VALIDATOR.is_valid(doc)


ROW = ("stages", 0, 0)  # the compact row [16, 16, 0, 1, 3]
MAPPING = ("stages", 1, 0)  # the mapping block


# (id, document, valid?)
CORPUS: list[Any] = [
    ("base", BASE, True),
    ("minimal", {"ghostspec": 1, "name": "m", "stages": [[[16, 16, 0, 1, 3]]]}, True),
    ("missing-name", without(("name",)), False),
    ("missing-stages", without(("stages",)), False),
    ("missing-version", without(("ghostspec",)), False),
    # the format version
    ("version-1.0", with_value(("ghostspec",), 1.0), True),
    ("version-2", with_value(("ghostspec",), 2), False),
    ("version-string", with_value(("ghostspec",), "1"), False),
    pytest.param("version-true", with_value(("ghostspec",), True), False),
    # names and free text
    ("name-64", with_value(("name",), "a" * 64), True),
    ("name-65", with_value(("name",), "a" * 65), False),
    ("name-dots", with_value(("name",), "ghostnet_1.0-x"), True),
    ("name-leading-dash", with_value(("name",), "-x"), False),
    ("name-space", with_value(("name",), "a b"), False),
    ("name-empty", with_value(("name",), ""), False),
    ("name-number", with_value(("name",), 7), False),
    ("description-null", with_value(("description",), None), True),
    ("description-number", with_value(("description",), 1), False),
    ("unknown-top-key", with_value(("colour",), "red"), False),
    # numbers: types and bounds
    ("width-int", with_value(("width",), 2), True),
    ("width-max", with_value(("width",), 10.0), True),
    ("width-over", with_value(("width",), 10.5), False),
    ("width-zero", with_value(("width",), 0), False),
    ("width-string", with_value(("width",), "1.0"), False),
    ("width-bool", with_value(("width",), True), False),
    ("divisor-16.0", with_value(("divisor",), 16.0), True),
    ("divisor-16.5", with_value(("divisor",), 16.5), False),
    ("divisor-257", with_value(("divisor",), 257), False),
    ("divisor-huge", with_value(("divisor",), 10**40), False),
    ("divisor-1e20", with_value(("divisor",), 1e20), False),
    ("divisor-bool", with_value(("divisor",), False), False),
    ("epsilon-zero", with_value(("normalization", "epsilon"), 0), False),
    ("epsilon-tiny", with_value(("normalization", "epsilon"), 1e-12), True),
    ("momentum-one", with_value(("normalization", "momentum"), 1), False),
    ("momentum-0.99", with_value(("normalization", "momentum"), 0.99), True),
    ("dropout-0", with_value(("head", "dropout"), 0), True),
    ("dropout-1", with_value(("head", "dropout"), 1.0), False),
    ("classes-1e6", with_value(("head", "classes"), 1_000_000), True),
    ("classes-over", with_value(("head", "classes"), 1_000_001), False),
    ("classes-neg", with_value(("head", "classes"), -1), False),
    ("ratio-1", with_value(("ghost", "ratio"), 1), False),
    ("ratio-8", with_value(("ghost", "ratio"), 8), True),
    ("se-divisor-0", with_value(("se", "divisor"), 0), False),
    # enums
    ("activation-gelu", with_value(("activation",), "gelu"), True),
    ("activation-case", with_value(("activation",), "ReLU"), False),
    ("activation-null", with_value(("activation",), None), False),
    ("stem-activation-null", with_value(("stem", "activation"), None), True),
    ("gate-sigmoid", with_value(("se", "gate"), "sigmoid"), True),
    ("gate-swish", with_value(("se", "gate"), "swish"), False),
    ("pooling-max", with_value(("head", "pooling"), "max"), True),
    ("pooling-sum", with_value(("head", "pooling"), "sum"), False),
    ("classifier-softmax", with_value(("head", "classifier_activation"), "softmax"), True),
    ("classifier-relu", with_value(("head", "classifier_activation"), "relu"), False),
    ("include-top-false", with_value(("head", "include_top"), False), True),
    pytest.param("include-top-1", with_value(("head", "include_top"), 1), False),
    pytest.param("include-top-0", with_value(("head", "include_top"), 0), False),
    pytest.param("include-top-string", with_value(("head", "include_top"), "true"), False),
    ("head-hidden-null", with_value(("head", "hidden"), None), True),
    # a classifier (include_top, true unless written false) needs pooling
    ("pooling-null", with_value(("head", "pooling"), None), False),
    ("pooling-null-top", with_value(("head",), {"pooling": None, "include_top": True}), False),
    ("pooling-null-no-top", with_value(("head",), {"pooling": None, "include_top": False}), True),
    ("pooling-max-no-top", with_value(("head",), {"pooling": "max", "include_top": False}), True),
    ("pooling-sum-no-top", with_value(("head",), {"pooling": "sum", "include_top": False}), False),
    ("pooling-default-top", with_value(("head",), {"include_top": True}), True),
    # kernels and strides
    ("stem-kernel-5", with_value(("stem", "kernel"), 5), True),
    ("stem-kernel-4", with_value(("stem", "kernel"), 4), False),
    ("stem-kernel-16.0", with_value(("stem", "kernel"), 16.0), False),
    ("stem-kernel-17", with_value(("stem", "kernel"), 17), False),
    ("stem-kernel-0", with_value(("stem", "kernel"), 0), False),
    ("stem-stride-3", with_value(("stem", "stride"), 3), False),
    ("stem-stride-1.0", with_value(("stem", "stride"), 1.0), True),
    ("stem-stride-true", with_value(("stem", "stride"), True), False),
    ("cheap-kernel-even", with_value(("ghost", "cheap_kernel"), 2), False),
    ("cheap-kernel-15", with_value(("ghost", "cheap_kernel"), 15), True),
    ("cheap-kernel-1", with_value(("ghost", "cheap_kernel"), 1), True),
    ("dfc-kernel-13.0", with_value(("ghost", "dfc_kernel"), 13.0), True),
    ("dfc-kernel-14", with_value(("ghost", "dfc_kernel"), 14), False),
    ("dfc-kernel-minus-1", with_value(("ghost", "dfc_kernel"), -1), False),
    # input shape
    ("shape-null-hw", with_value(("input", "shape"), [None, None, 3]), True),
    ("shape-null-channels", with_value(("input", "shape"), [64, 64, None]), False),
    ("shape-short", with_value(("input", "shape"), [64, 64]), False),
    ("shape-long", with_value(("input", "shape"), [64, 64, 3, 1]), False),
    ("shape-8193", with_value(("input", "shape"), [8193, 64, 3]), False),
    ("shape-floats", with_value(("input", "shape"), [64.0, 64.0, 3.0]), True),
    ("shape-string", with_value(("input", "shape"), [64, "64", 3]), False),
    ("shape-null", with_value(("input", "shape"), None), False),
    ("input-extra", with_value(("input", "size"), 3), False),
    # per-channel statistics: std divides, so every entry is above 0; the mean may be anything
    ("std-imagenet", with_value(("input", "std"), [0.229, 0.224, 0.225]), True),
    ("std-zero", with_value(("input", "std"), [0.229, 0, 0.225]), False),
    ("std-negative", with_value(("input", "std"), [-0.5, 0.5, 0.5]), False),
    ("std-tiny", with_value(("input", "std"), [1e-9, 1, 1]), True),
    ("std-null", with_value(("input", "std"), None), True),
    ("std-empty", with_value(("input", "std"), []), False),
    ("mean-zero", with_value(("input", "mean"), [0, 0, 0]), True),
    ("mean-negative", with_value(("input", "mean"), [-1, -1, -1]), True),
    # compact rows
    ("row-floats", with_value(ROW, [16.0, 16.0, 0, 1.0, 3.0]), True),
    ("row-se-1", with_value(ROW, [16, 16, 1, 1, 3]), True),
    ("row-se-over", with_value(ROW, [16, 16, 1.5, 1, 3]), False),
    ("row-4", with_value(ROW, [16, 16, 0, 1]), False),
    ("row-6", with_value(ROW, [16, 16, 0, 1, 3, 1]), False),
    ("row-empty", with_value(ROW, []), False),
    ("row-stride-3", with_value(ROW, [16, 16, 0, 3, 3]), False),
    ("row-stride-true", with_value(ROW, [16, 16, 0, True, 3]), False),
    ("row-kernel-even", with_value(ROW, [16, 16, 0, 1, 4]), False),
    ("row-kernel-string", with_value(ROW, [16, 16, 0, 1, "3"]), False),
    ("row-hidden-0", with_value(ROW, [0, 16, 0, 1, 3]), False),
    ("row-out-huge", with_value(ROW, [16, 100_001, 0, 1, 3]), False),
    ("row-null", with_value(ROW, [None, 16, 0, 1, 3]), False),
    ("row-nested", with_value(ROW, [[16], 16, 0, 1, 3]), False),
    # mapping blocks
    ("mapping-minimal", with_value(MAPPING, {"hidden": 8, "out": 8}), True),
    ("mapping-no-out", with_value(MAPPING, {"hidden": 8}), False),
    ("mapping-extra", with_value((*MAPPING, "strde"), 1), False),
    ("mapping-repeat-64", with_value(MAPPING, {"hidden": 8, "out": 8, "repeat": 64}), True),
    ("mapping-repeat-65", with_value(MAPPING, {"hidden": 8, "out": 8, "repeat": 65}), False),
    ("mapping-repeat-bool", with_value(MAPPING, {"hidden": 8, "out": 8, "repeat": True}), False),
    # repeat > 1 only on stride-1 blocks (MAPPING has stride 2)
    ("repeat-2-stride-2", with_value((*MAPPING, "repeat"), 2), False),
    ("repeat-64-stride-2", with_value((*MAPPING, "repeat"), 64), False),
    ("repeat-1-stride-2", with_value((*MAPPING, "repeat"), 1), True),
    ("repeat-1.0-stride-2", with_value((*MAPPING, "repeat"), 1.0), True),
    (
        "repeat-2-stride-2.0",
        with_value(MAPPING, {"hidden": 8, "out": 8, "stride": 2.0, "repeat": 2}),
        False,
    ),
    (
        "repeat-2-stride-1",
        with_value(MAPPING, {"hidden": 8, "out": 8, "stride": 1, "repeat": 2}),
        True,
    ),
    ("repeat-2-stride-default", with_value(MAPPING, {"hidden": 8, "out": 8, "repeat": 2}), True),
    (
        "repeat-2-stride-3",
        with_value(MAPPING, {"hidden": 8, "out": 8, "stride": 3, "repeat": 2}),
        False,
    ),
    ("mapping-name", with_value((*MAPPING, "name"), "b.0"), True),
    ("mapping-name-bad", with_value((*MAPPING, "name"), "b 0"), False),
    ("mapping-ghost-null", with_value((*MAPPING, "ghost"), None), True),
    ("mapping-ghost-ratio-null", with_value((*MAPPING, "ghost"), {"ratio": None}), True),
    ("mapping-ghost-kernel-even", with_value((*MAPPING, "ghost"), {"cheap_kernel": 4}), False),
    ("mapping-ghost-extra", with_value((*MAPPING, "ghost"), {"s": 2}), False),
    ("mapping-activation", with_value((*MAPPING, "activation"), "hard_swish"), True),
    ("block-string", with_value(MAPPING, "16,16,0,1,3"), False),
    ("block-null", with_value(MAPPING, None), False),
    # stages
    ("stages-empty", with_value(("stages",), []), False),
    ("stage-empty", with_value(("stages",), [[]]), False),
    ("stage-65", with_value(("stages",), [[[16, 16, 0, 1, 3]] * 65]), False),
    ("stages-65", with_value(("stages",), [[[16, 16, 0, 1, 3]]] * 65), False),
    ("stages-mapping", with_value(("stages",), {"a": [[16, 16, 0, 1, 3]]}), False),
    ("ghost-null", with_value(("ghost",), None), False),
    ("head-extra", with_value(("head", "colour"), "red"), False),
    ("not-a-mapping", [BASE], False),
    # the feature-extractor head: levels and node names
    ("features-levels", with_value(("head", "features"), [1, 2, 3]), True),
    ("features-level-float", with_value(("head", "features"), [2.0]), True),
    ("features-level-16", with_value(("head", "features"), [16]), True),
    ("features-level-17", with_value(("head", "features"), [17]), False),
    ("features-level-neg", with_value(("head", "features"), [-1]), False),
    ("features-level-half", with_value(("head", "features"), [2.5]), False),
    ("features-level-bool", with_value(("head", "features"), [True]), False),
    (
        "features-nodes",
        with_value(("head", "features"), ["conv_stem", "blocks.1", "blocks.1.0"]),
        True,
    ),
    ("features-mixed", with_value(("head", "features"), [2, "blocks.1.0"]), True),
    ("features-node-leading-zero", with_value(("head", "features"), ["blocks.01.0"]), False),
    ("features-node-deep", with_value(("head", "features"), ["blocks.1.0.ghost1"]), False),
    ("features-node-unknown", with_value(("head", "features"), ["stem"]), False),
    ("features-empty", with_value(("head", "features"), []), False),
    ("features-65", with_value(("head", "features"), [1] * 65), False),
    ("features-null", with_value(("head", "features"), None), True),
    ("features-scalar", with_value(("head", "features"), 2), False),
    ("features-nested", with_value(("head", "features"), [[2]]), False),
    (
        "features-with-top-false",
        with_value(("head",), {"features": [1], "include_top": False}),
        True,
    ),
    ("taps-timm", with_value(("head", "taps"), "timm"), True),
    ("taps-last", with_value(("head", "taps"), "last"), True),
    ("taps-first", with_value(("head", "taps"), "first"), False),
    ("taps-null", with_value(("head", "taps"), None), False),
]


def _id(case: Any) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("case", "doc", "valid"), CORPUS, ids=[_id(c) for c in CORPUS])
def test_corpus_agreement(case: str, doc: Any, valid: bool) -> None:
    assert (pydantic_accepts(doc), schema_accepts(doc)) == (valid, valid), case


def test_corpus_is_large_and_mixed() -> None:
    verdicts = [c.values[2] if hasattr(c, "values") else c[2] for c in CORPUS]
    assert len(verdicts) >= 40
    assert 15 <= sum(verdicts) <= len(verdicts) - 15


def test_reference_specs_are_valid_for_both() -> None:
    """The committed specs, read the way ghostspec reads them, pass both validators."""
    from ghostspec.language.source import load_document

    for path in sorted((ROOT / "specs").glob("*.yaml")):
        data = load_document(path).data()
        assert pydantic_accepts(data), path
        assert schema_accepts(data), path


def test_name_trailing_newline() -> None:
    """A known difference of regex engines, not of the two definitions.

    The name pattern ends in `$`. ECMA-262 (editors) and pydantic's Rust regex match `$` only at
    the end, so "tiny\\n" is refused; Python's `re`, which the jsonschema package uses, also
    matches `$` before a final newline. Only pydantic's verdict is pinned here.
    """
    assert not pydantic_accepts(with_value(("name",), "tiny\n"))


# --- random single-field values -------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, 1, 2, 3, 4, 5, 15, 16, 17, 64, 65, 256, 257, 8192, 100_000, 100_001]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 0.25, 1.0, 1.5, 2.0, 3.0, 4.0, 16.0, 1e-5, 0.9, 10.0, 2.0**63]),
    st.text(max_size=8),
    st.sampled_from(["relu", "avg", "max", "softmax", "sigmoid", "tiny", "1", "3"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=6),
    st.dictionaries(st.sampled_from(["hidden", "out", "ratio", "x"]), SCALARS, max_size=3),
)

# Every field the schema constrains; `include_top` and `ghostspec` are left to the corpus, where
# their known disagreement is marked, and so is `name` (see test_name_trailing_newline).
FIELDS: list[tuple[Key, ...]] = [
    ("description",),
    ("input", "shape"),
    ("input", "shape", 0),
    ("input", "shape", 2),
    ("input", "mean"),
    ("input", "std"),
    ("width",),
    ("divisor",),
    ("activation",),
    ("normalization", "epsilon"),
    ("normalization", "momentum"),
    ("ghost", "ratio"),
    ("ghost", "cheap_kernel"),
    ("ghost", "dfc_kernel"),
    ("se", "gate"),
    ("se", "divisor"),
    ("se", "activation"),
    ("stem", "filters"),
    ("stem", "kernel"),
    ("stem", "stride"),
    ("stem", "activation"),
    ("head", "filters"),
    ("head", "pooling"),
    ("head", "hidden"),
    ("head", "dropout"),
    ("head", "classes"),
    ("head", "classifier_activation"),
    ("head", "activation"),
    ("head", "features"),
    ("head", "taps"),
    (*ROW, 0),
    (*ROW, 1),
    (*ROW, 2),
    (*ROW, 3),
    (*ROW, 4),
    ROW,
    (*MAPPING, "hidden"),
    (*MAPPING, "se"),
    (*MAPPING, "stride"),
    (*MAPPING, "kernel"),
    (*MAPPING, "repeat"),
    (*MAPPING, "activation"),
    (*MAPPING, "ghost"),
    (*MAPPING, "ghost", "cheap_kernel"),
    MAPPING,
]


@settings(deadline=None, max_examples=250)
@given(path=st.sampled_from(FIELDS), value=VALUES)
def test_random_single_field_agreement(path: tuple[Key, ...], value: Any) -> None:
    doc = with_value(path, value)
    assert pydantic_accepts(doc) == schema_accepts(doc), (path, value)


@settings(deadline=None, max_examples=150)
@given(
    entries=st.lists(
        st.one_of(
            SCALARS,
            st.integers(min_value=-2, max_value=20),
            st.sampled_from(["conv_stem", "blocks.3", "blocks.6.4", "blocks.0.00", "blocks.x"]),
        ),
        max_size=4,
    )
)
def test_random_features_agreement(entries: list[Any]) -> None:
    doc = with_value(("head", "features"), entries)
    assert pydantic_accepts(doc) == schema_accepts(doc), entries


@settings(deadline=None, max_examples=150)
@given(row=st.lists(SCALARS, min_size=4, max_size=6))
def test_random_row_agreement(row: list[Any]) -> None:
    doc = with_value(ROW, row)
    assert pydantic_accepts(doc) == schema_accepts(doc), row


MISSING = object()
PAIR_VALUES = st.one_of(
    st.just(MISSING),
    st.sampled_from([None, True, False, 0, 1, 1.0, 2, 2.0, 3, 64, 65, "2", "avg", "max", "sum"]),
)


def _mapping(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


@settings(deadline=None, max_examples=150)
@given(stride=PAIR_VALUES, repeat=PAIR_VALUES)
def test_random_repeat_and_stride_agreement(stride: Any, repeat: Any) -> None:
    """The if/then for repeat on a stride-2 block against Block's model validator."""
    doc = with_value(MAPPING, _mapping(hidden=8, out=8, stride=stride, repeat=repeat))
    assert pydantic_accepts(doc) == schema_accepts(doc), (stride, repeat)


@settings(deadline=None, max_examples=150)
@given(pooling=PAIR_VALUES, include_top=PAIR_VALUES)
def test_random_pooling_and_include_top_agreement(pooling: Any, include_top: Any) -> None:
    """The if/else for a classifier without pooling against Head's model validator."""
    doc = with_value(("head",), _mapping(pooling=pooling, include_top=include_top))
    assert pydantic_accepts(doc) == schema_accepts(doc), (pooling, include_top)


# --- the committed schema file --------------------------------------------------------------


CONDITIONS = ("if", "then", "else")


def _walk(node: Any, conditions: bool = True) -> list[Any]:
    """Every dict and list inside `node`, itself included (without what sits under if/then/else
    unless `conditions`: those repeat property names to constrain them, not to document them)."""
    out = [node]
    if isinstance(node, dict):
        for key, value in node.items():
            if conditions or key not in CONDITIONS:
                out.extend(_walk(value, conditions))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value, conditions))
    return out


def test_schema_is_valid_draft_07() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_schema_has_no_2020_12_keywords() -> None:
    for node in _walk(SCHEMA):
        if isinstance(node, dict):
            assert "$defs" not in node
            assert "prefixItems" not in node
            assert not str(node.get("$ref", "#/definitions/")).startswith("#/$defs")


def _properties() -> list[tuple[str, dict[str, Any]]]:
    """(name, schema) of every documented property (not those repeated under if/then/else)."""
    return [
        (name, prop)
        for node in _walk(SCHEMA, conditions=False)
        if isinstance(node, dict) and isinstance(node.get("properties"), dict)
        for name, prop in node["properties"].items()
    ]


def test_every_property_has_a_description_and_its_key_as_title() -> None:
    assert [name for name, prop in _properties() if not prop.get("description")] == []
    # editor messages and hovers name the key as written (`include_top`, not "Include Top")
    assert [name for name, prop in _properties() if prop.get("title") != name] == []


def _valid_for(value: Any, prop: dict[str, Any]) -> bool:
    return jsonschema.Draft7Validator({**prop, "definitions": SCHEMA["definitions"]}).is_valid(
        value
    )


def test_completion_inserts_only_values_the_schema_accepts() -> None:
    """yaml-language-server inserts a property's default, or else its first example: each must
    validate, and `null` (which means "not set") is never offered as a default."""
    offered = [
        (name, value, prop)
        for name, prop in _properties()
        for value in [*(v for k, v in prop.items() if k == "default"), *prop.get("examples", [])]
    ]
    assert len(offered) > 30
    assert [name for name, value, _ in offered if value is None] == []
    assert [(name, value) for name, value, prop in offered if not _valid_for(value, prop)] == []
    # a number with neither is completed as 0, which no count or size here accepts
    bare = [
        name
        for name, prop in _properties()
        if prop.get("type") in ("integer", "number")
        and not any(k in prop for k in ("default", "examples", "enum", "const"))
    ]
    assert bare == []
    mapping = SCHEMA["definitions"]["BlockMapping"]
    for name in mapping["required"]:  # the mapping snippet fills required fields from examples
        examples = mapping["properties"][name].get("examples")
        assert examples, name
        assert _valid_for(examples[0], mapping["properties"][name]), name


def test_rows_and_blocks_have_titles() -> None:
    definitions = SCHEMA["definitions"]
    row, ref = definitions["Block"]["anyOf"]
    assert row["title"] == "Block row"
    assert [item["title"] for item in row["items"]] == ["hidden", "out", "se", "stride", "kernel"]
    assert ref == {"$ref": "#/definitions/BlockMapping"}
    assert definitions["BlockMapping"]["title"] == "Block mapping"


def test_kernels_are_an_enum_of_odd_sizes() -> None:
    kernels = [
        node
        for node in _walk(SCHEMA)
        if isinstance(node, dict) and node.get("enum") and 15 in node["enum"]
    ]
    assert len(kernels) >= 6  # stem, row, mapping, cheap and dfc kernels, overrides
    assert all(node["enum"] == [1, 3, 5, 7, 9, 11, 13, 15] for node in kernels)
    assert not any(isinstance(node, dict) and "not" in node for node in _walk(SCHEMA))


def test_name_patterns_have_a_readable_message() -> None:
    patterns = [n for n in _walk(SCHEMA) if isinstance(n, dict) and "pattern" in n]
    assert len(patterns) >= 3  # the spec's name, a block's name, a feature tap's node name
    for node in patterns:
        assert node["patternErrorMessage"]  # the editor shows it instead of the expression
    names = [n for n in patterns if "letters, digits" in n["patternErrorMessage"]]
    assert len(names) >= 2


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render()


def test_schema_check_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert run(["schema", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out

    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#"}) + "\n")
    assert run(["schema", "--check", "-o", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "differs from the spec models" in err
    assert f"ghostspec schema -o {stale}" in err

    missing = tmp_path / "missing.json"
    assert run(["schema", "--check", "-o", str(missing)]) == 1
    assert "is missing" in capsys.readouterr().err
    assert not missing.exists()
