"""The editor schema for sweeps: the sweep models' JSON Schema as draft-07.

The 2020-12 rewriting is the spec schema's (`schema._convert`). A decision is one of four
mappings, each with its one required key and nothing else, so `oneOf` tells them apart as the
models' discriminator does. What draft-07 cannot state is left to ghostspec: a backwards range
(two numbers compared) and whether a path exists in the base spec (another file).
"""

from __future__ import annotations

import json
from typing import Any

from ghostspec.language.schema import DRAFT_07, _convert
from ghostspec.language.sweep import Sweep

SCHEMA_PATH = "schemas/ghostspec-sweep.schema.json"


def generate() -> dict[str, Any]:
    """The draft-07 schema for sweep files."""
    raw = Sweep.model_json_schema(mode="validation")
    definitions = {name: _convert(value) for name, value in raw.get("$defs", {}).items()}
    top = _convert(raw)
    space = top["properties"]["space"]
    decision = space.pop("additionalProperties")
    space["additionalProperties"] = {
        "title": "Decision",
        "description": "{choice: [...]}, {range: [lo, hi], step: s}, {log_range: [lo, hi]} "
        "or {depth: [n, ...]}.",
        "oneOf": decision.get("oneOf") or decision.get("anyOf"),
    }
    return {
        "$schema": DRAFT_07,
        "$id": "https://ghostspec.dev/schemas/ghostspec-sweep.schema.json",
        "title": "ghostspec sweep",
        **{k: v for k, v in top.items() if k != "title"},
        "definitions": dict(sorted(definitions.items())),
    }


def render() -> str:
    return json.dumps(generate(), indent=2) + "\n"
