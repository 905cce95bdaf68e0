"""ghostspec train: a spec, a recipe and a folder of images become a trained run folder.

Takes: a spec (YAML, with `--set` overrides), a recipe (a file, a short name or a Recipe) and an
image folder. `train(...)` (in `session`) runs the stages: `inputs.prepare` checks the inputs
without TensorFlow, then `datasets`, `build`, `fit` and `finish`; `optim` holds the optimizer
and schedule semantics, `run` the run folder's layout, `distribute` the strategies.
Hands on: a run folder that evaluate, predict, export and sweep read.
Never imports: the CLI or the package face; TensorFlow only once the inputs are checked.
"""

from ghostspec.train.inputs import prepare
from ghostspec.train.outcome import Interrupted, RunResult
from ghostspec.train.run import DEFAULT_ROOT, RunFolder
from ghostspec.train.session import train

__all__ = ["DEFAULT_ROOT", "Interrupted", "RunFolder", "RunResult", "prepare", "train"]
