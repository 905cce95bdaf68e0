"""Everything short of building a model runs without importing TensorFlow or Keras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import contextlib, io, sys
import ghostspec
from ghostspec import cli
plan = ghostspec.plan("specs/large.yaml", ["width=1.3"])
assert plan.params == 7358820
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    assert cli.run(["validate", "specs/large.yaml", "specs/small.yaml"]) == 0
    assert cli.run(["inspect", "specs/large.yaml", "--format", "json"]) == 0
    assert cli.run(["inspect", "specs/small.yaml"]) == 0
    assert cli.run(["schema", "--check"]) == 0
    assert cli.run(["fmt", "--check", "specs/large.yaml"]) == 0
    assert cli.run(["build", "specs/large.yaml", "--set", "stages.0.0.3=3"]) == 2
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "torch"))
print(heavy)
sys.exit(1 if heavy else 0)
"""


def test_no_tensorflow_import_outside_the_backend() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"
