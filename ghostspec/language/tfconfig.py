"""TF_CONFIG, the environment variable that places a worker in a multi-worker cluster, read as a
document like a spec: every field typed, the cluster bounded, the task types ghostspec trains
with (`chief` and `worker`), and every problem a located diagnostic.

TF_CONFIG is JSON. The fast path is Python's own JSON reader and the pydantic model; only a
document that fails is read again with positions (the shared reader, `language/source.py`), so
the message points at the value at fault. Nothing here imports a framework, so a bad TF_CONFIG
is refused at once, before TensorFlow starts (a 10,000-worker cluster once meant 25 silent
seconds inside TensorFlow).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.reading import Language
from ghostspec.language.source import load_document
from ghostspec.language.spec import rule
from ghostspec.language.validate import _message, validation_diagnostics

NAME = "TF_CONFIG"
MAX_WORKERS = 1024  # chief and workers together; far beyond any GhostNet run
TASK_TYPES = ("chief", "worker")
EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)
EVALUATOR_HINT = (
    "ghostspec trains with chief and worker tasks only; leave the evaluator out of TF_CONFIG and "
    "evaluate the run folder when it is done: ghostspec evaluate RUN_DIR --data DIR"
)
PS_HINT = (
    "ghostspec's multiworker strategy is all-reduce (MultiWorkerMirroredStrategy), without "
    "parameter servers; list every machine as a worker"
)
LANGUAGE = Language(noun="TF_CONFIG", title="TF_CONFIG", start=f"e.g. {EXAMPLE}")
POSITIONS_UP_TO = 16 * 1024  # longer texts are located by path: reading positions costs seconds
SHOWN = 100  # characters of a long TF_CONFIG line shown around the caret
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):[0-9]{1,5}")


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise PydanticCustomError(
            "address", "'{value}' is not an address of the form host:port", {"value": value}
        )
    return value


def _task_type(value: Any) -> Any:
    if value == "evaluator":
        raise PydanticCustomError(
            "task_type", "an evaluator task would train alone and keep nothing", {}
        )
    if value == "ps":
        raise PydanticCustomError("task_type", "parameter-server tasks are not supported", {})
    if isinstance(value, str) and value not in TASK_TYPES:
        raise PydanticCustomError(
            "task_type", "'{value}' is not one of 'chief', 'worker'", {"value": value}
        )
    return value


Address = Annotated[StrictStr, Field(max_length=1024), AfterValidator(_address)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TFCluster(_Model):
    """The machines of the cluster, by task type."""

    chief: list[Address] | None = Field(None, max_length=1)
    worker: list[Address] | None = None  # bounded with chief below: one message for both
    evaluator: Any = None  # refused below with a message of its own
    ps: Any = None

    @model_validator(mode="after")
    def _supported(self) -> TFCluster:
        if self.evaluator is not None:
            raise rule(
                "evaluator", "an evaluator task is not supported", "evaluator", EVALUATOR_HINT
            )
        if self.ps is not None:
            raise rule("ps", "parameter servers are not supported", "ps", PS_HINT)
        if self.size == 0:
            raise rule(
                "empty", "the cluster names no chief and no worker", "worker", f"e.g. {EXAMPLE}"
            )
        if self.size > MAX_WORKERS:
            raise rule(
                "too_many",
                f"the cluster has {self.size:,} chief and worker tasks; ghostspec allows at most "
                f"{MAX_WORKERS:,}",
                "worker",
                "check the list (a generated TF_CONFIG may have repeated it)",
            )
        return self

    @property
    def size(self) -> int:
        return len(self.chief or ()) + len(self.worker or ())

    def members(self, task_type: str) -> list[str]:
        return list(getattr(self, task_type) or ())


class TFTask(_Model):
    """This process's place in the cluster."""

    type: Annotated[StrictStr, BeforeValidator(_task_type)]
    index: Annotated[StrictInt, Field(ge=0)]
    trial: StrictStr | StrictInt | None = None  # set by some cluster managers; unused


