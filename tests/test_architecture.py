"""The layout's rules that import-linter's contracts do not state: no import circle anywhere, no
module a reader cannot hold in mind, every room saying what it is, and the face left to users.

The layering itself (which room may import which, TensorFlow kept out of the compiler core) is
stated as contracts in pyproject.toml and checked by `lint-imports` in CI.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ghostspec"
MAX_LINES = 600
ROOMS = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # every import counts: grimp reads module-level and function-level imports alike
    return grimp.build_graph("ghostspec", cache_dir=None)


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle among ghostspec's modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(other) == 1:
                return [*path[path.index(other) :], other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph.modules):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_circle(graph: grimp.ImportGraph) -> None:
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_only_the_cli_imports_the_package_face(graph: grimp.ImportGraph) -> None:
    importers = graph.find_modules_that_directly_import("ghostspec")
    assert {m for m in importers if not m.startswith("ghostspec.cli")} == set()


@pytest.mark.parametrize(
    "module", sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
)
def test_no_module_over_600_lines(module: str) -> None:
    lines = len((PACKAGE / module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concern"


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_says_what_it_takes_hands_on_and_never_imports(room: str) -> None:
    text = (PACKAGE / room / "__init__.py").read_text(encoding="utf-8")
    doc = text.split('"""')[1] if text.startswith('"""') else ""
    for word in ("Takes", "Hands on", "Never imports"):
        assert word in doc, f"ghostspec/{room}/__init__.py: its docstring should say {word!r}"
