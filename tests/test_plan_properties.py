"""Property tests of the language and the plan on random valid specs (no TensorFlow)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import in_form, spec_documents

import ghostspec
from ghostspec.diagnostics import SpecError
from ghostspec.language.fmt import format_text
from ghostspec.language.reading import dump_yaml
from ghostspec.language.spec import ROW_COLUMNS, Spec
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Bottleneck, Classifier, ConvNode, Head, Plan, Reparam, make_divisible

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_dict(doc: dict[str, Any]) -> Spec:
    return ghostspec.load("random.yaml", text=dump_yaml(doc))


@SETTINGS
@given(spec_documents())
def test_dump_and_reload_is_the_same_spec(doc: dict[str, Any]) -> None:
    spec = load_dict(doc)
    again = ghostspec.load("again.json", text=json.dumps(spec.model_dump(mode="json")))
    assert again == spec


@SETTINGS
@given(spec_documents(extras=False))
def test_row_and_mapping_forms_give_the_same_plan(doc: dict[str, Any]) -> None:
    rows = ghostspec.plan(load_dict(in_form(doc, "row")))
    mappings = ghostspec.plan(load_dict(in_form(doc, "mapping")))
    assert rows == mappings


def ceil_div(size: int | None, stride: int) -> int | None:
    return None if size is None else -(-size // stride)


@SETTINGS
@given(spec_documents())
def test_plan_invariants(doc: dict[str, Any]) -> None:
    plan = ghostspec.plan(load_dict(doc))
    previous = None
    for node in plan.nodes:
        if previous is not None:
            assert node.cin == previous.cout, node.name
            assert node.in_size == previous.out_size, node.name
        if isinstance(node, Bottleneck):
            expected = (
                ceil_div(node.in_size[0], node.stride),
                ceil_div(node.in_size[1], node.stride),
            )
            assert node.out_size == expected
            identity = node.cin == node.cout and node.stride == 1
            assert (node.shortcut_kind == "identity") == identity
            for module in (node.ghost1, node.ghost2):
                init = module.primary.conv.cout
                made = init + module.cheap.conv.cout
                ratio = made // init
                assert made == init * ratio and init == math.ceil(module.cout / ratio)
        previous = node
    assert plan.output_shape[-1] == plan.nodes[-1].cout


def independent_param_count(doc: dict[str, Any]) -> int:
    """Parameters from the paper's formulas, written without the plan's classes."""
    width, divisor = doc["width"], doc["divisor"]
    settings = doc["ghost"]
    ratio, cheap = settings["ratio"], settings["cheap_kernel"]
    branches = settings.get("branches", 0)

    def scaled(c: int) -> int:
        return make_divisible(c * width, divisor)

    def conv_bn(cin: int, cout: int, k: int, depthwise: bool, identity: bool = False) -> int:
        """A conv + BN, or GhostNetV3's branches: b of them, a 1x1 one, an identity BN."""
        weights = k * k * cout if depthwise else k * k * cin * cout
        if branches == 0:
            return weights + 2 * cout
        total = branches * (weights + 2 * cout)
        if k > 1:
            total += (cout if depthwise else cin * cout) + 2 * cout
        if identity and cin == cout:
            total += 2 * cout
        return total

    def ghost(cin: int, cout: int, r: int, attention: bool = False) -> int:
        init = math.ceil(cout / r)
        new = init * (r - 1)
        total = conv_bn(cin, init, 1, False) + conv_bn(init, new, cheap, True, identity=True)
        if attention:  # DFC: 1x1 conv + BN, 1 x 5 and 5 x 1 depthwise convs + BN
            total += cin * cout + 2 * cout + 2 * (5 * cout + 2 * cout)
        return total

    stem = doc["stem"]
    c = scaled(stem["filters"])
    total = doc["input"]["shape"][2] * c * stem["kernel"] ** 2 + 2 * c
    index = 0
    for stage in doc["stages"]:
        for raw in stage:
            block = raw if isinstance(raw, dict) else dict(zip(ROW_COLUMNS, raw, strict=True))
            r = block.get("ghost", {}).get("ratio", ratio)
            for _ in range(block.get("repeat", 1)):
                hidden, out, k = scaled(block["hidden"]), scaled(block["out"]), block["kernel"]
                rule = settings.get("attention") == "dfc" and index >= settings["attention_from"]
                attention = block.get("ghost", {}).get("attention", "dfc" if rule else "none")
                index += 1
                total += ghost(c, hidden, r, attention == "dfc") + ghost(hidden, out, r)
                if block["stride"] == 2:
                    total += conv_bn(hidden, hidden, k, True)
                if block["se"] > 0:
                    reduced = make_divisible(hidden * block["se"], 4)
                    total += 2 * hidden * reduced + reduced + hidden
                if c != out or block["stride"] == 2:
                    total += k * k * c + 2 * c + c * out + 2 * out
                c = out
    head = doc["head"]
    last = scaled(head["filters"])
    total += c * last + 2 * last
    c = last
    if head["include_top"]:
        if head["hidden"] is not None:
            total += c * head["hidden"] + head["hidden"]
            c = head["hidden"]
        total += c * head["classes"] + head["classes"]
    return total


