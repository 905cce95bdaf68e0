"""What a call of `train` hands back: a `RunResult`, `Interrupted` after Ctrl-C, or `Diverged`
when the loss stopped being finite.

Shared by the stages that end a run (`fit`, `finish`) and by the package's public face.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ghostspec.diagnostics import SpecError

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    best_val_top1: float | None
    best_epoch: int | None
    epochs: int  # completed epochs, counting those before a resume
    stopped_early: bool
    resumed_from: int  # epochs already done when this call started (0 for a new run)
    history: tuple[Mapping[str, float], ...]
    files: tuple[Path, ...]


class Interrupted(Exception):
    """Training was stopped with Ctrl-C; the run folder holds a resumable checkpoint."""

    def __init__(self, run_dir: Path, epoch: int, signal: BaseException | None = None) -> None:
        self.run_dir = run_dir
        self.epoch = epoch
        self.signal = signal  # the KeyboardInterrupt (or the CLI's SIGTERM subclass) caught
        super().__init__(f"interrupted after {epoch} completed epoch(s); resume {run_dir}")


class Diverged(SpecError):
    """The training loss became NaN or infinite; the run folder keeps its last finite epoch.
    A SpecError (exit 2): the recipe's settings do not train this network on this data."""
