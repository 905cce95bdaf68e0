"""ghostspec train: a spec, a recipe and a folder of images become a trained run folder.

The room takes a spec (YAML, with `--set` overrides), a recipe (a file, a short name or a Recipe)
and an image folder; it hands on a run folder (layout in `ghostspec.train.run`) that evaluate,
predict and deploy read. It imports the rooms below it, never `ghostspec.cli` nor the package face
`ghostspec.models`. `train(...)` (in `session`) runs the stages: `inputs.prepare` checks the
inputs without TensorFlow, then `datasets`, `build`, `fit` and `finish`; the optimizer and
schedule semantics are in `optim`. Importing this package does not import TensorFlow.
"""

from ghostspec.train.inputs import prepare
from ghostspec.train.outcome import Interrupted, RunResult
from ghostspec.train.run import DEFAULT_ROOT, RunFolder
from ghostspec.train.session import train

__all__ = ["DEFAULT_ROOT", "Interrupted", "RunFolder", "RunResult", "prepare", "train"]
