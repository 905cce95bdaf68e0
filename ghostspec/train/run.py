"""The run folder: what a training run writes, and reading it back to resume.

```
runs/<spec name>-<n>/
  spec.yaml      the resolved spec (every default written out; --set applied)
  recipe.yaml    the resolved recipe (every default written out; --hp applied)
  classes.txt    one class name a line, in label order
  metrics.csv    one row per completed epoch
  logs/          TensorBoard event files (train/, validation/)
  last.keras     the latest weights with the optimizer state
  best.keras     the best validation top-1 (the EMA weights when EMA is on)
  curves.png     loss and accuracy per epoch, train and validation
  deploy.keras   GhostNetV3 specs: best.keras with the branches fused
  state/         resume state: state.json and the checkpoint it names
```

A folder is a run when it has spec.yaml, recipe.yaml, classes.txt and state/state.json; that is
all `--resume` needs, besides the image folder recorded in the state. Nothing here imports
TensorFlow. Every file is written atomically (ghostspec.files).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import write_text

DEFAULT_ROOT = Path("runs")
STATE_VERSION = 1
MAX_RUNS = 100_000


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def classes(self) -> Path:
        return self.path / "classes.txt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def last(self) -> Path:
        return self.path / "last.keras"

    @property
    def best(self) -> Path:
        return self.path / "best.keras"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def deploy(self) -> Path:
        return self.path / "deploy.keras"

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def state(self) -> Path:
        return self.state_dir / "state.json"


# ------------------------------------------------------------------------------ resolved documents


def resolved_recipe_text(recipe: Any, note: str) -> str:
    """The validated recipe as YAML with every default written out."""
    from ghostspec.language.recipe import dump_recipe

    return f"# {note}\n" + dump_recipe(recipe)


# ----------------------------------------------------------------------------------- the folder


def _check_parent(parent: Path, flag: str) -> None:
    if parent.exists() and not parent.is_dir():
        raise _error(parent, "cannot make the run folder here: this is a file, not a folder", flag)
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise _error(
            parent,
            f"cannot make the run folder: {str(probe)!r} is a file, not a folder",
            f"choose another place with {flag}",
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _error(
            parent,
            f"cannot make the run folder: {str(probe)!r} is not writable",
            f"choose a folder you can write to with {flag}",
        )


def choose_run_folder(name: str, output: str | Path | None, root: Path = DEFAULT_ROOT) -> Path:
    """Where a new run will go, checked before anything is written: `output`, or the next free
    `root/<name>-<n>`. Nothing is created here."""
    if output is not None:
        path = Path(output)
        if path.exists():
            if not path.is_dir():
                raise _error(path, "the run folder is a file", "choose another -o RUN_DIR")
            if any(path.iterdir()):
                hint = f"continue it with --resume {path}, or choose another -o RUN_DIR"
                raise _error(path, "the run folder already exists and is not empty", hint)
        _check_parent(path.parent if str(path.parent) else Path("."), "-o RUN_DIR")
        return path
    _check_parent(root, "-o RUN_DIR")
    return root / f"{name}-{_next_index(root, name)}"


def _next_index(root: Path, name: str) -> int:
    taken = set()
    if root.is_dir():
        for child in root.iterdir():
            head, sep, tail = child.name.rpartition("-")
            if sep and head == name and tail.isdigit():
                taken.add(int(tail))
    n = 1
    while n in taken:
        n += 1
    return n


def create_run_folder(path: Path, name: str, explicit: bool) -> RunFolder:
    """Make the run folder (and its parents). A default folder name taken in the meantime moves
    on to the next free number."""
    try:
        if explicit:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(MAX_RUNS):
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    path = path.parent / f"{name}-{_next_index(path.parent, name)}"
    except OSError as err:
        raise _error(path, f"cannot make the run folder: {err.strerror}") from None
    folder = RunFolder(path)
    folder.state_dir.mkdir(exist_ok=True)
    return folder


def write_inputs(
    folder: RunFolder, spec_text: str, recipe_text: str, classes: Sequence[str]
) -> None:
    write_text(folder.spec, spec_text)
    write_text(folder.recipe, recipe_text)
    write_text(folder.classes, "".join(f"{c}\n" for c in classes))


# ------------------------------------------------------------------------------------- the state


@dataclass
class RunState:
    """Everything besides weights and optimizer variables that resuming needs, after `epoch`
    completed epochs. Written to state/state.json after the checkpoint it names."""

    data: str
    val_split: float | None
    strict_data: bool
    spec_source: str
    epoch: int = 0
    checkpoint: str | None = None
    best_epoch: int | None = None
    best_value: float | None = None  # the early-stopping monitor at the best epoch
    best_top1: float | None = None
    wait: int = 0
    stopped_early: bool = False
    finished: bool = False
    seed_states: list[list[int]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        record = {"ghostspec-run": STATE_VERSION, **self.__dict__}
        return json.dumps(record, indent=1) + "\n"


def save_state(folder: RunFolder, state: RunState, snapshot: bool = False) -> None:
    """state.json; with `snapshot`, also epoch-<n>.json beside the checkpoint of that epoch (a
    multi-worker resume may step back one epoch to the one every worker has)."""
    text = state.to_json()
    if snapshot:
        write_text(folder.state_dir / snapshot_name(state.epoch), text)
    write_text(folder.state, text)


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch}.weights.h5"


def snapshot_name(epoch: int) -> str:
    return f"epoch-{epoch}.json"


def remove_stale_checkpoints(folder: RunFolder, keep: Sequence[int]) -> None:
    """Every checkpoint and state snapshot but those of the epochs in `keep`."""
    names = {checkpoint_name(e) for e in keep} | {snapshot_name(e) for e in keep}
    for child in [
        *folder.state_dir.glob("epoch-*.weights.h5"),
        *folder.state_dir.glob("epoch-*.json"),
    ]:
        if child.name not in names:
            with contextlib.suppress(OSError):
                child.unlink()


def read_state(path: Path, hint: str = "") -> RunState:
    """A state.json (or snapshot) read back; SpecError when it is damaged."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.pop("ghostspec-run") != STATE_VERSION:
            raise ValueError("unknown state version")
        return RunState(**record)
    except (ValueError, TypeError, KeyError, OSError) as err:
        raise _error(path, f"the resume state is damaged ({err})", hint or None) from None


