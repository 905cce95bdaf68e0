"""Write tests/fixtures/legacy_dotted_v2.keras: a `.keras` file as ghostspec wrote them before
layer names became legal on every backend (reference names with dots, `blocks.1.0.ghost1...`).

Run it with a ghostspec from before that change on the path, for example a checkout of commit
5f5b7c1: PYTHONPATH=/old/checkout KERAS_BACKEND=tensorflow python tools/make_legacy_keras.py
It also writes legacy_dotted_v2.npz: the model's reference state dict (prefixed `state/`), an input
and the model's output on it, so tests can check that the old file still loads with equal outputs
and that its weights map to the reference names.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

import ghostspec
from ghostspec.keras.modelfile import ModelMetadata, save_model_file

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SPEC = "specs/ghostnetv2.yaml"
OVERRIDES = ["width=0.1", "head.classes=10", "input.shape=[null, null, 3]"]


def main() -> None:
    keras.utils.set_random_seed(20240611)
    model = ghostspec.build(SPEC, OVERRIDES)
    names = [layer.name for layer in model.layers]
    assert any("." in name for name in names), "run this with a ghostspec from before the change"
    rng = np.random.default_rng(20240611)
    for variable in model.weights:  # non-trivial statistics, so BatchNorm matters
        shape = tuple(variable.shape)
        low = 0.5 if variable.path.endswith(("gamma", "moving_variance")) else -0.1
        variable.assign(rng.uniform(low, low + 1.0 if low > 0 else 0.2, shape).astype("float32"))
    x = rng.uniform(0, 1, (2, 67, 61, 3)).astype("float32")
    y = np.asarray(model(x, training=False))
    state = ghostspec.export_state_dict(model)
    save_model_file(model, FIXTURES / "legacy_dotted_v2.keras", ModelMetadata(spec=None))
    arrays = {f"state/{k}": v for k, v in state.items()}
    np.savez(FIXTURES / "legacy_dotted_v2.npz", input=x, output=y, **arrays)


if __name__ == "__main__":
    main()
