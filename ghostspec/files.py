"""Reading inputs and writing outputs safely: the one place ghostspec touches the file system.

Outputs go to a temporary file (or folder) beside the target and are renamed into place only on
success; a failed or interrupted run leaves what existed before and no temporary file. Every
output is checked before the expensive work: its folder exists and is a folder, it is none of
the command's input files under any name and lies in none of its input folders (an image folder,
a run folder), and it replaces only what ghostspec itself would write there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ghostspec.diagnostics import Diagnostic, SpecError

PathLike = str | Path
SAVEDMODEL_MARKER = "saved_model.pb"


def _refuse(target: PathLike, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(target), message=message, hint=hint)])


def write_error(target: PathLike, err: OSError) -> SpecError:
    """A failed write as one readable line, with advice for the usual causes."""
    reason = err.strerror or str(err)
    hints = {
        errno.ENOSPC: "free some disk space (or write somewhere else) and run the command again",
        errno.EDQUOT: "free some space within your disk quota and run the command again",
        errno.EACCES: "check the permissions of the file and its folder, or write elsewhere",
        errno.EPERM: "the file may be immutable or protected (see lsattr / chattr -i); "
        "or write elsewhere",
        errno.EROFS: "the file system is read-only; write somewhere else",
        errno.EFBIG: "the file is larger than the size limit of this process or file system "
        "(ulimit -f); raise the limit or write somewhere else",
    }
    hint = hints.get(err.errno or 0, "check the path and its folder, or write elsewhere")
    return _refuse(target, f"cannot write: {reason}; nothing was changed", hint)


# What the operating system refuses about a path itself (not ghostspec's fault, not the data's).
PATH_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS}
)


def path_error(err: OSError) -> SpecError | None:
    """An OSError about a path the user gave (a name too long, a loop of links, no permission)
    as a diagnostic on that path; None for other errors, which are ghostspec's to explain."""
    if err.filename is None or err.errno not in PATH_ERRNOS:
        return None
    hint = {
        errno.ENAMETOOLONG: "a file or folder name is longer than the file system allows "
        "(usually 255 bytes); use a shorter name",
        errno.ELOOP: "the path goes through a loop of symbolic links; check the links",
        errno.ENOTDIR: "a part of the path is a file where a folder should be",
    }.get(err.errno, "check the permissions of the path, or use another")
    return _refuse(str(err.filename), f"cannot use this path: {err.strerror or err}", hint)


def library_write_error(err: BaseException) -> OSError | None:
    """The OSError behind a library's failed write, or None when `err` is not one.

    h5py (Keras' weights files) reports a full disk or a size limit as a RuntimeError whose
    text carries the errno ("... file write failed: ..., errno = 28, error message = 'No
    space left on device' ..."); the writers below turn it back into the OSError it was."""
    if isinstance(err, OSError):
        return err
    if not isinstance(err, RuntimeError):
        return None
    found = re.search(r"errno = (\d+)", str(err))
    code = 0 if found is None else int(found.group(1))
    if code not in _WRITE_FAILURES:
        return None
    return OSError(code, os.strerror(code))


_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


# ------------------------------------------------------------------------------ output checks


# chattr +i / +a (Linux): no one, root included, may replace such a file or add to such a folder.
FS_IOC_GETFLAGS = (2 << 30) | (struct.calcsize("l") << 16) | (ord("f") << 8) | 1
LOCKED_FLAGS = 0x10 | 0x20  # FS_IMMUTABLE_FL, FS_APPEND_FL
LOCKED_HINT = "remove the flag (chattr -i or chattr -a; see lsattr), or write elsewhere"