@dataclass(frozen=True)
class ExistingRun:
    folder: RunFolder
    spec_text: str
    recipe_text: str
    classes: tuple[str, ...]
    state: RunState


def open_run(path: str | Path) -> ExistingRun:
    """Read a run folder for `--resume`; SpecError when it is not one (or is damaged)."""
    folder = RunFolder(Path(path))
    hint = "pass a folder written by `ghostspec train` (runs/<spec name>-<n>)"
    if not folder.path.is_dir():
        raise _error(folder.path, "no such run folder", hint)
    missing = [
        p.relative_to(folder.path).as_posix()
        for p in (folder.spec, folder.recipe, folder.classes, folder.state)
        if not p.is_file()
    ]
    if missing:
        raise _error(folder.path, f"this is not a run folder: {', '.join(missing)} missing", hint)
    state = read_state(folder.state, hint)
    if state.checkpoint is not None and not (folder.state_dir / state.checkpoint).is_file():
        raise _error(folder.state, f"the checkpoint {state.checkpoint} is missing", hint)
    classes = tuple(
        line for line in folder.classes.read_text(encoding="utf-8").splitlines() if line
    )
    return ExistingRun(
        folder=folder,
        spec_text=folder.spec.read_text(encoding="utf-8"),
        recipe_text=folder.recipe.read_text(encoding="utf-8"),
        classes=classes,
        state=state,
    )
