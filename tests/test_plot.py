"""The block diagram: well-formed SVG and PNG for the reference and random specs, written
atomically, with numbers from the plan, and without TensorFlow."""

from __future__ import annotations

import struct
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from isolation import assert_imports_no_framework
from strategies import spec_documents

import ghostspec
from ghostspec.diagnostics import SpecError
from ghostspec.language.reading import dump_yaml
from ghostspec.plan.ir import Plan
from ghostspec.views.plot import DPI, plot_plan

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> list[str]:
    """Every text element's content; parsing also proves the SVG is well-formed XML."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {name: ghostspec.plan(ROOT / "specs" / f"{name}.yaml") for name in ("large", "small")}


@pytest.mark.parametrize(
    ("name", "block", "sizes"),
    [
        ("large", "blocks.6.3", ["224x224", "112x112", "56x56", "28x28", "14x14", "7x7", "1x1"]),
        ("small", "blocks.3.2", ["224x224", "112x112", "56x56", "28x28", "14x14", "7x7", "1x1"]),
    ],
)
def test_reference_svg(
    plans: dict[str, Plan], tmp_path: Path, name: str, block: str, sizes: list[str]
) -> None:
    plan = plans[name]
    out = tmp_path / f"{name}.svg"
    plot_plan(plan, out)
    texts = svg_texts(out)
    for size in sizes:
        assert size in texts
    for node in plan.blocks:
        assert node.name in texts
    assert block in texts
    assert plan.name in texts
    title = " ".join(texts)
    assert f"{plan.params:,} parameters" in title
    assert plan.macs is not None and f"{plan.macs:,} multiply-adds" in title
    assert list(tmp_path.iterdir()) == [out]


def test_reference_png(plans: dict[str, Plan], tmp_path: Path) -> None:
    import matplotlib.image

    widths = {}
    for name, plan in plans.items():
        out = tmp_path / f"{name}.png"
        plot_plan(plan, out)
        width, height = png_size(out)
        assert matplotlib.image.imread(out).shape[:2] == (height, width)
        assert 3 * DPI < height < width
        widths[name] = width
    # 16 blocks draw wider than 11: the figure grows with the network.
    assert widths["large"] > widths["small"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.png", "small.png"]


def test_dynamic_sizes_show_question_marks(tmp_path: Path) -> None:
    plan = ghostspec.plan(ROOT / "specs" / "small.yaml", input_size=(None, None))
    out = tmp_path / "dynamic.svg"
    plot_plan(plan, out)
    texts = svg_texts(out)
    assert "?x?" in texts
    assert any("multiply-adds unknown" in t for t in texts)


def test_svg_is_reproducible(plans: dict[str, Plan], tmp_path: Path) -> None:
    """No date and fixed ids: a committed diagram changes only when the network does."""
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    plot_plan(plans["small"], first)
    plot_plan(plans["small"], second)
    assert first.read_bytes() == second.read_bytes()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_documents(max_stages=4, max_blocks=4))
def test_random_specs(doc: dict[str, Any]) -> None:
    plan = ghostspec.plan(ghostspec.load("random.yaml", text=dump_yaml(doc)))
    with tempfile.TemporaryDirectory() as directory:
        svg, png = Path(directory) / "net.svg", Path(directory) / "net.png"
        plot_plan(plan, svg)
        plot_plan(plan, png)
        texts = svg_texts(svg)
        for node in plan.blocks:
            assert node.name in texts
        assert png_size(png)[0] > 0
        assert sorted(p.name for p in Path(directory).iterdir()) == ["net.png", "net.svg"]


@pytest.mark.parametrize("name", ["net.pdf", "net.jpg", "net", "net.svg.txt"])
def test_unsupported_suffix_is_a_spec_error(
    plans: dict[str, Plan], tmp_path: Path, name: str
) -> None:
    out = tmp_path / name
    with pytest.raises(SpecError) as err:
        plot_plan(plans["small"], out)
    [diagnostic] = err.value.diagnostics
    assert diagnostic.file == str(out)
    assert diagnostic.hint is not None and ".svg" in diagnostic.hint
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(
    plans: dict[str, Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    out = tmp_path / "net.png"
    out.write_bytes(b"old")

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(RuntimeError):
        plot_plan(plans["small"], out)
    assert out.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [out]


def test_missing_directory_is_a_spec_error(plans: dict[str, Plan], tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        plot_plan(plans["small"], tmp_path / "missing" / "net.svg")


SCRIPT = """
import sys, tempfile, pathlib
import ghostspec.views.plot
assert "matplotlib" not in sys.modules, "importing ghostspec.views.plot must stay cheap"
import ghostspec
plan = ghostspec.plan("specs/small.yaml")
with tempfile.TemporaryDirectory() as d:
    ghostspec.views.plot.plot_plan(plan, pathlib.Path(d) / "net.png")
    ghostspec.views.plot.plot_plan(plan, pathlib.Path(d) / "net.svg")
assert "matplotlib.pyplot" not in sys.modules
"""


def test_plotting_imports_no_tensorflow() -> None:
    assert_imports_no_framework(SCRIPT)


def test_plot_marks_the_variants(tmp_path: Path) -> None:
    out = tmp_path / "v3.svg"
    plot_plan(ghostspec.plan("specs/ghostnetv3.yaml"), out)
    text = out.read_text()
    assert "dfc+rpr3" in text and "rpr3" in text
