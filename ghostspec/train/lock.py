"""The run-folder lock: one process writes a run folder at a time.

An advisory lock (`flock`) on `RUN/.ghostspec-lock`, held for the life of the run and released
by the kernel when the process ends, however it ends (exit, crash, kill -9): a stale lock cannot
outlive its holder. The file holds the holder's PID and host name, so a second writer (`train -o`
of the same folder, a second `--resume`) is told who holds it. The file itself stays (removing
it would let a third process lock a new file while the second still holds the old one).

Multi-worker runs: only the chief holds it (the other workers write copies of their own).
Platforms without `fcntl` (Windows) run without a lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ghostspec.diagnostics import Diagnostic, SpecError

LOCK_NAME = ".ghostspec-lock"


@dataclass(frozen=True)
class RunLock:
    """A held lock; `release` (or the end of the process) lets go of it."""

    path: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _flock(fd: int) -> bool:
    """Whether this process now holds the lock on `fd` (False: another process does)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks here: every writer proceeds
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: proceed, as without fcntl
        return True
    return True


def _holder_text(path: Path) -> str:
    try:
        words = path.read_bytes()[:200].decode("utf-8", "replace").split()
    except OSError:
        return "another process"
    if len(words) >= 2 and words[0].isdigit():
        return f"another ghostspec process (PID {words[0]} on {words[1]})"
    return "another ghostspec process"


def in_use(folder: Path, resume: bool) -> SpecError:
    """The message for a run folder another process holds."""
    who = _holder_text(folder / LOCK_NAME)
    pid = who.split("PID ", 1)[1].split(" ", 1)[0] if "PID " in who else None
    stop = f"stop it (kill {pid})" if pid else "stop it"
    then = f"then resume with: ghostspec train --resume {folder}"
    hint = (
        f"wait for it to finish or {stop}; {then}"
        if resume
        else (f"choose another -o RUN_DIR, or wait for that run to finish or {stop}")
    )
    return SpecError(
        [Diagnostic(file=str(folder), message=f"the run folder is in use by {who}", hint=hint)]
    )


def acquire(folder: Path, *, resume: bool) -> RunLock:
    """Lock `folder` (which exists) for this process, writing its PID and host into the lock
    file. SpecError naming the holder when another process has it."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as err:
        raise SpecError(
            [
                Diagnostic(
                    file=str(path),
                    message=f"cannot lock the run folder: {err.strerror}",
                    hint="check the permissions of the run folder",
                )
            ]
        ) from None
    if not _flock(fd):
        os.close(fd)
        raise in_use(folder, resume)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return RunLock(path, fd)


def held_by_another(folder: Path) -> bool:
    """Whether another process holds `folder`'s lock now (False when it has no lock file)."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        free = _flock(fd)
    finally:
        os.close(fd)  # closing lets go of the lock probed for
    return not free
