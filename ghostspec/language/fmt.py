"""`ghostspec fmt`: one canonical layout, comments kept, through ruamel's round trip.

The layout: two-space mappings, sequences indented under their key, every list of scalars (a
compact row, an input shape) on one line, every block (row or mapping) on one line, a one-block
stage as `[[...]]` and a longer stage one block per line. Everything else keeps the author's style.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ghostspec.language.reading import CoreResolver, dump_yaml, parse_text
from ghostspec.language.spec import ROW_COLUMNS, Spec


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _canonicalise(node: Any, in_stages: bool = False, depth: int = 0) -> None:
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            _canonicalise(value, in_stages=(depth == 0 and key == "stages"), depth=depth + 1)
        return
    if not isinstance(node, CommentedSeq):
        return
    if all(_scalar(v) for v in node):
        node.fa.set_flow_style()
        return
    if in_stages:
        node.fa.set_block_style()
        for stage in node:
            _canonicalise_stage(stage)
        return
    node.fa.set_block_style()
    for value in node:
        _canonicalise(value, depth=depth + 1)


def _flow(node: Any) -> None:
    """One line for a block and everything inside it."""
    node.fa.set_flow_style()
    for value in node.values() if isinstance(node, dict) else node:
        if isinstance(value, CommentedSeq | CommentedMap):
            _flow(value)


def _canonicalise_stage(stage: Any) -> None:
    if not isinstance(stage, CommentedSeq):
        return
    for block in stage:
        if isinstance(block, CommentedSeq | CommentedMap):
            _flow(block)
    if len(stage) == 1 and isinstance(stage[0], CommentedSeq | CommentedMap):
        stage.fa.set_flow_style()
    else:
        stage.fa.set_block_style()


def format_text(text: str, name: str) -> str:
    """The canonical form of a spec's text. Raises SpecError for YAML syntax errors."""
    tree = parse_text(text, name)
    if tree is None:
        return text
    _canonicalise(tree)
    yaml = YAML(typ="rt")
    yaml.Resolver = CoreResolver  # quote exactly what YAML 1.2 would misread, as the reader does
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # a block stays on one line, however long
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), _null)  # `ema: null` reads better than `ema:`
    stream = io.StringIO()
    yaml.dump(tree, stream)
    return _tighten_nested_lists(stream.getvalue())


def _null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _tighten_nested_lists(text: str) -> str:
    """ruamel writes a list inside a list as `-   - row`; write `- - row` with rows aligned."""
    lines = text.split("\n")
    out = []
    inner_indent: int | None = None
    for line in lines:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped.startswith(("-   - [", "-   - {")):
            out.append(" " * indent + "- - " + stripped[len("-   - ") :])
            inner_indent = indent + 2
            continue
        if (
            inner_indent is not None
            and indent == inner_indent + 2
            and stripped.startswith(("- [", "- {"))
        ):
            out.append(" " * inner_indent + stripped)
            continue
        inner_indent = None
        out.append(line)
    return "\n".join(out)


# ------------------------------------------------------------------------ the resolved spec


def _block(block: dict[str, Any]) -> Any:
    """A block as a compact row when it has nothing but the five columns, else a mapping of its
    set fields."""
    extra = {k: v for k, v in block.items() if k not in ROW_COLUMNS}
    if extra.get("repeat") == 1 and all(extra.get(k) is None for k in extra if k != "repeat"):
        return [block[k] for k in ROW_COLUMNS]
    return {k: v for k, v in block.items() if v is not None}


def resolved_spec_text(spec: Spec, note: str) -> str:
    """The validated spec as YAML with every default written out, valid on its own: a run's
    `spec.yaml`, the `.keras` metadata's spec (`build`, `train`: the model can be fused and
    exported from the file alone) and a keras-hub backbone's config carry it."""
    data = spec.model_dump(mode="json")
    data["stages"] = [[_block(b) for b in stage] for stage in data["stages"]]
    return f"# {note}\n" + format_text(dump_yaml(data), "spec.yaml")
