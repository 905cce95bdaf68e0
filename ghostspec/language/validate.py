"""Validation: a loaded document becomes a Spec, or every problem becomes a located diagnostic."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.languages import RECIPE, SWEEP
from ghostspec.language.names import display_path
from ghostspec.language.names import resolve as resolve_name
from ghostspec.language.reading import DocPath, yaml11_reading
from ghostspec.language.source import Document, load_document
from ghostspec.language.spec import LANGUAGE, NAME_RULE, Spec


def load_spec_document(
    source: str | Path, overrides: list[str] | tuple[str, ...] = (), *, text: str | None = None
) -> Document:
    """Read a spec file (or `text` named `source`) and apply overrides. Raises SpecError.

    `source` may also be a registered model name (`ghostnet_100`); an existing path wins.
    """
    shown = None
    if text is None:
        path, preset = resolve_name(source)
        if preset:  # the name's own settings come first, so the user's --set wins
            source, shown, overrides = path, display_path(path), (*preset, *overrides)
    return load_document(
        source, overrides, text=text, language=LANGUAGE, others=(RECIPE, SWEEP), shown_as=shown
    )


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields by the key a document writes (its alias, where it has one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _fields_at(path: DocPath, root: type[BaseModel] = Spec) -> list[str]:
    """Known keys of the model at `path`, for 'did you mean' hints."""
    model: type[BaseModel] | None = root
    for key in path:
        if model is None:
            return []
        if isinstance(key, int):
            continue
        field = _keys(model).get(key)
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(_keys(model)) if model else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found:
            return found
    for meta in getattr(annotation, "__metadata__", ()) or ():
        found = _model_of(meta)
        if found:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_of(origin) if origin is not None and origin is not annotation else None


def _message(err: ErrorDetails, root: type[BaseModel] = Spec) -> tuple[str, str | None]:
    """Plain-English text for a pydantic error, and a hint where one helps."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    loc = err["loc"]
    if "field" in ctx:  # a rule between fields (spec.rule)
        return err["msg"], ctx.get("hint")
    message, hint = _plain_message(kind, value, ctx, loc, err, root)
    if hint is None and isinstance(value, str) and kind.endswith(("_type", "_parsing")):
        plain = yaml11_reading(value)
        boolean = plain in ("true", "false")
        if plain is not None and boolean == (kind == "bool_type"):
            hint = (
                f"YAML 1.2 (which ghostspec and editors read) takes {value} as text; write {plain}"
            )
    return message, hint


def _plain_message(
    kind: str,
    value: Any,
    ctx: dict[str, Any],
    loc: tuple[Any, ...],
    err: ErrorDetails,
    root: type[BaseModel],
) -> tuple[str, str | None]:
    if kind == "missing":
        return f"missing required field {loc[-1]!r}", None
    if kind == "extra_forbidden":
        known = _fields_at(tuple(loc[:-1]), root)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else (f"known fields: {', '.join(known)}" if known else None)
        )
        return f"unknown field {loc[-1]!r}", hint
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}", None
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_describe(value)}", None
    if kind == "finite_number":
        return f"expected a finite number, got {_describe(value)}", None
    if kind in ("string_type",):
        return f"expected a string, got {_describe(value)}", None
    if kind == "bool_type":
        return f"expected true or false, got {_describe(value)}", None
    if kind == "literal_error":
        return f"{_describe(value)} is not one of {ctx.get('expected')}", None
    if kind == "greater_than_equal":
        return f"{value} is below the minimum {ctx['ge']}", None
    if kind == "greater_than":
        return f"{value} must be greater than {ctx['gt']}", None
    if kind == "less_than_equal":
        return f"{value} is above the maximum {ctx['le']}", None
    if kind == "less_than":
        return f"{value} must be less than {ctx['lt']}", None
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {_describe(value)}", None
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {_describe(value)}", None
    if kind == "too_short":
        return (
            f"needs at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}",
            None,
        )
    if kind == "too_long":
        return f"allows at most {ctx.get('max_length')} item(s)", None
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid name", NAME_RULE
    if kind == "row_length":
        return err["msg"], "write all five columns, or use the mapping form {hidden: .., out: ..}"
    return err["msg"], None


