"""ghostspec train: a spec, a recipe and a folder of images become a trained run folder.

`train(...)` is the entry point (see `ghostspec.train.loop`); the run folder's layout is in
`ghostspec.train.run`, the optimizer and schedule semantics in `ghostspec.train.optim`.
Importing this package does not import TensorFlow; `train` does, once it has checked its inputs.
"""

from ghostspec.train.loop import Interrupted, RunResult, prepare, train
from ghostspec.train.run import DEFAULT_ROOT, RunFolder

__all__ = ["DEFAULT_ROOT", "Interrupted", "RunFolder", "RunResult", "prepare", "train"]
