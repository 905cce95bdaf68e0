"""The languages ghostspec reads, described for the shared reader: specs, recipes and sweeps.

The descriptions (version key, override flag, wording) live here so that loading a spec can
recognise a recipe passed by mistake without the compiler core importing the recipe language.
"""

from __future__ import annotations

from ghostspec.language.reading import Language
from ghostspec.language.spec import LANGUAGE as SPEC

RECIPE = Language(
    flag="--hp",
    examples=("epochs=3", "optimizer.lr=0.05"),
    start="a recipe starts with `ghostspec-recipe: 1`",
    version_key="ghostspec-recipe",
    noun="recipe",
    title="training recipe",
    used_by="recipes go to `train --recipe` and validate",
)
SWEEP = Language(
    flag="--set",
    examples=("budget.trials=50", "search=random"),
    start="a sweep starts with `ghostspec-sweep: 1`, its spec and its space",
    version_key="ghostspec-sweep",
    noun="sweep",
    title="sweep",
    used_by="sweeps go to `ghostspec sweep` and validate",
)
LANGUAGES = (SPEC, RECIPE, SWEEP)

__all__ = ["LANGUAGES", "RECIPE", "SPEC", "SWEEP"]
