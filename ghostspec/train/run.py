"""The run folder: what a training run writes, and reading it back to resume.

```
runs/<spec name>-<n>/
  spec.yaml      the resolved spec (every default written out; --set applied)
  recipe.yaml    the resolved recipe (every default written out; --hp applied)
  classes.json   the class names in label order, a JSON list (runs of earlier versions:
                 classes.txt, one name a line)
  metrics.csv    one row per completed epoch
  logs/          TensorBoard event files (train/, validation/)
  last.keras     the latest weights with the optimizer state
  best.keras     the best validation top-1 (the EMA weights when EMA is on)
  curves.png     loss and accuracy per epoch, train and validation
  deploy.keras   GhostNetV3 specs: best.keras with the branches fused
  state/         resume state: state.json, the checkpoint of its epoch, data.json (what the
                 run was trained on)
  .ghostspec-lock  the run-folder lock (ghostspec.train.lock)
```

A folder is a run when it has spec.yaml, recipe.yaml, its class list and state/state.json; that
is all `--resume` needs, besides the image folder recorded in the state. A new run folder is
made whole or not at all: its first files are written into a hidden folder beside it, which is
renamed into place (an existing empty `-o` folder is filled in place, state.json last; one left
unfinished by a killed process is replaced by the next run). Nothing here imports TensorFlow.
Every file is written atomically (ghostspec.files).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostspec.data.classnames import (
    CLASSES_JSON,
    CLASSES_TXT,
    class_names_file,
    read_class_names,
    write_class_names,
)
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file, remove_paths, stale_temporaries, write_text
from ghostspec.train.lock import LOCK_NAME, RunLock, acquire, held_by_another, in_use
from ghostspec.train.state import (
    RunState,
    checkpoint_name,
    read_state,
    remove_stale_checkpoints,
    save_state,
    snapshot_name,
)

__all__ = [
    "DEFAULT_ROOT",
    "ExistingRun",
    "RunFolder",
    "RunState",
    "checkpoint_name",
    "choose_run_folder",
    "create_run_folder",
    "open_run",
    "read_state",
    "remove_stale_checkpoints",
    "remove_stale_temporaries",
    "resolved_recipe_text",
    "save_state",
    "snapshot_name",
    "write_inputs",
]

DEFAULT_ROOT = Path("runs")
MAX_RUNS = 100_000
DOCUMENT_LIMIT = 16 * 2**20
NEW_SUFFIX = ".ghostspec-new"  # the hidden folder a new run is made in (see create_run_folder)
ABANDONED_AFTER_S = 600  # a new-run folder without a lock file is abandoned after this long


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
        return self.path / CLASSES_JSON

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

    @property
    def data_record(self) -> Path:
        return self.state_dir / "data.json"

    def checkpoint(self, state: RunState) -> Path | None:
        """The checkpoint of the state's epoch, by the layout (never a path from the file)."""
        name = state.checkpoint_file
        return None if name is None else self.state_dir / name


# Files a run writes at its top level and in state/ (whose temporaries a resume may remove).
TOP_FILES = frozenset(
    {"spec.yaml", "recipe.yaml", CLASSES_JSON, CLASSES_TXT, "metrics.csv", "curves.png"}
    | {"last.keras", "best.keras", "deploy.keras"}
)
STATE_FILE = re.compile(r"state\.json|data\.json|epoch-\d+\.(?:weights\.h5|json)")


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


def _not_empty(path: Path) -> SpecError:
    hint = f"continue it with --resume {path}, or choose another -o RUN_DIR"
    return _error(path, "the run folder already exists and is not empty", hint)


def _unfinished(path: Path) -> bool:
    """Whether `path` is a run folder whose making was cut short (its process was killed
    before state.json): only the first files of a run, no state, no lock held. Replaceable."""
    return not held_by_another(path) and _unfinished_here(path)


def choose_run_folder(name: str, output: str | Path | None, root: Path = DEFAULT_ROOT) -> Path:
    """Where a new run will go, checked before anything is written: `output`, or the next free
    `root/<name>-<n>`. Nothing is created here."""
    if output is not None:
        path = Path(output)
        if path.exists():
            if not path.is_dir():
                raise _error(path, "the run folder is a file", "choose another -o RUN_DIR")
            if held_by_another(path):
                raise in_use(path, resume=False)
            if any(path.iterdir()) and not _unfinished(path):
                raise _not_empty(path)
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


def _remove_abandoned(parent: Path) -> None:
    """Hidden new-run folders a killed process left in `parent`: no lock held, and a lock file
    (or, without one, ten minutes of age: a process may be just about to lock it)."""
    own = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(NEW_SUFFIX))
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not own.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            path = Path(entry.path)
            if held_by_another(path):
                continue
            old = time.time() - entry.stat().st_mtime > ABANDONED_AFTER_S
            if old or (path / LOCK_NAME).exists():
                shutil.rmtree(path, ignore_errors=True)


