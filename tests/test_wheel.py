"""The built wheel carries the shipped specs and schemas, and works outside the checkout.

The wheel is built from a copy of the sources (the checkout stays clean) without build isolation
(offline), installed without dependencies into a fresh virtual environment that sees this
interpreter's site-packages through a .pth line (TensorFlow is not installed twice), and its
`ghostspec` command builds a registered model in a folder outside the checkout.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shipped_folders() -> tuple[str, ...]:
    """SHIPPED from setup.py: the top-level folders the wheel carries inside the package."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SHIPPED":
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup.py defines no SHIPPED")


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH would let pip and the fresh interpreter see the checkout instead of the wheel
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="building without isolation needs setuptools in this environment",
)
def test_wheel_installs_and_builds_a_named_model_outside_the_checkout(tmp_path: Path) -> None:
    folders = shipped_folders()
    assert {"specs", "schemas"} <= set(folders)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("ghostspec", *folders):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))

    dist = tmp_path / "dist"
    run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--no-index", str(source), "-w", str(dist)),
        ]
    )
    (wheel,) = dist.glob("ghostspec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        shipped = [p for f in folders for p in sorted((ROOT / f).rglob("*")) if p.is_file()]
        assert any(p.suffix == ".yaml" for p in shipped) and any(
            p.suffix == ".json" for p in shipped
        )
        for path in shipped:
            member = f"ghostspec/{path.relative_to(ROOT).as_posix()}"
            assert member in members, f"{member} is not in the wheel"
            assert archive.read(member) == path.read_bytes()
        python_files = {
            f"ghostspec/{p.relative_to(ROOT / 'ghostspec').as_posix()}"
            for p in (ROOT / "ghostspec").rglob("*.py")
        }
        assert python_files <= members

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "project_dependencies.pth").write_text("\n".join(sorted(ours)))
    run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "-q"),
            *("--no-deps", "--no-index", str(wheel)),
        ]
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    where = run(
        [str(python), "-c", "import ghostspec.resources as r; print(r.shipped_dir('specs'))"],
        cwd=outside,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    built = run(
        [str(venv / "bin" / "ghostspec"), "build", "ghostnet_050", "-o", "x.keras"],
        cwd=outside,
        env=env,
    )
    assert "parameters 2,587,292" in built.stdout
    assert (outside / "x.keras").stat().st_size > 1_000_000
