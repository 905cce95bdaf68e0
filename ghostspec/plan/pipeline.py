"""The front phases end to end: a spec file (or a Spec) to a checked Spec and a Plan.

The package face (`ghostspec/__init__.py`) re-exports these; rooms inside the package call them
here, so no room depends on the face. Building a model from the plan is the backend's
(`ghostspec.keras.build`).
"""

from __future__ import annotations

from pathlib import Path

from ghostspec.diagnostics import SpecError
from ghostspec.language.source import Document
from ghostspec.language.spec import Spec
from ghostspec.language.validate import load_spec_document as load_document
from ghostspec.language.validate import spec_from_document
from ghostspec.plan.checks import (
    SizeLocator,
    input_size_problems,
    network_problems,
    on_flag,
    size_problems,
)
from ghostspec.plan.ir import Plan
from ghostspec.plan.lower import lower

SpecSource = str | Path | Spec


def checked_spec(doc: Document) -> Spec:
    """The document as a Spec, with the language's rules and the network's checked at once."""
    return spec_from_document(doc, network_problems)


def load(
    source: str | Path, overrides: list[str] | tuple[str, ...] = (), *, text: str | None = None
) -> Spec:
    """Read and validate a spec file (or `text`, named `source`). Raises SpecError."""
    return _load(source, overrides, text)[0]


def _load(
    source: str | Path, overrides: list[str] | tuple[str, ...], text: str | None
) -> tuple[Spec, Document]:
    doc = load_document(source, overrides, text=text)
    return checked_spec(doc), doc


def plan(
    source: SpecSource,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    input_size: tuple[int | None, int | None] | None = None,
    size_from: SizeLocator | None = None,
) -> Plan:
    """Load, validate and lower a spec (a path or a Spec) into a Plan. Raises SpecError.

    `input_size` replaces the spec's size and goes through the same checks (the total stride
    first); `size_from` says where it came from, for the diagnostics (a recipe's input_size,
    --input-size; by default "input size")."""
    if isinstance(source, Spec):
        if overrides:
            raise ValueError("overrides apply to spec files; change the Spec object instead")
        return lower(source, input_size)
    spec, doc = _load(source, overrides, None)
    if input_size is not None:
        wrong = input_size_problems(spec, input_size, size_from or on_flag("input size"))
        if wrong:
            raise SpecError(wrong)
    result = lower(spec, input_size)
    problems = size_problems(result, doc)
    if problems:
        raise SpecError(problems)
    return result
