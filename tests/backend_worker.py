"""One Keras backend's side of the parity matrix, run as a script in a subprocess.

    KERAS_BACKEND=jax python tests/backend_worker.py OUT [load]

Each backend runs in its own process (Keras picks its backend once, at import). The worker builds
v1, v2 and v3 from the reference fixtures' weights, at the fixture's static size and with any size
(null height and width, fed an odd non-square crop), as built and in both deploy forms, and writes
every output to OUT/<backend>.npz as `<model>/<size>/<form>`. On backends whose CPU kernels take
channels-first convolutions (JAX, PyTorch) it also builds the static models channels-first from
the same weights (`<model>/static/<form>_cf`, outputs transposed back). It saves each any-size
model as OUT/<backend>_<model>.keras, then loads every other backend's `.keras` file already in
OUT and writes their outputs to OUT/<backend>_loaded.npz as `<source backend>/<model>` (with
`load`, only that). Last, OUT/<backend>.json records whether TensorFlow was imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
BACKENDS = ("tensorflow", "jax", "torch")
# name -> (spec, fixture): tiny inputs (96/97 px), half width, the timm fixtures' weights
MODELS = {
    "v1": ("large.yaml", "ghostnet_050_c10_96"),
    "v2": ("ghostnetv2.yaml", "ghostnetv2_050_c10_97"),
    "v3": ("ghostnetv3.yaml", "ghostnetv3_050_c10_97"),
}
DYNAMIC_CROP = (81, 89)  # the any-size models' input: odd and not square


def overrides(shape: str) -> list[str]:
    return ["width=0.5", "head.classes=10", f"input.shape={shape}"]


def inputs(fixture: str) -> Any:
    import numpy as np

    with np.load(FIXTURES / f"{fixture}.npz") as data:
        return np.asarray(data["input"], dtype="float32")


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

    results: dict[str, Any] = {}
    for name, (spec, fixture) in MODELS.items():
        weights = FIXTURES / f"{fixture}.safetensors"
        x = inputs(fixture)
        h, w = x.shape[1:3]
        for size, shape, batch in (
            ("static", f"[{h}, {w}, 3]", x),
            ("dynamic", "[null, null, 3]", x[:, : DYNAMIC_CROP[0], : DYNAMIC_CROP[1]]),
        ):
            plan = ghostspec.plan(ROOT / "specs" / spec, overrides(shape))
            model = ghostspec.build(plan, weights=weights)
            for form, m in forms(model, plan).items():
                results[f"{name}/{size}/{form}"] = run(m, batch)
            if size == "dynamic":
                save_model_file(model, out / f"{backend}_{name}.keras")
            elif backend != "tensorflow":  # TensorFlow's CPU kernels are channels-last only
                keras.config.set_image_data_format("channels_first")
                try:
                    first = ghostspec.build(plan, weights=weights)
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
        for name, (_, fixture) in MODELS.items():
            path = out / f"{source}_{name}.keras"
            if source == backend or not path.is_file():
                continue
            model = load_model_file(path).model
            crop = inputs(fixture)[:, : DYNAMIC_CROP[0], : DYNAMIC_CROP[1]]
            loaded[f"{source}/{name}"] = run(model, crop)
    np.savez(out / f"{backend}_loaded.npz", **loaded)
    imported = [m for m, v in sys.modules.items() if m.split(".")[0] == "tensorflow" and v]
    report = {"backend": backend, "tensorflow_imported": bool(imported)}
    (out / f"{backend}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
