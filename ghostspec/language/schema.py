"""The editor schema: pydantic's JSON Schema converted to draft-07, with compact rows spelled out.

Draft-07 is what VS Code's YAML extension, JetBrains IDEs and most validators handle reliably;
pydantic emits 2020-12, so `$defs`, `prefixItems` and the block union are rewritten here. Null
defaults are left out: completion would insert `null`, which only says "not set".
"""

from __future__ import annotations

import json
from typing import Any

from ghostspec.language.spec import ROW_COLUMNS, Spec

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
SCHEMA_PATH = "schemas/ghostspec.schema.json"


def _convert(node: Any) -> Any:
    """Rewrite 2020-12 constructs into their draft-07 equivalents, recursively."""
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _convert(v)
        for k, v in node.items()
        if k != "$defs" and not (k == "default" and v is None)
    }
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/$defs/", "#/definitions/")
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    return out


def _row_schema(mapping: dict[str, Any]) -> dict[str, Any]:
    """The compact row `[hidden, out, se, stride, kernel]`, one item schema per column."""
    items = []
    for column in ROW_COLUMNS:
        item = {
            k: v
            for k, v in mapping["properties"][column].items()
            if k not in ("default", "examples")
        }
        item["title"] = column
        items.append(item)
    return {
        "type": "array",
        "title": "Block row",
        "description": "Compact row [hidden, out, se, stride, kernel].",
        "items": items,
        "additionalItems": False,
        "minItems": len(ROW_COLUMNS),
        "maxItems": len(ROW_COLUMNS),
    }


def generate() -> dict[str, Any]:
    """The draft-07 schema for spec files."""
    raw = Spec.model_json_schema(mode="validation")
    definitions = {name: _convert(value) for name, value in raw.get("$defs", {}).items()}
    mapping = definitions.pop("Block")
    mapping["title"] = "Block mapping"
    definitions["BlockMapping"] = mapping
    definitions["Block"] = {
        "title": "Block",
        "description": "A ghost bottleneck: a compact row or a mapping.",
        "anyOf": [_row_schema(mapping), {"$ref": "#/definitions/BlockMapping"}],
    }
    top = _convert(raw)
    schema: dict[str, Any] = {
        "$schema": DRAFT_07,
        "$id": "https://ghostspec.dev/schemas/ghostspec.schema.json",
        "title": "ghostspec network spec",
        **{k: v for k, v in top.items() if k != "title"},
        "definitions": dict(sorted(definitions.items())),
    }
    return schema


def render() -> str:
    return json.dumps(generate(), indent=2) + "\n"
