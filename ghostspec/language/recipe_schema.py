"""The editor schema for training recipes: the recipe models' JSON Schema as draft-07.

The 2020-12 rewriting is the spec schema's (`schema._convert`); what is added here is the one
rule between fields that JSON Schema can state: `nesterov: true` only with sgd. The other rules
(`recipe.rule_problems`, backwards ranges) compare two numbers, which draft-07 cannot, so only
ghostspec reports them.
"""

from __future__ import annotations

import json
from typing import Any

from ghostspec.language.recipe import Recipe
from ghostspec.language.schema import DRAFT_07, _convert

SCHEMA_PATH = "schemas/ghostspec-recipe.schema.json"

NESTEROV_ONLY_WITH_SGD: dict[str, Any] = {
    "if": {"required": ["kind"], "properties": {"kind": {"not": {"const": "sgd"}}}},
    "then": {"properties": {"nesterov": {"const": False}}},
}


def generate() -> dict[str, Any]:
    """The draft-07 schema for recipe files."""
    raw = Recipe.model_json_schema(mode="validation")
    definitions = {name: _convert(value) for name, value in raw.get("$defs", {}).items()}
    definitions["Optimizer"].update(NESTEROV_ONLY_WITH_SGD)
    top = _convert(raw)
    return {
        "$schema": DRAFT_07,
        "$id": "https://ghostspec.dev/schemas/ghostspec-recipe.schema.json",
        "title": "ghostspec training recipe",
        **{k: v for k, v in top.items() if k != "title"},
        "definitions": dict(sorted(definitions.items())),
    }


def render() -> str:
    return json.dumps(generate(), indent=2) + "\n"