def _strip_loc(loc: tuple[Any, ...]) -> DocPath:
    """Drop pydantic's internal union tags (`function-after[...]`, `int`) from an error location."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part in ("int", "float", "str", "none")):
            continue
        out.append(part)
    return tuple(out)


NetworkRule = Callable[[Spec, Document], list[Diagnostic]]


def spec_from_document(doc: Document, network_rule: NetworkRule | None = None) -> Spec:
    """Validate the document into a Spec, with schema and semantic diagnostics. Raises SpecError.

    `network_rule` adds the checks that need the resolved network (plan.checks passes them, so
    the language never imports the plan); its problems are reported with the others, at once.
    """
    data = doc.data()
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(validation_diagnostics(exc, doc, Spec)) from None
    problems = semantic_problems(spec, doc)
    if network_rule is not None:
        problems += network_rule(spec, doc)
    if problems:
        raise SpecError(problems)
    return spec


def validation_diagnostics(
    exc: ValidationError, doc: Document, root: type[BaseModel]
) -> list[Diagnostic]:
    """Every error of `root.model_validate` on the document's data, located in the document."""
    diagnostics: list[Diagnostic] = []
    for err in exc.errors():
        path = _strip_loc(err["loc"])
        field = (err.get("ctx") or {}).get("field")  # a model rule names the field to point at
        if field is not None:
            path = (*path, field)
        message, hint = _message(err, root)
        at_key = err["type"] == "extra_forbidden"
        diagnostics.append(doc.diagnostic(path, message, hint, at_key=at_key))
    return _dedupe(diagnostics)


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for d in diagnostics:
        key = (d.line, d.column, d.path, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def semantic_problems(spec: Spec, doc: Document) -> list[Diagnostic]:
    """Rules no JSON Schema can express (they depend on other values), each reported on the
    offending node; the README's editor section lists them. Rules that need the resolved network
    (sizes against the total stride, feature taps) are plan.checks'."""
    problems: list[Diagnostic] = []
    channels = spec.input.shape[2]
    for key in ("mean", "std"):
        values = getattr(spec.input, key)
        if values is not None and len(values) != channels:
            problems.append(
                doc.diagnostic(
                    ("input", key),
                    f"has {len(values)} values for {channels} input channels",
                    "give one value per channel",
                )
            )
    blocks = sum(block.repeat for stage in spec.stages for block in stage)
    if spec.ghost.attention == "dfc" and spec.ghost.attention_from >= blocks:
        problems.append(
            doc.diagnostic(
                ("ghost", "attention_from"),
                f"attention starts at block {spec.ghost.attention_from}, but the network has "
                f"{blocks} blocks (numbered from 0), so no block gets it",
                f"use a value below {blocks}, or set ghost.attention to none",
            )
        )
    problems.extend(_head_problems(spec, doc))
    return problems


def _head_problems(spec: Spec, doc: Document) -> list[Diagnostic]:
    """The feature-extractor form: a classifier too, taps without features, unknown maps."""
    head = spec.head
    if head.features is None:
        if head.taps != "last":  # the default may be written out (resolved specs do)
            return [
                doc.diagnostic(
                    ("head", "taps"),
                    "taps chooses the maps of head.features, which is not set",
                    "list the levels, e.g. features: [2, 3, 4, 5], or remove taps",
                )
            ]
        return []
    if head.include_top:
        return [
            doc.diagnostic(
                ("head", "include_top"),
                "a feature extractor (head.features) has no classifier",
                "remove include_top (features imply false), or remove features",
            )
        ]
    return []  # the taps themselves are resolved against the network by plan.checks