def _locked(path: Path) -> bool:
    """Whether `path` is immutable or append-only, so a write would fail only after the work."""
    if not sys.platform.startswith("linux"):  # the ioctl number is Linux's
        return False
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (ImportError, OSError):
        return False
    try:
        flags = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        return bool(int.from_bytes(flags[:4], sys.byteorder) & LOCKED_FLAGS)
    except OSError:  # a file system without these flags
        return False
    finally:
        os.close(fd)


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder`, or None."""
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot write in the folder {str(folder)!r}: permission denied"
        if _locked(folder):
            return f"cannot write in the folder {str(folder)!r}: it is immutable or append-only"
        return None
    probe = folder
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"cannot write: {str(probe)!r} is a file, not a folder"
    return f"cannot write: directory {str(folder)!r} does not exist"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: Path, folder: Path) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == top or top in real.parents


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names (through symlinks), or None when it is not there."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _ancestors(path: Path) -> Iterator[Path]:
    """`path` and the folders above it, as written and as resolved (a symlink anywhere on the
    way is followed), so a folder is found under any name."""
    seen: set[Path] = set()
    for start in (path.absolute(), Path(os.path.realpath(path))):
        for candidate in (start, *start.parents):
            if candidate not in seen:
                seen.add(candidate)
                yield candidate


def input_folder_holding(target: PathLike, inputs: Iterable[PathLike | None]) -> Path | None:
    """The input folder among `inputs` that `target` is, or lies inside (by path through any
    symlink, and by device and inode, so a bind mount or a second name is no way around it)."""
    folders = {}
    for source in inputs:
        if source is None or not str(source):
            continue
        source = Path(source)
        if source.is_dir():
            identity = _identity(source)
            if identity is not None:
                folders[identity] = source
    if not folders:
        return None
    for folder in _ancestors(Path(target)):
        found = folders.get(_identity(folder) or (-1, -1))
        if found is not None:
            return found
    return None


def _check_not_an_input(
    target: Path,
    inputs: Iterable[PathLike | None],
    what: str = "output",
    hint: str | None = None,
) -> None:
    """Refuse a target that is one of the command's input files under any name (symlink, hard
    link), or is or lies inside one of its input folders (an image folder, a run folder)."""
    inputs = list(inputs)
    if target.exists() or target.is_symlink():
        mine = _identity(target)
        for source in inputs:
            if source is None or not str(source) or Path(source).is_dir():
                continue
            source = Path(source)
            same = (
                _identity(source) == mine
                if mine is not None
                else source.exists() and _same_file(source, target)
            )
            if same:
                raise _refuse(
                    target,
                    f"the {what} is the same file as the input {str(source)!r}; writing it would "
                    "destroy the input",
                    "choose another output path",
                )
    folder = input_folder_holding(target, inputs)
    if folder is not None:
        same = _identity(folder) == _identity(target)
        where = "is" if same else "is inside"
        raise _refuse(
            target,
            f"the {what} {where} the input folder {str(folder)!r}, which this command reads; "
            "writing there would change or destroy what is in it",
            hint or f"write the {what} outside {str(folder)!r}",
        )


def check_not_an_input(
    target: PathLike,
    inputs: Iterable[PathLike | None],
    what: str = "output",
    hint: str | None = None,
) -> Path:
    """The output `target` checked against every input of the command: not one of its files
    under any name, and neither one of its folders nor inside one. Raises SpecError."""
    _check_not_an_input(Path(target), inputs, what, hint)
    return Path(target)


def check_output(
    target: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    suffixes: tuple[str, ...] = (),
    what: str = "output file",
    folders: Iterable[PathLike | None] = (),
) -> Path:
    """The output file `target`, checked before any work: its suffix (case-insensitive), its
    folder, that it is not a folder or a device, that it is none of `inputs` (the same file
    under any name: symlinks and hard links compare equal) and that it lies inside none of the
    folders among `inputs` and `folders` (see `check_not_an_input`). Raises SpecError."""
    path = Path(target)
    _check_not_an_input(path, [*inputs, *folders])
    if suffixes and path.suffix.lower() not in suffixes:
        names = " or ".join(suffixes)
        raise _refuse(
            path, f"the {what} must end in {names}", f"e.g. -o {path.stem or 'out'}{suffixes[0]}"
        )
    real = _resolve_link(path)
    problem = _folder_problem(real.parent if str(real.parent) else Path("."))
    if problem:
        raise _refuse(path, problem, "create the folder first or choose another output path")
    if real.is_dir():
        inside = path / f"out{suffixes[0] if suffixes else path.suffix}"
        raise _refuse(
            path, "cannot write: it is a directory", f"name a file inside it, e.g. {inside}"
        )
    if real.exists() and not real.is_file():
        raise _refuse(
            path,
            "cannot write: it exists and is not a regular file (a device, pipe or socket)",
            "choose another output path",
        )
    if real.is_file() and _locked(real):
        raise _refuse(path, "cannot replace it: the file is immutable or append-only", LOCKED_HINT)
    return path


def check_output_folder(target: PathLike, *, inputs: Iterable[PathLike | None] = ()) -> Path:
    """A folder output (a SavedModel), checked before any work: it may replace only a previous
    SavedModel (a folder holding saved_model.pb) or an empty folder, never other files, the
    current folder or a folder holding one of `inputs`. Raises SpecError."""
    path = Path(target)
    _check_not_an_input(path, inputs)
    here = Path.cwd().resolve()
    if path.exists() and (path.resolve() == here or path.resolve() in here.parents):
        raise _refuse(
            path,
            "is the current folder (or holds it); a SavedModel is written as a new folder",
            "name a new folder, e.g. -o model_savedmodel",
        )
    problem = _folder_problem(path.parent if str(path.parent) else Path("."))
    if problem:
        raise _refuse(path, problem, "create the folder first or choose another output path")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = "a symbolic link" if path.is_symlink() else "a file"
        raise _refuse(
            path,
            f"is {kind}; a SavedModel is a folder, and ghostspec replaces only a folder "
            "holding a previous SavedModel",
            "remove it or choose another output path",
        )
    for source in inputs:
        if source is None or not str(source) or not Path(source).exists():
            continue
        if path.exists() and _inside(Path(source), path):
            raise _refuse(
                path,
                f"holds the input {str(source)!r}; replacing the folder would destroy it",
                "choose another output folder",
            )
    if path.is_dir() and _locked(path):
        raise _refuse(
            path, "cannot replace it: the folder is immutable or append-only", LOCKED_HINT
        )
    if path.is_dir() and not (path / SAVEDMODEL_MARKER).is_file():
        with os.scandir(path) as entries:
            if any(True for _ in entries):
                raise _refuse(
                    path,
                    "is a folder that is not empty and holds no SavedModel (no saved_model.pb); "
                    "ghostspec replaces only a previous SavedModel or an empty folder",
                    "choose a new folder name, or empty the folder first",
                )
    return path


# ---------------------------------------------------------------------------- atomic writing


def _resolve_link(path: Path) -> Path:
    """Where a write to `path` lands: through a symlink to its target, so the link stays."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _new_mode(existing: Path) -> int:
    try:
        return stat.S_IMODE(existing.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a temporary is created and its name recorded: an interrupt
    between the two would leave it behind. A signal that came meanwhile arrives on leaving."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def atomic_path(target: PathLike, *, inputs: Iterable[PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path beside the target (same suffix, lower-cased); on success it
    replaces the target.

    A symlink is written through (the link stays a link) and an existing file keeps its mode.
    On any error or interrupt the temporary file is removed and the target is untouched; a
    failed write (full disk, permissions, an immutable file) is a SpecError.
    """
    shown = Path(target)
    check_output(shown, inputs=inputs)
    real = _resolve_link(shown)
    directory = real.parent if str(real.parent) else Path(".")
    temp: Path | None = None
    try:
        with _signals_held():
            try:
                fd, name = tempfile.mkstemp(
                    prefix=f".{real.name}.", suffix=f".tmp{real.suffix.lower()}", dir=directory
                )
            except OSError as err:
                raise write_error(shown, err) from None
            os.close(fd)
            temp = Path(name)
        try:
            yield temp
            os.chmod(temp, _new_mode(real))
            with contextlib.suppress(OSError):  # keep the owner where we may (root, same user)
                info = real.stat()
                os.chown(temp, info.st_uid, info.st_gid)
            os.replace(temp, real)
        except (OSError, RuntimeError) as err:
            failure = library_write_error(err)
            if failure is None:
                raise
            raise write_error(shown, failure) from None
    except BaseException:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(target: PathLike, *, inputs: Iterable[PathLike | None] = ()) -> Iterator[Path]:
    """Yield a path for a new folder beside the target; on success it replaces the target,
    which may be only a previous SavedModel or an empty folder (see `check_output_folder`).
    On any error or interrupt the new folder is removed and the target is untouched."""
    path = check_output_folder(target, inputs=inputs)
    parent = path.parent if str(path.parent) else Path(".")
    temp: Path | None = None
    try:
        with _signals_held():
            try:
                temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
            except OSError as err:
                raise write_error(path, err) from None
        try:
            yield temp / "artifact"
            check_output_folder(path, inputs=inputs)  # files may have appeared meanwhile
            previous = temp / "previous"
            if path.exists():
                os.replace(path, previous)
            try:
                os.replace(temp / "artifact", path)
            except OSError:
                if previous.exists():
                    os.replace(previous, path)
                raise
        except OSError as err:
            raise write_error(path, err) from None
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


# The names of the temporaries above: `atomic_path` writes `.<target name>.<8 random
# characters>.tmp<suffix>` beside the target (a writer that needs its own ending appends it, as
# Keras' `.weights.h5`), `atomic_directory` `.<target name>.<8>.tmp`, `scratch_tempdir`
# `.ghostspec-scratch.<8>`. A process killed while writing leaves them; `stale_temporaries`
# finds exactly these (tempfile's 8 characters are a-z, 0-9 and _).
_RANDOM = r"[a-z0-9_]{8}"
SCRATCH_PREFIX = ".ghostspec-scratch."


