"""What a hostile pass over the merged issue-9 fixes still found: outputs of `profile` that could
replace the spec, sizes and counts it took without a bound, a dynamic .keras at a size its layers
cannot take, `schema --check` on an unreadable file, onnxruntime's file in TMPDIR, the default
export path checked after building, misleading .pth messages, a wall of per-tensor lines, and
immutable outputs found only after the work."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torchsave import state_dict, torch_save

import ghostspec
from ghostspec import cli, files
from ghostspec.diagnostics import SpecError
from ghostspec.keras.modelfile import save_model_file
from ghostspec.keras.weights import check_state_dict, read_state_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
stages: [[[16, 16, 0, 1, 3]]]
head: {classes: 3}
"""


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    """Run the CLI, expect `code` and no traceback; return what it printed on stderr."""
    assert cli.run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.json"  # JSON: the same suffix as profile --save
    path.write_text(
        '{"ghostspec": 1, "name": "tiny", "input": {"shape": [32, 32, 3]}, '
        '"stages": [[[16, 16, 0, 1, 3]]], "head": {"classes": 3}}'
    )
    return path


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a model fails the test: the command must refuse before it."""

    def build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr("ghostspec.keras.build.build", build)
    monkeypatch.setattr(ghostspec, "build", build)


# ------------------------------------------------------------------------------------ profile


@pytest.mark.parametrize("flag", ["--save", "-o"])
def test_profile_outputs_never_replace_the_spec(
    spec: Path, capsys: pytest.CaptureFixture[str], no_build: None, flag: str
) -> None:
    before = spec.read_bytes()
    target = "tiny.json"
    if flag == "-o":  # a chart name that is a link to the spec
        os.symlink(spec.name, "chart.svg")
        target = "chart.svg"
    err = refused(capsys, ["profile", str(spec), flag, target])
    assert "the output is the same file as the input" in err
    assert spec.read_bytes() == before


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--repeats", "1000000000"], ["--repeats", "1,000,000,000", "10,000"]),
        (["--threads", "100000"], ["--threads", "100,000", "per logical CPU"]),
    ],
)
def test_profile_counts_are_bounded_before_measuring(
    spec: Path,
    capsys: pytest.CaptureFixture[str],
    no_build: None,
    arguments: list[str],
    words: list[str],
) -> None:
    err = refused(capsys, ["profile", str(spec), *arguments])
    assert all(word in err for word in words), err


def test_profile_refuses_a_size_that_cannot_fit_with_the_estimate(
    spec: Path,
    capsys: pytest.CaptureFixture[str],
    no_build: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GHOSTSPEC_MEMORY_LIMIT", str(2 << 30))
    err = refused(capsys, ["profile", str(spec), "--input-size", "8192", "8192"])
    assert "--input-size" in err and "profiling at 8192x8192 needs about" in err
    assert "2.0 GiB is available" in err


def test_profile_memory_estimate_counts_every_sample_of_every_node() -> None:
    from ghostspec.plan.memory import FLOAT, plan_footprint, profile_bytes

    spec = ghostspec.load("tiny.yaml", text=TINY)
    small, large = (
        plan_footprint(ghostspec.plan(spec, input_size=s)) for s in ((64, 64), (1024, 1024))
    )
    grown = profile_bytes(large, 8) - profile_bytes(small, 8)
    assert grown >= 8 * (large.total - small.total) * FLOAT  # eight samples, eagerly, at once
    assert profile_bytes(large, 8) > profile_bytes(large, 1)


# ----------------------------------------------------------------------------- export, schema


def test_a_dynamic_model_file_at_a_size_its_layers_cannot_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.AveragePooling2D(4)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(pooled))
    path = save_model_file(keras.Model(inputs, outputs), tmp_path / "pool.keras")
    out = tmp_path / "pool.tflite"
    err = refused(capsys, ["export", str(path), "--to", "tflite", "--input-size", "2", "2"])
    assert "--input-size: error: 2x2: the model cannot run at this size" in err
    assert "internal error" not in err and not out.exists()


def test_the_default_export_path_is_checked_before_building(
    spec: Path, capsys: pytest.CaptureFixture[str], no_build: None
) -> None:
    (Path("tiny_savedmodel")).mkdir()
    (Path("tiny_savedmodel") / "notes.txt").write_text("mine")
    err = refused(capsys, ["export", str(spec), "--to", "savedmodel"])
    assert "tiny_savedmodel" in err and "holds no SavedModel" in err
    Path("tiny.tflite").mkdir()
    err = refused(capsys, ["export", str(spec), "--to", "tflite"])
    assert "tiny.tflite/out.tflite" in err  # the hint names a file that would be accepted
    assert (Path("tiny_savedmodel") / "notes.txt").read_text() == "mine"


def test_schema_check_on_a_file_that_is_not_text_or_not_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "bad.json"
    binary.write_bytes(b"\xff\xfe{")
    err = refused(capsys, ["schema", "--check", "-o", str(binary)], code=1)  # stale, not a crash
    assert "differs from the spec models" in err
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    err = refused(capsys, ["schema", "--check", "-o", str(pipe)])
    assert "is not a regular file" in err


def test_onnx_export_leaves_nothing_in_tmpdir(tmp_path: Path) -> None:
    """onnxruntime's telemetry writes `$TMPDIR/.ses` when it is imported; ghostspec imports it
    with TMPDIR at a scratch folder it removes. In a fresh interpreter: importing it is what
    leaves the file."""
    pytest.importorskip("onnxruntime")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    script = (
        "from ghostspec.deploy.export import _onnx_bytes\n"
        "try:\n    _onnx_bytes(None, (1,))\nexcept Exception:\n    pass\n"
        "import onnxruntime\n"  # already loaded: no second write
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert listing(tmpdir) == []


# ------------------------------------------------------------------------------------ weights


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"GIF89a, not a checkpoint" * 40, "is not a PyTorch file")],
    ids=["empty", "other bytes"],
)
def test_a_pth_that_is_not_pytorch_says_so(tmp_path: Path, content: bytes, message: str) -> None:
    """Not "the legacy format, which needs PyTorch": that is for a pickle, which this is not."""
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(SpecError) as caught:
        read_state_dict(path)
    (diagnostic,) = caught.value.diagnostics
    assert message in diagnostic.message and "legacy" not in diagnostic.message


def test_an_int8_checkpoint_is_one_line(tmp_path: Path) -> None:
    plan = ghostspec.plan(ghostspec.load("tiny.yaml", text=TINY))
    state = {t.name: np.ones(t.shape, np.int8) for t in plan.tensors()}
    assert len(state) > 5
    path = torch_save(state_dict(state), tmp_path / "int8.pth")
    diagnostics = check_state_dict(plan, read_state_dict(path), str(path))
    (diagnostic,) = diagnostics
    assert diagnostic.message.startswith(
        f"{len(state)} tensors hold int8 values ('conv_stem.weight'"
    )


# --------------------------------------------------------------------------------- immutable


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """chattr +i for the duration, or a skip where the file system or user cannot."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with it)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_immutable_output_is_refused_before_the_work(
    spec: Path, capsys: pytest.CaptureFixture[str], no_build: None
) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not files.FS_IOC_GETFLAGS:
        pytest.skip("immutable files need root")
    target = Path("tiny.keras")
    target.write_bytes(b"previous")
    with immutable(target):
        err = refused(capsys, ["build", str(spec), "-o", str(target)])
    assert "immutable or append-only" in err and "chattr -i" in err
    assert target.read_bytes() == b"previous"
