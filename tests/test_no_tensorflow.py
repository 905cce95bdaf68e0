"""Everything short of building a model runs without importing TensorFlow or Keras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from isolation import ROOT, assert_imports_no_framework, without_tensorflow

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
    assert cli.run(["validate", "recipes/imagenet.yaml", "--hp", "epochs=3"]) == 0
    assert cli.run(["fmt", "--check", "recipes/finetune.yaml"]) == 0
    assert cli.run(["schema", "--recipe"]) == 0
from ghostspec.language.recipe import default_recipe, load_recipe
assert load_recipe("imagenet", ["epochs=3"]).epochs == 3
assert default_recipe().optimizer.kind == "adamw"
"""


def test_no_tensorflow_import_outside_the_backend() -> None:
    assert_imports_no_framework(SCRIPT)


MODEL_PATH = """
import sys
import numpy as np
import keras
import ghostspec
from ghostspec import models
from ghostspec.keras.weights import load_weights
assert keras.backend.backend() == "jax"
stages = "[[[16, 16, 0, 1, 3]], [[48, 24, 0, 2, 3]], [[72, 40, 0.25, 2, 5]]]"
overrides = ["width=0.1", "input.shape=[null, null, 3]", f"stages={stages}"]
plan = ghostspec.plan("specs/ghostnetv3.yaml", overrides)
model = ghostspec.build(plan)
state = ghostspec.export_state_dict(model)
load_weights(model, plan, state)
x = np.zeros((1, 40, 48, 3), "float32")
for deploy in (ghostspec.fuse(model), ghostspec.fuse(model, batch_norm=True)):
    deploy(x, training=False)
backbone = models.ghostnet_050(features=[2, 3], input_shape=(64, 64, 3))
assert len(backbone(np.zeros((1, 64, 64, 3), "float32"), training=False)) == 2
found = sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "tensorflow" and v)
assert not found, found[:5]
"""


def test_the_model_path_on_jax_imports_no_tensorflow() -> None:
    """Build, both deploy forms, weights out and in, backbones and named constructors, with
    TensorFlow installed but never imported (Keras' own saver imports it when it can, so saving
    is checked with TensorFlow absent, in test_backends and below)."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", MODEL_PATH],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


WITHOUT = """
import contextlib, io, sys
from ghostspec import cli
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    code = cli.run(["export", sys.argv[1], "--to", "tflite", "-o", sys.argv[2]])
print(code)
print(err.getvalue())
"""


def test_what_needs_tensorflow_says_so_in_one_line(tmp_path: Path) -> None:
    """Without TensorFlow (made unimportable), export exits 2 with one line naming the extra."""
    script = tmp_path / "without.py"
    script.write_text(WITHOUT)
    model = ROOT / "tests" / "fixtures" / "legacy_dotted_v2.keras"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        without_tensorflow([str(script), str(model), str(tmp_path / "m.tflite")]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    code, *lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert code == "2", result.stdout
    errors = [line for line in lines if "error:" in line]
    assert errors == [
        "ghostspec: error: export to tflite needs TensorFlow, which is not installed: "
        "pip install 'ghostspec[tensorflow]'"
    ], result.stdout
    assert not (tmp_path / "m.tflite").exists()
