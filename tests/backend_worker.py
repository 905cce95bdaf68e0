"""One Keras backend's side of the parity matrix, run as a script in a subprocess.

    KERAS_BACKEND=jax python tests/backend_worker.py OUT [load]

Each backend runs in its own process (Keras picks its backend once, at import). The worker builds
short versions of specs/large.yaml, ghostnetv2.yaml and ghostnetv3.yaml (their first five stages:
stride-2 and SE blocks, both shortcut kinds, DFC attention from block 2, GhostNetV3's branches;
half width), at a static size and with any size (null height and width, fed an odd non-square
crop), as built and in both deploy forms, and writes every output to OUT/<backend>.npz as
`<model>/<size>/<form>`. The TensorFlow worker runs first: it draws the weights (BatchNorm
statistics too) and the inputs and saves them as OUT/<model>.npz for the others. On backends whose
CPU kernels take channels-first convolutions (JAX, PyTorch) it also builds the static models
channels-first (`<model>/static/<form>_cf`). It saves each any-size model as
OUT/<backend>_<model>.keras, then loads every other backend's `.keras` file already in OUT and
writes their outputs to OUT/<backend>_loaded.npz as `<source backend>/<model>` (with `load`,
only that). Last, OUT/<backend>.json records whether TensorFlow was imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
MODELS = {"v1": "large.yaml", "v2": "ghostnetv2.yaml", "v3": "ghostnetv3.yaml"}
STAGES = "[[[16,16,0,1,3]],[[48,24,0,2,3]],[[72,24,0,1,3]],[[72,40,0.25,2,5]],[[120,40,0.25,1,5]]]"
STATIC = (64, 64)
DYNAMIC_CROP = (57, 71)  # the any-size models' input: odd and not square


def overrides(shape: str) -> list[str]:
    return ["width=0.5", "head.classes=10", f"stages={STAGES}", f"input.shape={shape}"]


def draw(model: Any, out: Path, name: str) -> None:
    """Weights with BatchNorm statistics away from their defaults, and an input batch, saved
    for the other backends."""
    import numpy as np

    import ghostspec

    rng = np.random.default_rng(sum(map(ord, name)))
    state = ghostspec.export_state_dict(model)
    for key, value in state.items():
        if key.endswith(("running_var", ".weight")) and value.ndim == 1:  # BatchNorm scales
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        elif key.endswith(("running_mean", ".bias")):
            state[key] = rng.normal(0, 0.1, value.shape).astype("float32")
    x = rng.normal(0, 1, (2, *STATIC, 3)).astype("float32")
    np.savez(out / f"{name}.npz", x=x, **{f"state/{k}": v for k, v in state.items()})


def drawn(out: Path, name: str) -> tuple[dict[str, Any], Any]:
    import numpy as np

    with np.load(out / f"{name}.npz") as data:
        state = {k[6:]: data[k] for k in data.files if k.startswith("state/")}
        return state, data["x"]


def forms(model: Any, plan: Any) -> dict[str, Any]:
    import ghostspec

    return {
        "built": model,
        "fused": ghostspec.fuse(model, plan),
        "fused_bn": ghostspec.fuse(model, plan, batch_norm=True),
    }


def run(model: Any, x: Any, channels_first: bool = False) -> Any:
    import numpy as np

    if channels_first:
        return np.asarray(model(x.transpose(0, 3, 1, 2), training=False))
    return np.asarray(model(x, training=False))


def matrix(out: Path, backend: str) -> None:
    """Every model, size and form on this backend, to OUT/<backend>.npz."""
    import keras
    import numpy as np

    import ghostspec
    from ghostspec.keras.modelfile import save_model_file
    from ghostspec.keras.weights import load_weights

    results: dict[str, Any] = {}
    for name, spec in MODELS.items():
        if backend == "tensorflow":
            keras.utils.set_random_seed(0)
            draw(ghostspec.build(ROOT / "specs" / spec, overrides("[64, 64, 3]")), out, name)
        weights, x = drawn(out, name)
        for size, shape, batch in (
            ("static", f"[{STATIC[0]}, {STATIC[1]}, 3]", x),
            ("dynamic", "[null, null, 3]", x[:, : DYNAMIC_CROP[0], : DYNAMIC_CROP[1]]),
        ):
            plan = ghostspec.plan(ROOT / "specs" / spec, overrides(shape))
            model = ghostspec.build(plan)
            load_weights(model, plan, weights)
            for form, m in forms(model, plan).items():
                results[f"{name}/{size}/{form}"] = run(m, batch)
            if size == "dynamic":
                save_model_file(model, out / f"{backend}_{name}.keras")
            elif backend != "tensorflow":  # TensorFlow's CPU kernels are channels-last only
                keras.config.set_image_data_format("channels_first")
                try:
                    first = ghostspec.build(plan)
                    load_weights(first, plan, weights)
                    for form, m in forms(first, plan).items():
                        results[f"{name}/{size}/{form}_cf"] = run(m, batch, channels_first=True)
                finally:
                    keras.config.set_image_data_format("channels_last")
    np.savez(out / f"{backend}.npz", **results)


def main() -> int:
    out = Path(sys.argv[1])
    import keras
    import numpy as np

    from ghostspec.keras.modelfile import load_model_file

    backend = keras.backend.backend()
    if sys.argv[2:] != ["load"]:
        matrix(out, backend)
    loaded: dict[str, Any] = {}
    for source in BACKENDS:
        for name in MODELS:
            path = out / f"{source}_{name}.keras"
            if source == backend or not path.is_file():
                continue
            model = load_model_file(path).model
            x = drawn(out, name)[1][:, : DYNAMIC_CROP[0], : DYNAMIC_CROP[1]]
            loaded[f"{source}/{name}"] = run(model, x)
    np.savez(out / f"{backend}_loaded.npz", **loaded)
    imported = [m for m, v in sys.modules.items() if m.split(".")[0] == "tensorflow" and v]
    report = {"backend": backend, "tensorflow_imported": bool(imported)}
    (out / f"{backend}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
