"""Files in and out under hostile or careless use: the .keras loader, outputs that must not
destroy anything, write failures, signals, the quiet terminal (issue 9)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ghostspec
from ghostspec import cli, files
from ghostspec.cli import deploy_commands
from ghostspec.deploy import export
from ghostspec.diagnostics import SpecError
from ghostspec.keras.modelfile import ModelMetadata, load_model_file, save_model_file

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
stages: [[[16, 16, 0, 1, 3]]]
head: {classes: 3}
"""
# GhostNetV2 attention at any input size: the one custom layer, LegacyNearestUpsample.
TINY_V2 = (
    TINY.replace("[32, 32, 3]", "[null, null, 3]") + "ghost: {attention: dfc, attention_from: 0}\n"
)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model_file(ghostspec.build(ghostspec.load("tiny.yaml", text=TINY)), path)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def error_text(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def one_line_refusal(path: Path, *words: str) -> str:
    """load_model_file refuses `path`: one line of message, naming each of `words`, no dump."""
    with pytest.raises(SpecError) as caught:
        load_model_file(path)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.file == str(path)
    assert "\n" not in diagnostic.message and len(diagnostic.message) < 300
    assert "{" not in diagnostic.message  # no config dump
    for word in words:
        assert word in diagnostic.message
    return diagnostic.message


def rewrite_config(source: Path, target: Path, change: Any) -> Path:
    """A copy of a .keras file with its config.json changed by `change(config)`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            new.writestr(info.filename, data)
    return target


def first_layer(config: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == kind)


# ------------------------------------------------------------------------ item 1: the loader


def test_metadata_round_trips_and_a_build_has_none(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_model_file(model_file)
    assert loaded.metadata is None and loaded.path == model_file
    meta = ModelMetadata(
        classes=("cat", "dog", "fox"),
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.25),
        input_size=(32, 32),
        crop_pct=0.875,
        spec=TINY,
    )
    out = save_model_file(loaded.model, tmp_path / "with_meta.keras", meta)
    from keras.src.saving import saving_lib

    def no_disk() -> str:  # Keras extracts an archive of more than its three members to TMPDIR
        raise AssertionError("loading should not extract the archive")

    monkeypatch.setattr(saving_lib, "get_temp_dir", no_disk)
    again = load_model_file(out)
    assert again.metadata == meta
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    assert np.array_equal(np.asarray(again.model(x)), np.asarray(loaded.model(x)))
    with zipfile.ZipFile(out) as archive:
        assert "ghostspec.json" in archive.namelist()


def test_bad_metadata_is_refused(model_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "bad_meta.keras"
    target.write_bytes(model_file.read_bytes())
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr("ghostspec.json", json.dumps({"std": [0.0, 1.0, 1.0]}))
    one_line_refusal(target, "ghostspec.json", "not valid")


def test_optimizer_state_is_kept_or_left_out(tmp_path: Path) -> None:
    import h5py

    model = ghostspec.build(ghostspec.load("tiny.yaml", text=TINY))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((2, 32, 32, 3), "float32"), np.array([0, 1]), verbose=0)
    for keep in (True, False):
        out = save_model_file(model, tmp_path / f"{keep}.keras", include_optimizer=keep)
        with (
            zipfile.ZipFile(out) as archive,
            h5py.File(__import__("io").BytesIO(archive.read("model.weights.h5"))) as weights,
        ):
            assert ("optimizer" in weights) is keep
    assert model.optimizer is not None  # restored after saving without it


def test_dynamic_ghostnetv2_round_trips_build_to_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("v2.yaml").write_text(TINY_V2)
    assert cli.run(["build", "v2.yaml", "-o", "M.KERAS"]) == 0  # suffix in any case
    model = load_model_file("M.KERAS").model
    assert any(type(layer).__name__ == "LegacyNearestUpsample" for layer in model.layers)
    assert cli.run(["export", "M.KERAS", "--to", "tflite", "-o", "v2.tflite"]) == 0
    assert Path("v2.tflite").stat().st_size > 10_000


@pytest.mark.parametrize(
    "content",
    [b"", b"random bytes, not an archive" * 40, "truncated"],
    ids=["empty", "random", "truncated"],
)
def test_corrupt_files_say_what_they_are(
    model_file: Path, tmp_path: Path, content: bytes | str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.keras"
    data = model_file.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else content)  # type: ignore[arg-type]
    one_line_refusal(path, "is not a Keras model file (not a zip archive)")
    assert cli.run(["export", str(path), "--to", "tflite", "-o", str(tmp_path / "x.tflite")]) == 2
    err = error_text(capsys)
    assert "File not found" not in err and "not a zip archive" in err
    assert listing(tmp_path) == ["broken.keras"]


def test_a_decompression_bomb_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"x")
    data = bytearray(path.read_bytes())
    # the central directory entry of config.json: declare 1.5 GB uncompressed
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + 11] != b"config.json":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (1_500_000_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    one_line_refusal(path, "config.json", "1,500,000,000")


def test_foreign_classes_and_functions_are_named(model_file: Path, tmp_path: Path) -> None:
    def foreign(config: dict[str, Any]) -> None:
        layer = first_layer(config, "Conv2D")
        layer.update(module="evil_pkg.layers", class_name="Evil", registered_name="evil>Evil")

    def function(config: dict[str, Any]) -> None:
        first_layer(config, "Activation")["config"]["activation"] = {
            "module": "os",
            "class_name": "function",
            "config": "system",
            "registered_name": "function",
        }

    path = rewrite_config(model_file, tmp_path / "foreign.keras", foreign)
    one_line_refusal(path, "evil>Evil", "ghostspec cannot load it")
    path = rewrite_config(model_file, tmp_path / "function.keras", function)
    one_line_refusal(path, "'os.system'", "cannot load it")


@pytest.mark.parametrize("layer", ["Lambda", "TFSMLayer"])
def test_layers_that_carry_code_are_refused(model_file: Path, tmp_path: Path, layer: str) -> None:
    def change(config: dict[str, Any]) -> None:
        first_layer(config, "Activation")["class_name"] = layer

    path = rewrite_config(model_file, tmp_path / "code.keras", change)
    one_line_refusal(path, layer)


def test_a_lambda_payload_never_runs(tmp_path: Path) -> None:
    import keras

    marker = tmp_path / "ran"
    payload = eval(f"lambda x: __import__('pathlib').Path({str(marker)!r}).touch() or x")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Lambda(payload)(inputs))
    path = tmp_path / "payload.keras"
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran it once, here
    one_line_refusal(path, "Lambda layer", "runs Python code")
    assert not marker.exists()

    def lambda_activation(config: dict[str, Any]) -> None:  # the code, outside a Lambda layer
        code = first_layer(config, "Lambda")["config"]["function"]
        layer = first_layer(config, "Lambda")
        layer.update(class_name="Activation", config={"name": "act", "activation": code})

    path = rewrite_config(path, tmp_path / "activation.keras", lambda_activation)
    one_line_refusal(path, "Python code (a lambda)")
    assert not marker.exists()


class Payload:
    """Pickled, it runs `touch MARKER` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_no_payload_in_a_spec_or_weights_file_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghostspec.keras.weights import read_state_dict

    marker = tmp_path / "ran"
    spec = tmp_path / "tagged.yaml"
    spec.write_text(
        TINY.replace("name: tiny", f"name: !!python/object/apply:os.system ['touch {marker}']")
    )
    assert cli.run(["validate", str(spec)]) == 2
    assert "not allowed" in error_text(capsys)
    weights = tmp_path / "pickled.npz"
    np.savez(weights, a=np.array([Payload(marker)], dtype=object))
    with pytest.raises(SpecError):
        read_state_dict(weights)
    assert not marker.exists()


def test_a_model_that_does_not_take_images_is_refused(tmp_path: Path) -> None:
    import keras

    path = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]).save(path)
    one_line_refusal(path, "(None, 8)", "not an image batch")


