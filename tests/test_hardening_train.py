"""Hardening of the run folder: one owner at a time, signals and kills at any moment, resume of a
folder that is not what it claims, class names as data, and a loss that stops being finite.

Each test asserts the exit code, the message and the files before and after. Most run the CLI
in this process (TensorFlow loads once); the signal tests run it as a child process whose SIGINT
is reset to the default first (a shell's background job starts with SIGINT ignored, and the
child would inherit that). Data: 2 classes of 16x16 shapes, 2 steps an epoch, a tiny spec.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imagegen import make_shapes

from ghostspec import cli
from ghostspec.data.classnames import read_class_names, shown
from ghostspec.files import library_write_error, write_error
from ghostspec.train import callbacks
from ghostspec.train.lock import LOCK_NAME, acquire
from ghostspec.train.state import read_state

TINY = """\
ghostspec: 1
name: tiny
input: {shape: [16, 16, 3]}
stem: {filters: 8, kernel: 3, stride: 2}
stages:
  - [[8, 8, 0, 1, 3]]
  - [[16, 8, 0, 2, 3]]
head: {filters: 16, hidden: 32, dropout: 0.0, classes: 2}
"""
HP = ["batch_size=8", "optimizer.reference_batch=8", "schedule.warmup_epochs=0", "epochs=2"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), classes=2, per_class=12, size=16)


def train_args(spec: Path, data: Path, out: Path) -> list[str]:
    args = ["train", str(spec), "--data", str(data), "-o", str(out)]
    for hp in HP:
        args += ["--hp", hp]
    return args


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stdout + stderr) of one in-process command; never a traceback."""
    capsys.readouterr()
    code = cli.run(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out + captured.err


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file under `folder` with its bytes (folders as None)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def stop_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after epoch 1 is saved: a run of 2 epochs left resumable at 1."""
    original = callbacks.RunKeeper.on_epoch_end

    def then_interrupt(self: Any, epoch: int, logs: Any = None) -> None:
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.RunKeeper, "on_epoch_end", then_interrupt)


@pytest.fixture(scope="module")
def halfway(spec: Path, shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 2 epochs stopped with Ctrl-C after the first: every resume test copies it."""
    out = tmp_path_factory.mktemp("base") / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_after_first_epoch(patch)
        assert cli.run(train_args(spec, shapes, out)) == 130
    assert read_state(out / "state" / "state.json").epoch == 1
    return out


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


# ------------------------------------------------------------------------------ the lock


def test_a_second_writer_is_refused_with_the_holders_pid(
    halfway: Path, spec: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_of(halfway, tmp_path)
    held = acquire(run_dir, resume=True)  # another open file: flock refuses this process too
    try:
        before = snapshot(run_dir)
        code, out = run(["train", "--resume", str(run_dir)], capsys)
        assert code == 2
        assert f"the run folder is in use by another ghostspec process (PID {os.getpid()}" in out
        assert f"kill {os.getpid()}" in out and f"--resume {run_dir}" in out
        code, out = run(train_args(spec, shapes, run_dir), capsys)
        assert code == 2 and f"(PID {os.getpid()} on " in out
        assert snapshot(run_dir) == before
    finally:
        held.release()


HOLD = """
import sys, time
from pathlib import Path
from ghostspec.train.lock import acquire
acquire(Path(sys.argv[1]), resume=False)
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_goes_with_its_holder_even_after_kill_9(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    with pytest.raises(Exception, match=f"PID {holder.pid} on"):
        acquire(tmp_path, resume=False)
    holder.kill()
    holder.wait()
    acquire(tmp_path, resume=False).release()  # the kernel let go of it with the process
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME]


# ------------------------------------------------------------------------------ signals

CHILD = """
import os, sys, time
from pathlib import Path
marker = Path(os.environ["MARKER"])
def pause(name):
    marker.with_name(name).write_text("")
    for _ in range(1200):
        time.sleep(0.05)
WHERE = os.environ["PAUSE"]
if WHERE == "making":
    from ghostspec.train import session
    write_inputs = session.write_inputs
    def slow_inputs(*args):
        write_inputs(*args)
        pause("making")
    session.write_inputs = slow_inputs
else:
    import keras
    from ghostspec.keras import modelfile
    def slow_fit(self, *args, **kwargs):
        pause("fitting")
    keras.Model.fit = slow_fit
    def slow_save(*args, **kwargs):
        pause("saving")
    modelfile.save_model_file = slow_save
sys.argv = ["ghostspec", *sys.argv[1:]]
from ghostspec.cli import main
main()
"""


def child(args: list[str], tmp_path: Path, where: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}", "MARKER": str(tmp_path / "m"), "PAUSE": where}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_ctrl_c_while_the_run_folder_is_made_leaves_nothing(
    spec: Path, shapes: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    process = child(train_args(spec, shapes, runs / "run"), tmp_path, "making")
    wait_for(tmp_path / "making", process)
    assert next(p.name for p in runs.iterdir()).endswith(".ghostspec-new")  # made aside
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "ghostspec: interrupted; nothing was written"
    assert b"Traceback" not in err
    assert list(runs.iterdir()) == []


def test_a_second_ctrl_c_while_saving_still_exits_130_with_the_saved_epoch(
    spec: Path, shapes: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    process = child(train_args(spec, shapes, out), tmp_path, "fitting")
    wait_for(tmp_path / "fitting", process)
    process.send_signal(signal.SIGINT)  # the graceful stop saves last.keras: slowly, here
    wait_for(tmp_path / "saving", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    text = err.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert text.strip().splitlines()[-1] == (
        f"ghostspec: interrupted after 0 completed epoch(s); resume with: ghostspec train "
        f"--resume {out}"
    )
    assert read_state(out / "state" / "state.json").epoch == 0
    assert not [p for p in out.rglob(".*") if p.name != LOCK_NAME]  # no temporaries


# ------------------------------------------------------------------------- kills and disks


def test_resume_removes_its_own_stale_temporaries_and_only_those(
    halfway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_of(halfway, tmp_path)
    left = [  # what kill -9 leaves at each moment of a checkpoint
        ".best.keras.a1b2c3d4.tmp.keras",
        ".last.keras.zz_9y8x7.tmp.keras",
        ".metrics.csv.k2j3h4g5.tmp.csv",
        "state/.epoch-2.weights.h5.q1w2e3r4.tmp.h5.weights.h5",
        "state/.state.json.abcdefgh.tmp.json",
    ]
    for name in left:
        (run_dir / name).write_bytes(b"partial")
    (run_dir / ".ghostspec-scratch.m4n5b6v7").mkdir()
    mine = [".best.keras.notes", "state/.epoch-2.weights.h5.bak", "my-notes.txt"]
    for name in mine:
        (run_dir / name).write_bytes(b"the user's")
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0
    assert "removed 6 temporary file(s) an interrupted save left" in out
    assert not any((run_dir / name).exists() for name in left)
    assert not (run_dir / ".ghostspec-scratch.m4n5b6v7").exists()
    assert all((run_dir / name).read_bytes() == b"the user's" for name in mine)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(
    halfway: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keras

    run_dir = copy_of(halfway, tmp_path)
    before = snapshot(run_dir)
    save = keras.Model.save_weights

    def full(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        if ".epoch-2." in str(path):  # h5py's own words for a full disk
            raise RuntimeError(
                "Unable to synchronously write data (file write failed: time = Tue, "
                "file descriptor = 5, errno = 28, error message = 'No space left on device')"
            )
        save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full)
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 2
    assert "cannot write: No space left on device; nothing was changed" in out
    assert f"resume with: ghostspec train --resume {run_dir} (the run is saved after 1" in out
    assert "free some disk space" in out
    state = read_state(run_dir / "state" / "state.json")
    assert state.epoch == 1 and not state.finished
    after = snapshot(run_dir)
    assert after["state/epoch-1.weights.h5"] == before["state/epoch-1.weights.h5"]
    assert not [p for p in run_dir.rglob(".*") if p.name != LOCK_NAME]


def test_a_size_limit_is_named() -> None:
    import errno

    err = library_write_error(RuntimeError("file write failed: errno = 27, error message = 'x'"))
    assert isinstance(err, OSError) and err.errno == errno.EFBIG
    assert "ulimit -f" in str(write_error("m.keras", err))
    assert library_write_error(RuntimeError("errno = 2, unrelated")) is None


def test_a_run_is_finished_only_when_every_file_is(
    halfway: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ghostspec.train import session

    run_dir = copy_of(halfway, tmp_path)

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt  # stopped after the last epoch's state, before the end

    with monkeypatch.context() as patch:
        patch.setattr(session, "finish_run", killed)
        code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 130 and "interrupted after 2 completed epoch(s)" in out
    state = read_state(run_dir / "state" / "state.json")
    assert state.epoch == 2 and not state.finished
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # header and both epochs
    assert len(list((run_dir / "logs" / "validation").iterdir())) >= 1
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0 and "its 2 epochs are done, not its files" in out
    assert read_state(run_dir / "state" / "state.json").finished


# ------------------------------------------------------------------- a run folder tampered with


def _state(run_dir: Path, **change: Any) -> None:
    path = run_dir / "state" / "state.json"
    record = json.loads(path.read_text())
    record.update(change)
    path.write_text(json.dumps(record))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_network(run_dir: Path) -> None:
    spec = run_dir / "spec.yaml"
    spec.write_text(spec.read_text().replace("hidden: 32", "hidden: 48"))


TAMPERED: dict[str, tuple[Callable[[Path], None], str]] = {
    "string epoch": (
        lambda r: _state(r, epoch="1"),
        "the resume state is damaged: epoch: Input should be a valid integer",
    ),
    "epoch beyond the recipe": (
        lambda r: _state(r, epoch=5, checkpoint=None, history=[{"epoch": 1.0}] * 5),
        "the resume state says 5 epochs are done, but the run's recipe has 2",
    ),
    "checkpoint outside": (
        lambda r: _state(r, checkpoint="../../../etc/passwd"),
        "names the checkpoint '../../../etc/passwd', not this run's 'epoch-1.weights.h5'",
    ),
    "truncated checkpoint": (
        lambda r: _truncate(r / "state" / "epoch-1.weights.h5"),
        "the checkpoint cannot be read as this run's network",
    ),
    "binary recipe": (
        lambda r: (r / "recipe.yaml").write_bytes(bytes(range(256))),
        "the recipe is not UTF-8 text",
    ),
    "non-UTF-8 classes.txt": (
        lambda r: ((r / "classes.json").unlink(), (r / "classes.txt").write_bytes(b"ci\xffrcle\n")),
        "the class list is not UTF-8 text",
    ),
    "another network": (_other_network, "this is not the network the run trained"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_run_folder_is_refused_in_one_line(
    case: str, halfway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_of(halfway, tmp_path)
    tamper, message = TAMPERED[case]
    tamper(run_dir)
    before = snapshot(run_dir)
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 2
    assert message in out
    assert snapshot(run_dir) == before


def test_a_truncated_best_keras_is_noticed_and_rewritten(
    halfway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghostspec.keras.modelfile import load_model_file

    run_dir = copy_of(halfway, tmp_path)
    _truncate(run_dir / "best.keras")
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0
    assert "best.keras is truncated or damaged" in out and "chosen again from epoch 2" in out
    load_model_file(run_dir / "best.keras", compile=False)
    assert read_state(run_dir / "state" / "state.json").best_epoch == 2


def test_a_changed_image_folder_is_refused_or_continued_and_noted(
    halfway: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    run_dir = copy_of(halfway, tmp_path)
    for i in range(3):
        shutil.copy(
            next((data / "train" / "circle").iterdir()), data / "train" / "circle" / f"x{i}.png"
        )
    before = snapshot(run_dir)
    code, out = run(["train", "--resume", str(run_dir), "--data", str(data)], capsys)
    assert code == 2
    assert (
        "the image folder changed since the run was trained on it: train: 18 images then, "
        "21 now (circle +3)" in out
    )
    assert "--allow-data-change" in out
    assert snapshot(run_dir) == before
    args = ["train", "--resume", str(run_dir), "--data", str(data), "--allow-data-change"]
    code, out = run(args, capsys)
    assert code == 0 and "the image folder changed since: train: 18 images then, 21 now" in out
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith(",data_changed") and rows[1].endswith(",") and rows[2].endswith(",1")


# --------------------------------------------------------------------------------- class names

ODD = ["a\nb", os.fsdecode(b"caf\xe9"), "plain"]


def test_class_names_are_data(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_shapes(tmp_path / "data", classes=3, per_class=8, size=16)
    for split in ("train", "val"):
        for old, new in zip(("circle", "square", "triangle"), ODD, strict=True):
            (data / split / old).rename(data / split / new)
    three = tmp_path / "tiny3.yaml"
    three.write_text(TINY.replace("classes: 2", "classes: 3"))
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_after_first_epoch(patch)
        code, text = run(train_args(three, data, out), capsys)
    assert code == 130 and "resume with" in text
    assert read_class_names(out) == tuple(sorted(ODD))
    assert (
        "\\n" in (out / "classes.json").read_text()
        and "\\udce9" in (out / "classes.json").read_text()
    )
    code, text = run(["train", "--resume", str(out)], capsys)
    assert code == 0
    assert shown("a\nb") == '"a\\nb"' and shown("plain") == "plain"


# ----------------------------------------------------------------------------- non-finite loss


def test_a_non_finite_loss_stops_at_the_last_finite_epoch(
    spec: Path,
    shapes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = tmp_path / "run"
    args = [*train_args(spec, shapes, run_dir), "--hp", "optimizer.kind=sgd"]
    with monkeypatch.context() as patch:
        stop_after_first_epoch(patch)
        assert run(args, capsys)[0] == 130
    recipe = run_dir / "recipe.yaml"  # from epoch 2 on, a rate that breaks the weights
    text = recipe.read_text()
    assert "  lr: 0.002\n" in text and "  kind: cosine\n" in text
    text = text.replace("  lr: 0.002\n", "  lr: 100.0\n")
    recipe.write_text(text.replace("  kind: cosine\n", "  kind: constant\n"))
    before = snapshot(run_dir)
    code, out = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 2, out
    assert "loss became nan" in out.lower() and "epoch 2" in out
    assert "the learning rate is most likely too high" in out
    assert "the run folder keeps epoch 1, the last finite one (best.keras, last.keras)" in out
    after = snapshot(run_dir)
    for name in ("best.keras", "state/state.json", "state/epoch-1.weights.h5", "metrics.csv"):
        assert after[name] == before[name], name
    assert read_state(run_dir / "state" / "state.json").epoch == 1
