"""The resume state: state/state.json, its epoch snapshots and the checkpoints they go with.

A run folder is untrusted input when it is resumed (it may be damaged, edited or swapped): the
state is validated like every other document (pydantic, strict types, bounds, its own
consistency), and the checkpoint's path comes from the run folder's layout
(`state/epoch-<n>.weights.h5` for the state's epoch), never from the file. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file, write_text

STATE_VERSION = 1
STATE_LIMIT = 256 * 2**20  # the history of a long run stays far below this


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch}.weights.h5"


def snapshot_name(epoch: int) -> str:
    return f"epoch-{epoch}.json"


class Network(BaseModel):
    """What the run trains, to notice a spec.yaml swapped for another network on resume."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    params: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


def network_of(spec: BaseModel, params: int) -> Network:
    """The network's fingerprint: its parameter count and a digest of the resolved spec (every
    default filled in, so reformatting spec.yaml or adding comments changes nothing)."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
    return Network(params=params, digest=hashlib.sha256(text.encode()).hexdigest())


class RunState(BaseModel):
    """Everything besides weights and optimizer variables that resuming needs, after `epoch`
    completed epochs. Written to state/state.json after the checkpoint of that epoch."""

    model_config = ConfigDict(extra="forbid", strict=True)

    data: str
    val_split: float | None
    strict_data: bool
    spec_source: str
    epoch: int = Field(default=0, ge=0)
    checkpoint: str | None = None  # always checkpoint_name(epoch) when set; read for its presence
    best_epoch: int | None = Field(default=None, ge=1)
    best_value: float | None = None  # the early-stopping monitor at the best epoch
    best_top1: float | None = None
    wait: int = Field(default=0, ge=0)
    stopped_early: bool = False
    finished: bool = False  # set last, once every file of the run is written
    seed_states: list[list[int]] = Field(default_factory=list)
    history: list[dict[str, float]] = Field(default_factory=list)
    network: Network | None = None  # absent in runs of earlier versions

    @model_validator(mode="after")
    def _consistent(self) -> RunState:
        if self.checkpoint is not None and self.checkpoint != checkpoint_name(self.epoch):
            raise ValueError(
                f"it names the checkpoint {self.checkpoint!r}, not this run's "
                f"{checkpoint_name(self.epoch)!r} of epoch {self.epoch}"
            )
        if len(self.history) != self.epoch:
            raise ValueError(f"it has {len(self.history)} history rows for {self.epoch} epochs")
        if self.best_epoch is not None and self.best_epoch > self.epoch:
            raise ValueError(f"its best epoch {self.best_epoch} is after epoch {self.epoch}")
        return self

    def to_json(self) -> str:
        record = {"ghostspec-run": STATE_VERSION, **self.model_dump(mode="json")}
        return json.dumps(record, indent=1) + "\n"

    @property
    def checkpoint_file(self) -> str | None:
        """The checkpoint's name in state/, from the layout (None before the first one)."""
        return None if self.checkpoint is None else checkpoint_name(self.epoch)


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def read_state(path: Path, hint: str = "") -> RunState:
    """A state.json (or snapshot) read back and validated; SpecError when it is damaged."""
    advice = hint or None
    raw = read_regular_file(path, STATE_LIMIT, "resume state", advice)
    try:
        record: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        message = f"the resume state is damaged: it is not JSON ({err})"
        raise SpecError([Diagnostic(file=str(path), message=message, hint=advice)]) from None
    if not isinstance(record, dict) or record.pop("ghostspec-run", None) != STATE_VERSION:
        message = "the resume state is damaged: it is not a ghostspec run state (version 1)"
        raise SpecError([Diagnostic(file=str(path), message=message, hint=advice)])
    try:
        return RunState.model_validate(record)
    except ValidationError as err:
        message = f"the resume state is damaged: {_problem(err)}"
        raise SpecError([Diagnostic(file=str(path), message=message, hint=advice)]) from None


def save_state(state_dir: Path, state: RunState, snapshot: bool = False) -> None:
    """state.json; with `snapshot`, also epoch-<n>.json beside the checkpoint of that epoch (a
    multi-worker resume may step back one epoch to the one every worker has)."""
    text = state.to_json()
    if snapshot:
        write_text(state_dir / snapshot_name(state.epoch), text)
    write_text(state_dir / "state.json", text)


def remove_stale_checkpoints(state_dir: Path, keep: Sequence[int]) -> None:
    """Every checkpoint and state snapshot but those of the epochs in `keep`."""
    names = {checkpoint_name(e) for e in keep} | {snapshot_name(e) for e in keep}
    for child in [*state_dir.glob("epoch-*.weights.h5"), *state_dir.glob("epoch-*.json")]:
        if child.name not in names:
            with contextlib.suppress(OSError):
                child.unlink()