def test_bad_files_are_refused_before_tensorflow_loads(model_file: Path, tmp_path: Path) -> None:
    from isolation import assert_imports_no_framework

    from ghostspec.keras.layers import CUSTOM_OBJECTS, known_objects
    from ghostspec.keras.modelfile import GHOSTSPEC_LAYERS
    from ghostspec.train.optim import TRAINING_OBJECTS

    assert set(CUSTOM_OBJECTS) | set(TRAINING_OBJECTS) == GHOSTSPEC_LAYERS
    # the training room registered its own; the keras-hub room registers its tasks when a test
    # in this process has imported it, and nothing else may appear
    extra = set(known_objects()) - GHOSTSPEC_LAYERS
    assert set(known_objects()) >= GHOSTSPEC_LAYERS
    assert {name.split(">")[1] for name in extra} <= {
        "GhostNetBackbone",
        "GhostNetImageClassifier",
        "GhostNetImageClassifierPreprocessor",
        "GhostNetImageConverter",
    }
    (tmp_path / "empty.keras").write_bytes(b"")

    def foreign(config: dict[str, Any]) -> None:
        first_layer(config, "Conv2D").update(module="evil", class_name="Evil")

    rewrite_config(model_file, tmp_path / "foreign.keras", foreign)
    assert_imports_no_framework(
        f"""
import sys
from ghostspec.diagnostics import SpecError
from ghostspec.keras.modelfile import load_model_file
for name in ("empty.keras", "foreign.keras"):
    try:
        load_model_file({str(tmp_path)!r} + "/" + name)
        raise SystemExit(name + " was loaded")
    except SpecError:
        pass
"""
    )


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    one_line_refusal(fifo, "not a regular file")  # and does not block
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(SpecError, match="is a directory"):
        load_model_file(tmp_path / "folder.keras")
    with pytest.raises(SpecError, match="no such model file"):
        load_model_file(tmp_path / "missing.keras")