def stale_temporaries(folder: PathLike, is_target: Callable[[str], bool]) -> list[Path]:
    """The temporaries the writers above leave in `folder` when a process is killed while
    writing a file whose name `is_target` accepts, and their scratch folders: nothing else.
    Only safe to remove while no other process writes `folder` (the caller holds its lock)."""
    own = re.compile(rf"\.(.+)\.{_RANDOM}\.tmp(?:\.[a-z0-9]+)?(?:\.weights\.h5)?")
    scratch = re.compile(rf"{re.escape(SCRATCH_PREFIX)}{_RANDOM}")
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries]
    except OSError:
        return []
    found = []
    for name in names:
        match = own.fullmatch(name)
        if scratch.fullmatch(name) or (match is not None and is_target(match.group(1))):
            found.append(Path(folder) / name)
    return sorted(found)


def remove_paths(paths: Iterable[Path]) -> None:
    """Remove files and folders, quietly skipping what is gone or cannot be removed."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def scratch_tempdir(beside: PathLike) -> Iterator[Path]:
    """Point Python's temporary files at a private folder beside `beside` while a library
    (Keras' saving) writes, and remove that folder afterwards: nothing is left in TMPDIR even
    when the library fails half-way."""
    parent = Path(beside).parent if str(Path(beside).parent) else Path(".")
    previous = tempfile.tempdir
    scratch: Path | None = None
    try:
        with _signals_held():
            try:
                scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
            except OSError as err:
                raise write_error(beside, err) from None
            tempfile.tempdir = str(scratch)
        yield scratch
    finally:
        tempfile.tempdir = previous
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def scratch_environment_tempdir() -> Iterator[None]:
    """TMPDIR, TMP and TEMP pointed at a fresh folder inside the temporary folder for the
    duration, and that folder removed afterwards: for native code that leaves files in the
    temporary folder as it loads (onnxruntime's telemetry writes `$TMPDIR/.ses` on import)."""
    try:
        scratch = tempfile.mkdtemp(prefix="ghostspec-env-")
    except OSError:
        yield  # no room for a folder: the library writes where it would have
        return
    names = ("TMPDIR", "TMP", "TEMP")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, scratch))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)