def create_run_folder(
    path: Path,
    name: str,
    explicit: bool,
    populate: Callable[[RunFolder], None],
    lock: bool = True,
) -> tuple[RunFolder, RunLock | None]:
    """Make the run folder with the files `populate` writes (state.json last), whole or not at
    all, and lock it for this process (with `lock`; a multi-worker run's other workers write
    copies of their own and lock nothing). A default folder name taken in the meantime moves on
    to the next free number; an explicit one taken by another run is refused."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _error(path, f"cannot make the run folder: {err.strerror}") from None
    _remove_abandoned(parent)
    if explicit and path.is_dir():
        return _fill_in_place(path, populate, lock)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=NEW_SUFFIX, dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o777 & ~umask)
    except OSError as err:
        raise _error(path, f"cannot make the run folder: {err.strerror}") from None
    held = None
    try:
        held = acquire(temp, resume=False) if lock else None
        (temp / "state").mkdir()
        populate(RunFolder(temp))
        for _ in range(MAX_RUNS):
            try:
                os.rename(temp, path)
                break
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise _error(path, f"cannot make the run folder: {err.strerror}") from None
                if explicit:
                    if held_by_another(path):
                        raise in_use(path, resume=False) from None
                    raise _not_empty(path) from None
                path = parent / f"{name}-{_next_index(parent, name)}"
    except BaseException:
        if held is not None:
            held.release()
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return RunFolder(path), None if held is None else RunLock(path / LOCK_NAME, held.fd)


def _fill_in_place(
    path: Path, populate: Callable[[RunFolder], None], lock: bool
) -> tuple[RunFolder, RunLock | None]:
    """An existing empty `-o` folder (or one a killed process left unfinished) filled in place;
    on any error or interrupt what was written goes again."""
    held = acquire(path, resume=False) if lock else None
    folder = RunFolder(path)
    if {p.name for p in path.iterdir()} - {LOCK_NAME} and not _unfinished_here(path):
        if held is not None:  # another run made it in the meantime: leave it as it is
            held.release()
        raise _not_empty(path)
    written = [folder.spec, folder.recipe, folder.classes, folder.state_dir]
    try:
        remove_paths(written)
        remove_paths(stale_temporaries(path, lambda n: True))
        folder.state_dir.mkdir()
        populate(folder)
    except BaseException:
        remove_paths(written)
        if held is not None:  # the folder is as it was, but for the lock file: that goes too
            remove_paths([held.path])
            held.release()
        raise
    return folder, held


def _unfinished_here(path: Path) -> bool:
    """`_unfinished` for a folder this process has just locked (the lock is its own)."""
    return not (path / "state" / "state.json").exists() and _unfinished_files(path)


def _unfinished_files(path: Path) -> bool:
    """Only the first files of a run (and their temporaries) in `path`."""
    first = {LOCK_NAME, "spec.yaml", "recipe.yaml", CLASSES_JSON, "state"}
    try:
        top = {p.name for p in path.iterdir()}
        state = path / "state"
        inner = {p.name for p in state.iterdir()} if state.is_dir() else set()
    except OSError:
        return False
    leftovers = {p.name for p in stale_temporaries(path, lambda n: n in first)}
    leftovers |= {p.name for p in stale_temporaries(path / "state", lambda n: True)}
    return not (top - first - leftovers) and not (inner - {"data.json"} - leftovers)


def write_inputs(folder: RunFolder, spec_text: str, recipe_text: str, classes: Any) -> None:
    write_text(folder.spec, spec_text)
    write_text(folder.recipe, recipe_text)
    write_class_names(folder.path, classes)


def remove_stale_temporaries(folder: RunFolder) -> list[Path]:
    """The temporary files and scratch folders of ghostspec's own naming that a process killed
    while writing left in the run folder and state/; removed (the caller holds the lock)."""
    found = stale_temporaries(folder.path, lambda n: n in TOP_FILES)
    found += stale_temporaries(folder.state_dir, lambda n: STATE_FILE.fullmatch(n) is not None)
    remove_paths(found)
    return found


# ------------------------------------------------------------------------------------ reading


def _text(path: Path, what: str, hint: str) -> str:
    raw = read_regular_file(path, DOCUMENT_LIMIT, what, hint)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        message = f"the {what} is not UTF-8 text (byte {raw[err.start]:#04x} at {err.start})"
        raise _error(path, message, hint) from None


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
        for p in (folder.spec, folder.recipe, folder.state)
        if not p.is_file()
    ]
    if class_names_file(folder.path) is None:
        missing.insert(2, CLASSES_JSON)
    if missing:
        raise _error(folder.path, f"this is not a run folder: {', '.join(missing)} missing", hint)
    damaged = "the run folder is damaged: restore the file, or start a new run"
    state = read_state(folder.state, damaged)
    checkpoint = folder.checkpoint(state)
    if checkpoint is not None and not checkpoint.is_file():
        raise _error(folder.state, f"the checkpoint state/{checkpoint.name} is missing", damaged)
    return ExistingRun(
        folder=folder,
        spec_text=_text(folder.spec, "spec", damaged),
        recipe_text=_text(folder.recipe, "recipe", damaged),
        classes=read_class_names(folder.path, damaged),
        state=state,
    )
