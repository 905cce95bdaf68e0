"""Run a snippet in a fresh interpreter and check which heavy frameworks it imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REPORT = """
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "torch"))
print(heavy)
sys.exit(1 if heavy else 0)
"""


def assert_imports_no_framework(script: str) -> None:
    """`script` (run from the repository root) passes and leaves TensorFlow, Keras and torch
    unimported."""
    result = subprocess.run(
        [sys.executable, "-c", script + REPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


# Runs a script with TensorFlow unimportable, as on a machine where it is not installed:
# `import tensorflow` raises ImportError (None in sys.modules), and so does Keras' lazy import.
BLOCK_TENSORFLOW = """
import runpy, sys
sys.modules["tensorflow"] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def without_tensorflow(command: list[str]) -> list[str]:
    """The argv that runs the script `command[0]` with arguments `command[1:]` without
    TensorFlow."""
    return [sys.executable, "-c", BLOCK_TENSORFLOW, *command]
