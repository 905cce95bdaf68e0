"""Hypothesis strategies for random valid specs, as plain data, in either block form."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from ghostspec.language.spec import ROW_COLUMNS

ACTIVATIONS = ["relu", "relu6", "hard_swish", "swish", "linear"]


@st.composite
def block_rows(draw: st.DrawFn, max_channels: int) -> list[Any]:
    """One compact row [hidden, out, se, stride, kernel]."""
    return [
        draw(st.integers(1, max_channels)),
        draw(st.integers(1, max_channels)),
        draw(st.sampled_from([0, 0.25, 0.5, 1.0])),
        draw(st.sampled_from([1, 2])),
        draw(st.sampled_from([1, 3, 5])),
    ]


@st.composite
def spec_documents(
    draw: st.DrawFn,
    *,
    max_stages: int = 3,
    max_blocks: int = 3,
    max_channels: int = 64,
    max_stride2: int = 3,
    form: str | None = None,
    extras: bool = True,
    dynamic: bool = True,
    variants: bool = True,
) -> dict[str, Any]:
    """A valid spec document. `form` forces "row" or "mapping"; None mixes them."""
    stages = []
    stride2 = 0
    for _ in range(draw(st.integers(1, max_stages))):
        stage = []
        for _ in range(draw(st.integers(1, max_blocks))):
            row = draw(block_rows(max_channels))
            if row[3] == 2:
                if stride2 >= max_stride2:
                    row[3] = 1
                else:
                    stride2 += 1
            use_mapping = form == "mapping" or (form is None and draw(st.booleans()))
            if not use_mapping:
                stage.append(row)
                continue
            block: dict[str, Any] = dict(zip(ROW_COLUMNS, row, strict=True))
            if extras and form is None:
                if row[3] == 1 and draw(st.booleans()):
                    block["repeat"] = draw(st.integers(1, 3))
                if draw(st.booleans()):
                    block["activation"] = draw(st.sampled_from(ACTIVATIONS))
                if draw(st.booleans()):
                    block["ghost"] = {"ratio": draw(st.integers(2, 4))}
                    if variants and draw(st.booleans()):
                        block["ghost"]["attention"] = draw(st.sampled_from(["none", "dfc"]))
            stage.append(block)
        stages.append(stage)
    stem_stride = draw(st.sampled_from([1, 2]))
    total = stem_stride * 2**stride2
    ghost: dict[str, Any] = {
        "ratio": draw(st.integers(2, 3)),
        "cheap_kernel": draw(st.sampled_from([1, 3])),
    }
    if variants:
        ghost["attention"] = draw(st.sampled_from(["none", "dfc"]))
        ghost["attention_from"] = draw(st.integers(0, 2))
        ghost["branches"] = draw(st.sampled_from([0, 0, 1, 3]))
        total *= 2  # attention pools 2x2: every block input must stay at least 2 pixels
        if ghost["attention"] == "dfc":
            blocks = sum(len(stage) for stage in stages)
            ghost["attention_from"] = min(ghost["attention_from"], blocks - 1)
    if dynamic and draw(st.booleans()):
        shape: list[Any] = [None, None, 3]
    else:
        shape = [
            draw(st.integers(total, max(total, 64))),
            draw(st.integers(total, max(total, 64))),
            3,
        ]
    include_top = draw(st.booleans())
    return {
        "ghostspec": 1,
        "name": "random_net",
        "input": {"shape": shape},
        "width": draw(st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.3])),
        "divisor": draw(st.sampled_from([1, 2, 4, 8])),
        "activation": draw(st.sampled_from(ACTIVATIONS)),
        "ghost": ghost,
        "stem": {
            "filters": draw(st.integers(1, max_channels)),
            "kernel": draw(st.sampled_from([1, 3, 5])),
            "stride": stem_stride,
        },
        "stages": stages,
        "head": {
            "filters": draw(st.integers(1, max_channels)),
            "hidden": draw(st.one_of(st.none(), st.integers(1, max_channels))),
            "pooling": draw(st.sampled_from(["avg", "max"])),
            "dropout": draw(st.sampled_from([0.0, 0.2])),
            "classes": draw(st.integers(1, 20)),
            "include_top": include_top,
        },
    }


def in_form(doc: dict[str, Any], form: str) -> dict[str, Any]:
    """The same document with every plain block written as a row or as a mapping."""
    out = copy.deepcopy(doc)
    for stage in out["stages"]:
        for i, block in enumerate(stage):
            if form == "mapping" and isinstance(block, list):
                stage[i] = dict(zip(ROW_COLUMNS, block, strict=True))
            elif form == "row" and isinstance(block, dict) and set(block) <= set(ROW_COLUMNS):
                stage[i] = [block[c] for c in ROW_COLUMNS]
    return out
