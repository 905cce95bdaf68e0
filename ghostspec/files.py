"""Atomic output: write to a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ghostspec.diagnostics import Diagnostic, SpecError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix; on success it replaces the target.

    On any error or interrupt the temporary file is removed and the target is untouched.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise SpecError(
            [
                Diagnostic(
                    file=str(target),
                    message=f"cannot write: directory {str(directory)!r} does not exist",
                    hint="create the directory first or choose another output path",
                )
            ]
        )
    if target.is_dir():
        raise SpecError([Diagnostic(file=str(target), message="cannot write: it is a directory")])
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=directory
        )
    except OSError as err:
        raise SpecError(
            [Diagnostic(file=str(target), message=f"cannot write: {err.strerror}")]
        ) from None
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        # mkstemp makes the file private; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as temp:
        temp.write_text(text, encoding="utf-8")


def write_with(target: str | Path, writer: Callable[[Path], None]) -> None:
    with atomic_path(target) as temp:
        writer(temp)


def read_regular_file(path: str | Path, limit: int, what: str, hint: str | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or a SpecError naming it.

    FIFOs, devices and folders are refused before anything is read (a FIFO would block, and
    /dev/zero never ends), and at most `limit + 1` bytes are read even if the file grows.
    """
    name = str(path)

    def refuse(message: str, advice: str | None = hint) -> SpecError:
        return SpecError([Diagnostic(file=name, message=message, hint=advice)])

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then tells what it is.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise refuse(f"no such {what}", "check the path") from None
    except IsADirectoryError:
        raise refuse(f"is a directory, not a {what}", "name a file") from None
    except OSError as err:
        raise refuse(f"cannot read the {what}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise refuse(f"is a directory, not a {what}", "name a file")
        if not stat.S_ISREG(info.st_mode):
            raise refuse(
                f"is not a regular file (a pipe, device or socket); a {what} must be a file",
                "copy the content into a regular file and pass that",
            )
        if info.st_size > limit:
            raise refuse(f"the {what} is {info.st_size:,} bytes; the limit is {limit:,}")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise refuse(f"the {what} is larger than the limit of {limit:,} bytes")
        return data
    except OSError as err:
        raise refuse(f"cannot read the {what}: {err.strerror}") from None
    finally:
        os.close(fd)
