"""keras-hub faces: GhostNet as a keras-hub backbone, image classifier and preset.

Takes: a spec, a registered name, a `.keras` file or a run folder. `backbone` builds the
`FeaturePyramidBackbone` (the backend's builder under keras-hub's dtype and data-format
conventions); `classifier` puts the spec's own head on it as a keras-hub `ImageClassifier` with
its preprocessor; `preset` turns a trained model into a keras-hub preset folder.
Hands on: keras-hub models, which keras-hub's RetinaNet and DeepLabV3 take as they are, and
preset folders that `keras_hub.models.Backbone.from_preset` loads.
Never imports: TensorFlow, the training, deploy or views rooms, the CLI or the package face.

keras-hub is an optional extra (`pip install 'ghostspec[hub]'`): importing this package works
without it, and using anything in it says so in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError

EXTRA_HINT = "install the extra: pip install 'ghostspec[hub]'"
EXPORTS = {
    "GhostNetBackbone": "ghostspec.hub.backbone",
    "GhostNetImageClassifier": "ghostspec.hub.classifier",
    "GhostNetImageClassifierPreprocessor": "ghostspec.hub.classifier",
    "GhostNetImageConverter": "ghostspec.hub.classifier",
    "export_preset": "ghostspec.hub.preset",
}
__all__ = ["EXTRA_HINT", "require_keras_hub", *EXPORTS]


def require_keras_hub(what: str = "ghostspec.hub") -> None:
    """Raise one SpecError line naming the extra when keras-hub is not installed."""
    if importlib.util.find_spec("keras_hub") is None:
        message = "needs keras-hub, which is not installed"
        raise SpecError([Diagnostic(file=what, message=message, hint=EXTRA_HINT)])


def __getattr__(name: str) -> Any:
    # keras-hub (and Keras) load only when a face is used, and its absence is one line.
    if name in EXPORTS:
        require_keras_hub(f"ghostspec.hub.{name}")
        return getattr(importlib.import_module(EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
