"""Everything short of building a model runs without importing TensorFlow or Keras."""

from __future__ import annotations

from isolation import assert_imports_no_framework

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