@SETTINGS
@given(spec_documents())
def test_parameter_count_matches_an_independent_count(doc: dict[str, Any]) -> None:
    plan = ghostspec.plan(load_dict(doc))
    assert plan.params == independent_param_count(doc)


# A spec rendered by hand, so the expected line and column of every value are known without
# asking the loader that is under test.
BAD_VALUES = {
    "hidden": [0, -3, "wide", True],
    "out": [0, 100001, 2.5],
    "se": [1.5, -0.1, "x"],
    "stride": [3, 0, True],
    "kernel": [4, 0, 17],
}


def render(doc: dict[str, Any]) -> tuple[str, dict[tuple[int, int, str], tuple[int, int]]]:
    lines = ["ghostspec: 1", "name: mutated", "stages:"]
    where: dict[tuple[int, int, str], tuple[int, int]] = {}
    for s, stage in enumerate(doc["stages"]):
        for j, block in enumerate(stage):
            prefix = "  - - " if j == 0 else "    - "
            text = prefix
            values = block if isinstance(block, list) else [block[c] for c in ROW_COLUMNS]
            text += "[" if isinstance(block, list) else "{"
            for i, (column, value) in enumerate(zip(ROW_COLUMNS, values, strict=True)):
                if i:
                    text += ", "
                if isinstance(block, dict):
                    text += f"{column}: "
                where[(s, j, column)] = (len(lines) + 1, len(text) + 1)
                text += json.dumps(value)
            text += "]" if isinstance(block, list) else "}"
            lines.append(text)
    return "\n".join(lines) + "\n", where


@SETTINGS
@given(spec_documents(extras=False, max_stride2=0), st.data())
def test_a_mutated_field_is_reported_at_its_position(doc: dict[str, Any], data: Any) -> None:
    s = data.draw(st.integers(0, len(doc["stages"]) - 1))
    j = data.draw(st.integers(0, len(doc["stages"][s]) - 1))
    column = data.draw(st.sampled_from(ROW_COLUMNS))
    bad = data.draw(st.sampled_from(BAD_VALUES[column]))
    block = doc["stages"][s][j]
    if isinstance(block, list):
        block[ROW_COLUMNS.index(column)] = bad
    else:
        block[column] = bad
    text, where = render(doc)
    with pytest.raises(SpecError) as caught:
        ghostspec.load("mutated.yaml", text=text)
    positions = [(d.line, d.column) for d in caught.value.diagnostics]
    assert where[(s, j, column)] in positions, (text, caught.value.diagnostics)


@SETTINGS
@given(spec_documents(), st.sampled_from(["row", "mapping", None]))
def test_fmt_is_idempotent_and_keeps_the_spec(doc: dict[str, Any], form: str | None) -> None:
    source = dump_yaml(in_form(doc, form) if form else doc)
    source = "# a comment that must survive\n" + source
    once = format_text(source, "x.yaml")
    assert format_text(once, "x.yaml") == once
    assert "# a comment that must survive" in once
    assert ghostspec.load("x.yaml", text=once) == ghostspec.load("x.yaml", text=source)


def test_plan_nodes_are_the_reference_layout() -> None:
    plan: Plan = ghostspec.plan("specs/large.yaml")
    assert isinstance(plan.nodes[0], ConvNode) and plan.nodes[0].name == "conv_stem"
    assert isinstance(plan.nodes[-2], Head) and isinstance(plan.nodes[-1], Classifier)
    assert [n.name for n in plan.blocks][:3] == ["blocks.0.0", "blocks.1.0", "blocks.2.0"]


@SETTINGS
@given(spec_documents(), st.sampled_from([1, 2, 3]))
def test_fusing_branches_gives_the_plain_network_with_biases(
    doc: dict[str, Any], branches: int
) -> None:
    doc["ghost"]["branches"] = branches
    training = ghostspec.plan(load_dict(doc))
    doc["ghost"]["branches"] = 0
    plain = ghostspec.plan(load_dict(doc))
    fused = fuse_plan(training)
    assert not any(isinstance(layer, Reparam) for n in fused.nodes for layer in _ops(n))
    assert fused.macs == plain.macs
    # each fused conv trades its BatchNorm (2 per channel) for a bias (1 per channel)
    fused_channels = sum(op.conv.cout for n in training.nodes for op in _ops(n) if op is not None)
    assert fused.params == plain.params - fused_channels
    assert training.params > fused.params


def _ops(node: Any) -> list[Any]:
    """The re-parameterisable convs of a node (ghost module convs, strided depthwise)."""
    if not isinstance(node, Bottleneck):
        return []
    ops = [node.ghost1.primary, node.ghost1.cheap, node.ghost2.primary, node.ghost2.cheap]
    ops.append(node.conv_dw)
    return [op for op in ops if isinstance(op, Reparam)]