# --------------------------------------------------------------- item 2: nothing is destroyed


def test_a_savedmodel_never_replaces_a_folder_of_user_files(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], model_file: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    assert cli.run(["export", str(spec), "--to", "savedmodel", "-o", f"{victim}/"]) == 2
    assert "holds no SavedModel" in error_text(capsys)
    assert (victim / "thesis.tex").read_text() == "years of work"
    model = load_model_file(model_file).model
    with pytest.raises(SpecError, match="not empty"):
        export.export(model, "savedmodel", victim, input_size=(32, 32), batch=None)
    assert listing(victim) == ["thesis.tex"]


def test_a_savedmodel_replaces_an_empty_folder_then_itself(
    model_file: Path, tmp_path: Path
) -> None:
    model = load_model_file(model_file).model
    target = tmp_path / "sm"
    target.mkdir()
    export.export(model, "savedmodel", target, input_size=(32, 32), batch=None)
    assert (target / "saved_model.pb").is_file()
    first = (target / "saved_model.pb").stat().st_mtime_ns
    export.export(model, "savedmodel", target, input_size=(32, 32), batch=None)
    assert (target / "saved_model.pb").stat().st_mtime_ns >= first
    assert listing(tmp_path) == ["sm"]  # no temporary folder left


def test_the_current_folder_is_not_a_savedmodel_target(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.run(["export", "tiny.yaml", "--to", "savedmodel", "-o", "."]) == 2
    assert "current folder" in error_text(capsys)
    assert listing(tmp_path) == ["tiny.yaml"]


def _same_file_cases(tmp_path: Path, spec: Path, model_file: Path) -> list[list[str]]:
    keras_copy = tmp_path / "m.keras"
    keras_copy.write_bytes(model_file.read_bytes())
    weights = tmp_path / "w.npz"
    np.savez(weights, a=np.zeros(1))
    for name, source in [
        ("spec.tflite", spec),
        ("spec.onnx", spec),
        ("model.tflite", keras_copy),
        ("spec.keras", spec),
        ("weights.keras", weights),
    ]:
        os.link(source, tmp_path / name)  # another name for the same file
    (tmp_path / "link.svg").symlink_to(spec)
    holder = tmp_path / "sm"
    holder.mkdir()
    (holder / "saved_model.pb").write_bytes(b"old")
    inner = holder / "tiny.yaml"
    inner.write_text(TINY)
    return [
        ["export", str(spec), "--to", "tflite", "-o", str(tmp_path / "spec.tflite")],
        ["export", str(spec), "--to", "onnx", "-o", str(tmp_path / "spec.onnx")],
        ["export", str(inner), "--to", "savedmodel", "-o", str(holder)],
        ["export", str(keras_copy), "--to", "tflite", "-o", str(tmp_path / "model.tflite")],
        ["build", str(spec), "-o", str(tmp_path / "spec.keras")],
        ["build", str(spec), "--weights", str(weights), "-o", str(tmp_path / "weights.keras")],
        ["plot", str(spec), "-o", str(tmp_path / "link.svg")],
        ["plot", str(spec), "-o", str(spec)],
        ["export", str(spec), "--to", "tflite", "-o", str(spec)],
        ["export", str(spec), "--to", "savedmodel", "-o", str(spec)],
        ["export", str(keras_copy), "--to", "tflite", "-o", str(keras_copy)],
    ]


def test_an_output_that_is_an_input_is_refused_by_every_command(
    spec: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _same_file_cases(tmp_path, spec, model_file)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for argv in cases:
        assert cli.run(argv) == 2, argv
        err = error_text(capsys)
        assert "destroy" in err, (argv, err)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_schema_output_replaces_only_a_schema(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(["schema", "-o", str(spec)]) == 2
    assert "must end in .json" in error_text(capsys)
    json_spec = tmp_path / "spec.json"
    json_spec.write_text(json.dumps({"ghostspec": 1, "name": "tiny"}))
    assert cli.run(["schema", "-o", str(json_spec)]) == 2
    assert "not a JSON Schema" in error_text(capsys)
    assert json.loads(json_spec.read_text())["name"] == "tiny"
    schema = tmp_path / "s.json"
    assert cli.run(["schema", "-o", str(schema)]) == 0
    assert cli.run(["schema", "-o", str(schema)]) == 0  # a previous schema is replaced


def test_a_parent_that_is_a_file_says_so(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["build", str(spec), "-o", f"{spec}/x.keras"]) == 2
    err = error_text(capsys)
    assert "is a file, not a folder" in err and "does not exist" not in err


# ---------------------------------------------------------------- item 3: failed writes


def test_a_file_that_cannot_be_replaced_is_exit_2_and_kept(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def immutable(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    messy = tmp_path / "messy.yaml"
    messy.write_text(
        "ghostspec:    1\nname: messy\ninput: {shape: [32,32,3]}\nstages:\n- [[16,16,0,1,3]]\n"
    )
    before = messy.read_text()
    out = tmp_path / "out.keras"
    out.write_bytes(b"previous model")
    monkeypatch.setattr(files.os, "replace", immutable)
    assert cli.run(["fmt", str(messy)]) == 2
    assert "cannot write: Operation not permitted" in error_text(capsys)
    assert messy.read_text() == before
    assert cli.run(["build", str(spec), "-o", str(out)]) == 2
    assert "chattr" in error_text(capsys)
    assert out.read_bytes() == b"previous model"
    assert listing(tmp_path) == ["messy.yaml", "out.keras", "tiny.yaml"]


def test_a_full_disk_leaves_nothing_here_or_in_tmpdir(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from keras.src.saving import saving_lib

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmpdir))

    def full(self: Any) -> None:  # the weights do not fit; Keras then skips its own cleanup
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saving_lib.H5IOStore, "close", full)
    out = tmp_path / "out" / "m.keras"
    out.parent.mkdir()
    assert cli.run(["build", str(spec), "-o", str(out)]) == 2
    err = error_text(capsys)
    assert "No space left on device" in err and "free some disk space" in err
    assert listing(out.parent) == [] and listing(tmpdir) == []


def test_fmt_writes_through_a_symlink_and_keeps_the_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(
        "ghostspec:    1\nname: t\ninput: {shape: [32,32,3]}\nstages:\n- [[16,16,0,1,3]]\n"
    )
    real.chmod(0o600)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert cli.run(["fmt", str(link)]) == 0
    assert link.is_symlink() and "ghostspec: 1\n" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert listing(tmp_path) == ["link.yaml", "real.yaml"]


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GHOSTSPEC_VERBOSE",)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_a_file_name_the_terminal_cannot_encode_does_not_crash(tmp_path: Path) -> None:
    good = os.path.join(os.fsencode(tmp_path), b"caf\xe9.yaml")
    bad = os.path.join(os.fsencode(tmp_path), b"na\xefve.yaml")
    with open(good, "w") as handle:
        handle.write(TINY)
    with open(bad, "w") as handle:
        handle.write(TINY.replace("classes: 3", "classes: 0"))
    env = _environment(PYTHONIOENCODING="utf-8:strict")
    for name, code, shown in ((good, 0, b"caf\\udce9.yaml: ok"), (bad, 2, b"na\\udcefve.yaml")):
        result = subprocess.run(
            [sys.executable, "-m", "ghostspec", "validate", os.fsdecode(name)],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == code, result.stderr
        assert b"Traceback" not in result.stderr
        assert shown in (result.stdout if code == 0 else result.stderr)


# ------------------------------------------------------------- item 4: checks before the work


def test_outputs_are_checked_before_any_building(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def expensive(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the output should have been refused first")

    monkeypatch.setattr(ghostspec, "build", expensive)
    monkeypatch.setattr(deploy_commands, "_export_model", expensive)
    folder = tmp_path / "folder.tflite"
    folder.mkdir()
    (folder / "keep").write_text("x")
    cases = [
        ["build", str(spec), "-o", str(tmp_path / "missing" / "m.keras")],
        ["build", str(spec), "-o", str(tmp_path / "m.h5")],
        ["export", str(spec), "--to", "tflite", "-o", str(folder)],
        ["export", str(spec), "--to", "tflite", "-o", str(tmp_path / "m.onnx")],
        ["export", str(spec), "--to", "savedmodel", "-o", str(folder)],
        ["export", str(tmp_path / "any.keras"), "--to", "onnx", "-o", str(tmp_path / "no/m.onnx")],
    ]
    for argv in cases:
        assert cli.run(argv) == 2, argv
        assert "error:" in error_text(capsys)


# ------------------------------------------------- items 3, 5, 6: signals and the terminal


def _wait_for(predicate: Any, process: subprocess.Popen[bytes]) -> None:
    while not predicate():
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)


SLOW_SAVE = """
import sys, time, keras
def slow(self, path, *args, **kwargs):
    open(path, "wb").write(b"partial")
    for _ in range(600):
        time.sleep(0.1)
keras.Model.save = slow
sys.argv = ["ghostspec", *sys.argv[1:]]
from ghostspec.cli import main
main()
"""


def default_signals() -> None:
    """In the child, before it starts: SIGINT and SIGTERM as a shell's foreground job has them.
    A shell starts a background job (`pytest &`) with SIGINT ignored, children inherit that,
    and Python installs no KeyboardInterrupt handler then, so the signal would never arrive."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_while_writing_leaves_nothing(tmp_path: Path, sig: int, code: int) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "out.keras").write_bytes(b"previous")
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "build", "tiny.yaml", "-o", "out.keras"],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_signals,
    )
    _wait_for(lambda: len(listing(tmp_path)) > 2, process)  # the temporary file is there
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code
    assert err.decode().strip().splitlines()[-1].startswith("ghostspec: ")
    assert b"Traceback" not in err
    assert listing(tmp_path) == ["out.keras", "tiny.yaml"]
    assert (tmp_path / "out.keras").read_bytes() == b"previous"


SLOW_CONVERT = """
import sys, time
from ghostspec.deploy import export
def slow(*args, **kwargs):
    print("converting", flush=True)
    for _ in range(600):
        time.sleep(0.1)
export._convert = slow
sys.argv = ["ghostspec", *sys.argv[1:]]
from ghostspec.cli import main
main()
"""


def test_sigterm_during_export_cleans_the_temp_folder(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CONVERT, "export", "tiny.yaml", "--to", "tflite"],
        cwd=tmp_path,
        env=_environment(TMPDIR=str(tmpdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_signals,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"converting\n"
    assert listing(tmpdir)  # the conversion's scratch SavedModel
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert listing(tmpdir) == [] and listing(tmp_path) == ["tiny.yaml", "tmpdir"]


def test_build_prints_nothing_on_stderr_and_two_builds_share_a_path(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    command = [sys.executable, "-m", "ghostspec", "build", "tiny.yaml", "-o", "out.keras"]
    runs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert err == b"", err.decode()  # TensorFlow's start-up lines are filtered out
        assert b"wrote out.keras" in out
    assert listing(tmp_path) == ["out.keras", "tiny.yaml"]
    assert load_model_file(tmp_path / "out.keras").model.name == "tiny"


STARTUP_NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796115270.934126    6818 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.",
    b"E0000 00:00:1796115274.765768    6818 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"I0000 00:00:1796115277.321884    7078 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, "
    b"output_inference_type: INT8",
]
GENUINE = b"E0000 00:00:1.5    6818 graph.cc:1] a genuine TensorFlow error"
FILTER_CHECK = f"""
import os, sys
from ghostspec.quiet import quiet_tensorflow
with quiet_tensorflow():
    for line in {[*STARTUP_NOISE, GENUINE]!r}:
        os.write(2, line + b"\\n")
    print("python's own stderr", file=sys.stderr, flush=True)
    if os.environ.get("ABORT"):
        os.abort()
"""


@pytest.mark.parametrize("abort", [False, True])
def test_the_filter_drops_start_up_noise_and_passes_errors(abort: bool) -> None:
    env = _environment(**({"ABORT": "1"} if abort else {}))
    result = subprocess.run(
        [sys.executable, "-c", FILTER_CHECK], env=env, capture_output=True, timeout=60
    )
    lines = sorted(result.stderr.decode().splitlines())
    assert [line.split("] ")[-1] for line in lines] == [
        "a genuine TensorFlow error",
        "python's own stderr",
    ]
    verbose = subprocess.run(
        [sys.executable, "-c", FILTER_CHECK.replace("with quiet_tensorflow():", "if True:")],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert b"cuInit" in verbose.stderr  # the lines are real without the filter


def test_only_the_known_lines_are_noise() -> None:
    from ghostspec.quiet import is_noise

    assert all(is_noise(line) for line in STARTUP_NOISE)
    assert not is_noise(GENUINE)
    assert not is_noise(b"F0000 00:00:1.5  1 op_kernel.cc:9] Check failed: fatal")
    assert not is_noise(b"ERROR: tflite interpreter failed")


def test_verbose_is_a_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghostspec.quiet import verbose_requested

    monkeypatch.delenv("GHOSTSPEC_VERBOSE", raising=False)
    assert not verbose_requested() and verbose_requested(True)
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("GHOSTSPEC_VERBOSE", value)
        assert verbose_requested() is expected
    args = cli.build_parser().parse_args(["build", "x.yaml", "--verbose"])
    assert args.verbose is True
    assert cli.build_parser().parse_args(["--verbose", "export", "x.yaml", "--to", "onnx"]).verbose
    assert cli.build_parser().parse_args(["build", "x.yaml"]).verbose is False
