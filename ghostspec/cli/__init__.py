"""The command line: the parser and the dispatch, one module per command family.

Takes: argv. `parser` holds every flag; `spec_commands`, `build_commands`, `deploy_commands`
and `train_commands` hold the handlers, each a thin face over the rooms that do the work;
`exit_codes` the codes (0 ok, 2 invalid input, 1 a fault of ghostspec, 130/143 signals).
Hands on: an exit code, and what the rooms print or write.
Never imports: anything heavy at module level (handlers import their rooms when they run, so
`validate` and `inspect` never load a framework); no room imports the CLI.

argparse rather than typer: `validate` must start in well under half a second, and typer with
click costs about 0.15 s of imports on its own; rich is imported only where a table is drawn.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from ghostspec.cli.build_commands import cmd_build
from ghostspec.cli.deploy_commands import cmd_export, cmd_profile
from ghostspec.cli.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_FAULT,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TERMINATED,
    Terminated,
)
from ghostspec.cli.parser import build_parser
from ghostspec.cli.predict_commands import cmd_predict
from ghostspec.cli.spec_commands import (
    cmd_fmt,
    cmd_inspect,
    cmd_list,
    cmd_plot,
    cmd_schema,
    cmd_validate,
)
from ghostspec.cli.sweep_commands import cmd_sweep
from ghostspec.cli.train_commands import cmd_evaluate, cmd_train
from ghostspec.diagnostics import SpecError, render_json, render_text

__all__ = [
    "COMMANDS",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAULT",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "TENSORFLOW_COMMANDS",
    "Terminated",
    "build_parser",
    "main",
    "run",
]

# Commands that load TensorFlow (a sweep does for latency and training): their terminal is kept
# quiet (ghostspec.quiet).
TENSORFLOW_COMMANDS = frozenset(
    {"build", "export", "profile", "evaluate", "predict", "train", "sweep"}
)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "inspect": cmd_inspect,
    "schema": cmd_schema,
    "fmt": cmd_fmt,
    "plot": cmd_plot,
    "profile": cmd_profile,
    "list": cmd_list,
    "build": cmd_build,
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "train": cmd_train,
    "sweep": cmd_sweep,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 a ghostspec fault, 2 invalid input)."""
    _tolerant_streams()
    return _dispatch(build_parser().parse_args(argv))


def _tolerant_streams() -> None:
    """A file name that is not valid in the terminal's encoding (PYTHONIOENCODING=utf-8:strict
    and a Latin-1 name) is printed with escapes instead of crashing the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; a reader that closed the pipe (`ghostspec inspect ... | head -1`) ends
    it quietly, like other Unix tools, instead of with a traceback."""
    try:
        return _handled(args)
    except BrokenPipeError:
        _discard_output()
        return EXIT_BROKEN_PIPE


def _handled(args: argparse.Namespace) -> int:
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SpecError as err:
        if getattr(args, "format", "text") == "json":
            print(render_json(err.diagnostics))
        else:
            print(render_text(err.diagnostics), file=sys.stderr)
        return EXIT_INVALID
    except Terminated:
        print("ghostspec: terminated; nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("ghostspec: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as err:  # a path the system refuses, wherever the command met it
        from ghostspec.files import path_error

        problem = path_error(err)
        if problem is None:
            return _fault()
        print(render_text(problem.diagnostics), file=sys.stderr)
        return EXIT_INVALID
    except Exception:
        return _fault()


def _fault() -> int:
    """The exception being handled is a bug in ghostspec: its traceback and what to do."""
    traceback.print_exc()
    print(
        "ghostspec: internal error (the traceback above). This is a bug in ghostspec, not in "
        "your input; please report it with the command you ran.",
        file=sys.stderr,
    )
    return EXIT_FAULT


def _discard_output() -> None:
    """Point descriptors 1 and 2 at /dev/null, so the flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _finish(code: int) -> None:
    """Exit with `code`. The command is over: from here a signal takes its default action (the
    process ends at once, as the shell expects) instead of raising into TensorFlow's clean-up,
    which prints "Exception ignored" with a traceback."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    sys.exit(code)


def main() -> None:
    """The `ghostspec` command: SIGTERM cleans up like Ctrl-C, and the commands that load
    TensorFlow print only their own output unless --verbose or GHOSTSPEC_VERBOSE asks."""
    from ghostspec import quiet

    _tolerant_streams()
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args()
    try:
        if args.command in TENSORFLOW_COMMANDS and not quiet.verbose_requested(args.verbose):
            with quiet.quiet_tensorflow():
                code = _dispatch(args)
        else:
            code = _dispatch(args)
    except Terminated:  # after the command's own handling (while the terminal is restored)
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    _finish(code)