def write_text(target: PathLike, text: str, *, inputs: Iterable[PathLike | None] = ()) -> None:
    with atomic_path(target, inputs=inputs) as temp:
        temp.write_text(text, encoding="utf-8")


def write_with(
    target: PathLike, writer: Callable[[Path], None], *, inputs: Iterable[PathLike | None] = ()
) -> None:
    with atomic_path(target, inputs=inputs) as temp:
        writer(temp)


# ----------------------------------------------------------------------------------- reading


def open_regular_file(path: PathLike, limit: int, what: str, hint: str | None = None) -> BinaryIO:
    """An open binary file for a regular file of at most `limit` bytes, or a SpecError naming
    it. FIFOs, devices and folders are refused before anything is read (a FIFO would block,
    and /dev/zero never ends)."""
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
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: PathLike, limit: int, what: str, hint: str | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or a SpecError naming it.

    At most `limit + 1` bytes are read even if the file grows while it is read.
    """
    name = str(path)
    with open_regular_file(path, limit, what, hint) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as err:
            raise SpecError(
                [Diagnostic(file=name, message=f"cannot read the {what}: {err.strerror}")]
            ) from None
    if len(data) > limit:
        raise SpecError(
            [
                Diagnostic(
                    file=name,
                    message=f"the {what} is larger than the limit of {limit:,} bytes",
                    hint=hint,
                )
            ]
        )
    return data
