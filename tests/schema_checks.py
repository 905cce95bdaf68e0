"""Checks shared by the schema agreement tests (specs and recipes): walking a schema, the draft-07
form editors need, descriptions, and building test documents."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
Key = str | int


def walk(node: Any, skip: tuple[str, ...] = ()) -> list[Any]:
    """Every dict and list inside `node`, itself included, except below the keys in `skip`."""
    out = [node]
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in skip:
                out.extend(walk(value, skip))
    elif isinstance(node, list):
        for value in node:
            out.extend(walk(value, skip))
    return out


def assert_draft_07(schema: dict[str, Any]) -> None:
    """A valid draft-07 schema with none of pydantic's 2020-12 keywords left in it."""
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT_07
    for node in walk(schema):
        if isinstance(node, dict):
            assert "$defs" not in node and "prefixItems" not in node
            assert not str(node.get("$ref", "#/definitions/")).startswith("#/$defs")


def undescribed(schema: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """Names of properties without a description (editors show it on hover)."""
    return [
        name
        for node in walk(schema, skip)
        if isinstance(node, dict) and isinstance(node.get("properties"), dict)
        for name, prop in node["properties"].items()
        if not prop.get("description")
    ]


def with_value(base: dict[str, Any], path: tuple[Key, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `base` with the value at `path` set (mappings on the way are created)."""
    doc = copy.deepcopy(base)
    node: Any = doc
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return doc
