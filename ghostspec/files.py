"""Atomic output: write to a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import os
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