class TFConfig(_Model):
    """The TF_CONFIG document. `job`, `environment`, `rpc_layer` and `session_master` are
    fields TensorFlow or cluster managers set; ghostspec reads none of them but checks types."""

    cluster: TFCluster
    task: TFTask
    rpc_layer: StrictStr | None = None
    environment: StrictStr | None = None
    session_master: StrictStr | None = None
    job: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _task_in_cluster(self) -> TFConfig:
        members = self.cluster.members(self.task.type)
        if self.task.index >= len(members):
            where = f"the cluster has {len(members)} {self.task.type}(s)"
            raise PydanticCustomError(
                "index",
                f"index {self.task.index} is out of range: {where}",
                {
                    "field": "task",
                    "hint": f"index {self.task.type} tasks from 0 to {len(members) - 1}"
                    if members
                    else f"add this machine to the cluster's {self.task.type!r} list",
                },
            )
        return self


def parse_tf_config(text: str) -> TFConfig:
    """The TF_CONFIG text validated; SpecError with every problem located in it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        lines = text.splitlines()
        raise SpecError(
            [
                Diagnostic(
                    file=NAME,
                    message=f"is not valid JSON ({err.msg} at character {err.pos})",
                    line=err.lineno,
                    column=err.colno,
                    hint=f"e.g. {EXAMPLE}",
                    source_line=lines[err.lineno - 1] if 0 < err.lineno <= len(lines) else None,
                )
            ]
        ) from None
    except RecursionError:
        raise SpecError([Diagnostic(file=NAME, message="is nested too deeply to read")]) from None
    if not isinstance(data, dict):
        raise SpecError(
            [
                Diagnostic(
                    file=NAME,
                    message='must be a JSON object with a "cluster" mapping and a "task"',
                    hint=f"e.g. {EXAMPLE}",
                )
            ]
        )
    try:
        return TFConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_located(exc, text)) from None


def _located(exc: ValidationError, text: str) -> list[Diagnostic]:
    """The validation errors pointed into the text, or by path where it cannot be read so."""
    problems: list[Diagnostic] = []
    if len(text) <= POSITIONS_UP_TO:
        try:
            document = load_document(NAME, text=text, language=LANGUAGE)
            problems = validation_diagnostics(exc, document, TFConfig)
        except SpecError:  # JSON that YAML reads otherwise (a duplicate key): by path alone
            pass
    if not problems:
        problems = [_by_path(err) for err in exc.errors()]
    return [_clipped(_worded(d)) for d in problems]


def _clipped(problem: Diagnostic) -> Diagnostic:
    """A long one-line TF_CONFIG shown only around the caret."""
    from dataclasses import replace

    text, column = problem.source_line, problem.column
    if text is None or column is None or len(text) <= SHOWN:
        return problem
    start = max(0, min(column - 1 - SHOWN // 2, len(text) - SHOWN))
    shown = ("..." if start else "") + text[start : start + SHOWN]
    shown += "..." if start + SHOWN < len(text) else ""
    return replace(problem, source_line=shown, column=column - start + (3 if start else 0))


def _by_path(err: ErrorDetails) -> Diagnostic:
    """A validation error located by its path in the document, without a line and column."""
    ctx = err.get("ctx") or {}
    path = [str(p) if isinstance(p, str) else f"[{p}]" for p in err["loc"]]
    if "field" in ctx:
        path.append(str(ctx["field"]))
    message, hint = _message(err, TFConfig)
    return Diagnostic(file=NAME, message=message, hint=hint, path=".".join(path).replace(".[", "["))


def _worded(problem: Diagnostic) -> Diagnostic:
    """Missing top-level sections said with what they hold; hints from the rules kept."""
    from dataclasses import replace

    if problem.message == "missing required field 'cluster'":
        return replace(problem, message='needs a "cluster" mapping', hint=f"e.g. {EXAMPLE}")
    if problem.message == "missing required field 'task'":
        return replace(
            problem,
            message='needs "task": {"type": "worker", "index": N}',
            hint="N is this machine's place in the cluster's list, from 0",
        )
    if problem.path.endswith("type") and "evaluator" in problem.message:
        return replace(problem, hint=EVALUATOR_HINT)
    if problem.path.endswith("type") and "parameter-server" in problem.message:
        return replace(problem, hint=PS_HINT)
    return problem
