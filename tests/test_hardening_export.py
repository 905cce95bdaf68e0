"""Issue 9, export and weights: sizes the user types are checked against memory before anything
is built, `--calibration` and `--input-size` are checked up front, and weight files that are not
a mapping of names to dense float tensors are refused cleanly, with nothing assigned.

Memory checks are tested through the estimate and the refusal, never by allocating."""

from __future__ import annotations

import math
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from isolation import assert_imports_no_framework
from safetensors.numpy import save_file
from torchsave import Call, Global, Tensor, state_dict, torch_save

import ghostspec
from ghostspec import cli
from ghostspec.deploy import export, tflite
from ghostspec.deploy.calibration import (
    RANDOM_LIMIT,
    calibration_notice,
    calibration_seconds,
    parse_calibration,
)
from ghostspec.diagnostics import SpecError
from ghostspec.keras.weights import load_weights, read_state_dict
from ghostspec.language.reading import dump_yaml
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Plan
from ghostspec.plan.memory import ExportMemory, Footprint, export_memory, plan_footprint

TINY = """
ghostspec: 1
name: tiny
input: {shape: [32, 32, 3]}
width: 0.5
stages:
  - [[16, 16, 0.25, 2, 3]]
  - [[48, 24, 0, 2, 5], [48, 24, 0.25, 1, 3]]
head: {filters: 64, hidden: 128, classes: 7, dropout: 0.2}
"""

SMALL: dict[str, Any] = {
    "ghostspec": 1,
    "name": "small",
    "input": {"shape": [32, 32, 3]},
    "width": 0.5,
    "ghost": {"ratio": 3, "cheap_kernel": 3},
    "stem": {"filters": 16, "kernel": 3, "stride": 2},
    "stages": [[[16, 16, 0, 1, 3]], [[48, 24, 0.25, 2, 5]]],
    "head": {"filters": 64, "hidden": 32, "classes": 7},
}


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def plan() -> Plan:
    return ghostspec.plan(ghostspec.load("small.yaml", text=dump_yaml(SMALL)))


def random_state(plan: Plan) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {t.name: rng.normal(size=t.shape).astype(np.float32) for t in plan.tensors()}
    for name in state:
        if name.endswith("running_var"):
            state[name] = np.abs(state[name]) + 0.5
    return state


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and no traceback; return what it printed on stderr."""
    assert cli.run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model build fails the test: the checks must come first."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(ghostspec, "build", forbidden)


# ------------------------------------------------------------------------- 1. memory estimates


def keras_activations(model: Any) -> int:
    """Every layer output of one sample, as an eager Keras call holds them."""
    total = 0
    for layer in model.layers:
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        total += sum(math.prod(o.shape[1:]) for o in outputs)
    return total


@pytest.mark.parametrize(
    "variant", [{}, {"attention": "dfc", "attention_from": 0}, {"branches": 2}]
)
def test_the_plan_counts_the_activations_keras_makes(variant: dict[str, Any]) -> None:
    doc = {**SMALL, "ghost": {**SMALL["ghost"], **variant}}
    plan = ghostspec.plan(ghostspec.load("v.yaml", text=dump_yaml(doc)))
    model = ghostspec.build(plan)
    footprint = plan_footprint(plan)
    assert footprint.total == pytest.approx(keras_activations(model), rel=0.01)
    assert footprint.weights == model.count_params()
    assert footprint.input == 32 * 32 * 3
    assert footprint.input < footprint.peak < footprint.total
    # the deploy form makes fewer tensors; the estimate may err high, not low
    deploy = ghostspec.fuse(model, plan, batch_norm=True)
    fused = plan_footprint(fuse_plan(plan, batch_norm=True))
    assert keras_activations(deploy) <= fused.total <= 1.25 * keras_activations(deploy)
    # a saved model's footprint, from Keras' own shapes, agrees with the plan's
    from_model = export.model_footprint(model, (32, 32, 3))
    assert from_model.total == pytest.approx(footprint.total, rel=0.01)
    assert from_model.peak == pytest.approx(footprint.peak, rel=0.5)


def test_activations_grow_with_the_pixels() -> None:
    at = {
        s: plan_footprint(ghostspec.plan("specs/small.yaml", input_size=(s, s))) for s in (224, 896)
    }
    assert at[896].total / at[224].total == pytest.approx(16, rel=0.02)
    assert at[896].weights == at[224].weights


def test_dynamic_plans_have_no_footprint() -> None:
    plan = ghostspec.plan("specs/small.yaml", ["input.shape=[null, null, 3]"])
    with pytest.raises(ValueError, match="fixed input size"):
        plan_footprint(plan)


FOOTPRINT = Footprint(input=300_000, total=20_000_000, peak=5_000_000, weights=2_000_000)


def test_the_parity_check_shrinks_to_fit() -> None:
    def check(available: int | None) -> tuple[ExportMemory, bool]:
        return export_memory(
            FOOTPRINT, FOOTPRINT, batch=None, to="tflite", quantize="none", available=available
        )

    roomy, fits = check(None)
    assert fits and (roomy.samples, roomy.chunk, roomy.graph) == (8, 8, False)
    # less memory: Keras one sample at a time first, then a traced graph, then fewer samples
    one_at_a_time, fits = check(roomy.bytes - 1)
    assert fits and (one_at_a_time.samples, one_at_a_time.chunk) == (8, 1)
    assert not one_at_a_time.graph and one_at_a_time.bytes < roomy.bytes
    graph, fits = check(one_at_a_time.bytes - 1)
    assert fits and graph.graph and graph.samples == 8 and graph.bytes < one_at_a_time.bytes
    least, fits = check(None)
    for budget in range(graph.bytes - 1, 0, -(graph.bytes // 50)):
        memory, fits = check(budget)
        if not fits:
            break
        assert memory.bytes <= budget
        least = memory
    assert least.samples < 8 and least.graph
    assert not fits and (memory.samples, memory.chunk) == (1, 1) and memory.bytes > budget


def test_a_fixed_batch_is_checked_in_whole_batches() -> None:
    for batch in (1, 3, 8, 20):
        memory, _ = export_memory(
            FOOTPRINT, FOOTPRINT, batch=batch, to="savedmodel", quantize="none", available=None
        )
        assert memory.samples % batch == 0 and memory.samples >= min(8, batch)
    huge, fits = export_memory(
        FOOTPRINT, FOOTPRINT, batch=100_000, to="tflite", quantize="none", available=64 << 30
    )
    assert not fits and huge.samples == 100_000


def test_int8_counts_the_calibration_run() -> None:
    args: dict[str, Any] = {"batch": None, "to": "tflite", "available": None}
    small = Footprint(150_000, 6_000_000, 1_000_000, 2_000_000)
    big = Footprint(150_000, 600_000_000, 1_000_000, 2_000_000)  # the same but for `total`
    plain, _ = export_memory(small, small, quantize="none", **args)
    plain_big, _ = export_memory(small, big, quantize="none", **args)
    int8_big, _ = export_memory(small, big, quantize="int8", **args)
    assert plain_big.bytes == plain.bytes  # the artifact's total matters only to calibration
    assert int8_big.bytes > plain.bytes + 600_000_000 * 4


def test_an_export_that_cannot_fit_is_refused_before_building(
    capsys: pytest.CaptureFixture[str], no_build: None
) -> None:
    size = ["--input-size", "8192", "8192", "--batch", "64"]
    err = refused(capsys, ["export", "specs/small.yaml", "--to", "tflite", *size])
    assert "--batch" in err and "8192x8192 and batch 64 needs about" in err and "GiB" in err
    assert "is available" in err and "smaller --input-size or --batch" in err
    err = refused(capsys, ["export", "specs/small.yaml", "--to", "onnx", "--batch", "100000"])
    assert "224x224 and batch 100000 needs about" in err


def test_the_memory_limit_can_be_lowered(
    tiny_spec: Path, capsys: pytest.CaptureFixture[str], no_build: None, monkeypatch: Any
) -> None:
    monkeypatch.setenv("GHOSTSPEC_MEMORY_LIMIT", str(100 << 20))
    err = refused(capsys, ["export", str(tiny_spec), "--to", "tflite"])
    assert "--input-size" in err and "needs about" in err and "100 MiB is available" in err


def test_the_refusal_needs_no_tensorflow() -> None:
    assert_imports_no_framework(
        "import contextlib, io, sys\n"
        "from ghostspec import cli\n"
        "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "    code = cli.run(['export', 'specs/large.yaml', '--set', 'width=0.5', '--set',\n"
        "                   'input.shape=[4096, 4096, 3]', '--to', 'tflite', '--batch', '16'])\n"
        "assert code == 2 and 'needs about' in err.getvalue(), err.getvalue()\n"
    )


def test_the_api_refuses_too_from_the_models_shapes(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ghostspec.build(tiny_spec)
    monkeypatch.setattr(export, "available_bytes", lambda: 50 << 20)
    with pytest.raises(SpecError, match="needs about"):
        export.export(model, "tflite", tmp_path / "m.tflite", input_size=(32, 32), batch=1)
    assert list(tmp_path.iterdir()) == []


def test_a_smaller_check_gives_the_same_verdict(tiny_spec: Path, tmp_path: Path) -> None:
    """Fewer samples, Keras run one sample at a time through a traced graph."""
    model = ghostspec.build(tiny_spec)
    memory = ExportMemory(samples=3, chunk=1, graph=True, bytes=0)
    result = export.export(
        model, "savedmodel", tmp_path / "sm", input_size=(32, 32), batch=None, memory=memory
    )
    assert result.parity.max_abs_diff <= 1e-4
    assert export.parity_batch((4, 4, 3), 2).dtype == np.float32


def test_a_fixed_batch_that_does_not_divide_eight(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b3.tflite"
    assert (
        cli.run(["export", str(tiny_spec), "--to", "tflite", "--batch", "3", "-o", str(out)]) == 0
    )
    interpreter = tflite.tflite_interpreter(out.read_bytes())
    assert list(interpreter.get_input_details()[0]["shape"]) == [3, 32, 32, 3]


# ------------------------------------------------------------------------------ 2. calibration


@pytest.mark.parametrize(
    "text", ["random:²", "random:0", "random:", "random:-3", "random:1e3", "random:٣", "random: 5"]
)
def test_random_counts_are_ascii_digits_and_positive(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_calibration(text)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.file == "--calibration" and "positive whole number" in diagnostic.message


def test_random_counts_are_capped() -> None:
    assert parse_calibration(f"random:{RANDOM_LIMIT}").random == RANDOM_LIMIT
    with pytest.raises(SpecError, match="at most 10,000 random samples"):
        parse_calibration(f"random:{RANDOM_LIMIT + 1}")
    assert parse_calibration("calib/images").folder == Path("calib/images")


@pytest.mark.parametrize("text", ["random:²", "random:0", "random:100000"])
def test_bad_calibration_is_refused_before_building(
    tiny_spec: Path, text: str, capsys: pytest.CaptureFixture[str], no_build: None
) -> None:
    argv = ["export", str(tiny_spec), "--to", "tflite", "--quantize", "int8"]
    err = refused(capsys, [*argv, "--calibration", text])
    assert err.startswith("--calibration: error:")


def test_a_long_calibration_is_announced() -> None:
    assert calibration_notice(100, (96, 96)) is None
    assert calibration_seconds(100, (192, 192)) == pytest.approx(
        4 * calibration_seconds(100, (96, 96))
    )
    notice = calibration_notice(10_000, (224, 224))
    assert notice is not None and "10,000 samples at 224x224 takes about" in notice


# ----------------------------------------------------------------------------- 3. --input-size


def test_a_spec_is_built_at_the_requested_size(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "48.tflite"
    argv = ["export", str(tiny_spec), "--to", "tflite", "--input-size", "48", "40"]
    assert cli.run([*argv, "-o", str(out)]) == 0
    assert "48x40" in capsys.readouterr().out
    interpreter = tflite.tflite_interpreter(out.read_bytes())
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 48, 40, 3]


def test_a_size_the_network_cannot_take_gets_the_planners_diagnostic(
    capsys: pytest.CaptureFixture[str], no_build: None
) -> None:
    dynamic = ["--set", "input.shape=[null, null, 3]", "--input-size", "7", "7"]
    err = refused(capsys, ["export", "specs/ghostnetv2.yaml", "--to", "tflite", *dynamic])
    # 7x7 is below the total stride, which the planner checks first (issue 17, item 5)
    assert "--input-size" in err and "smaller than the network's total stride 32" in err
    assert "InvalidArgument" not in err


def test_the_size_rule() -> None:
    keras_file = {"fixed": True, "source": "m.keras"}
    assert export.export_size(None, (32, 32), **keras_file) == ((32, 32), "")
    assert export.export_size((32, 32), (32, 32), **keras_file) == ((32, 32), "")
    with pytest.raises(SpecError) as caught:
        export.export_size((48, 48), (32, 32), **keras_file)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.file == "--input-size"
    assert "48x48: the model in m.keras takes 32x32 inputs only" in diagnostic.message
    size, note = export.export_size(None, None, **keras_file)
    assert size == (224, 224) and "any size" in note
    assert export.export_size((48, 48), None, **keras_file) == ((48, 48), "")
    spec = {"fixed": False, "source": "s.yaml"}
    assert export.export_size((48, 48), (32, 32), **spec) == ((48, 48), "")


def test_a_fixed_size_keras_file_at_another_size_is_refused(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "tiny.keras"
    assert cli.run(["build", str(tiny_spec), "-o", str(saved)]) == 0
    capsys.readouterr()
    argv = ["export", str(saved), "--to", "tflite", "--input-size", "48", "48"]
    err = refused(capsys, [*argv, "-o", str(tmp_path / "x.tflite")])
    assert "takes 32x32 inputs only" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.keras"]


# ------------------------------------------------------------------------------ 4. weight files


def test_pth_files_are_read_without_torch(
    plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    state = random_state(plan)
    tracked = {"bn1.num_batches_tracked": np.array(5, np.int64)}
    wrapped = {
        "state_dict": state_dict({f"module.{k}": v for k, v in {**state, **tracked}.items()})
    }
    path = torch_save({**wrapped, "epoch": 7, "arch": "ghostnet"}, tmp_path / "w.pth.tar")
    read = read_state_dict(path)
    assert set(read) == set(state) | set(tracked)
    for name, value in state.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)
    model = ghostspec.build(plan, weights=path)
    np.testing.assert_array_equal(
        model.get_layer("classifier").bias.numpy(), state["classifier.bias"]
    )


def test_half_and_bfloat16_tensors_become_float32(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 0.15625, 3e38], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = torch_save(
        {"a": Tensor("BFloat16Storage", bf16, (2, 2)), "b": values[:3].astype(np.float16)},
        tmp_path / "half.pt",
    )
    read = read_state_dict(path)
    assert read["a"].dtype == np.float32 and read["a"].shape == (2, 2)
    np.testing.assert_array_equal(read["a"].ravel()[:3], values[:3])
    assert read["b"].dtype == np.float16


QTENSOR = Tensor(
    "QInt8Storage",
    bytes(4),
    (4,),
    rebuild=Global("torch._utils", "_rebuild_qtensor"),
    extra=((Global("torch", "per_tensor_affine"), 0.1, 0),),
)
LAYOUT = Call(Global("torch.serialization", "_get_layout"), ("torch.sparse_coo",))
SPARSE = Call(
    Global("torch._utils", "_rebuild_sparse_tensor"),
    (LAYOUT, (np.zeros((1, 2), np.int64), np.ones(2, np.float32), (3,))),
)
NOT_STATE_DICTS = {
    "bare tensor": (np.ones((3, 4), np.float32), "holds a single tensor of shape [3, 4], not a"),
    "list": ([np.ones(3, np.float32)], "holds a list, not a state dict"),
    "integer keys": ({0: np.ones(3, np.float32)}, "the key 0 is not a string"),
    "qint8 tensor": ({"q": QTENSOR}, "tensor 'q' is a quantized tensor"),
    "sparse tensor": ({"s": SPARSE}, "tensor 's' is a sparse tensor"),
}


@pytest.mark.parametrize("case", NOT_STATE_DICTS)
def test_pth_files_that_are_not_state_dicts(case: str, tmp_path: Path) -> None:
    value, message = NOT_STATE_DICTS[case]
    path = torch_save(value, tmp_path / "bad.pth")
    with pytest.raises(SpecError) as caught:
        read_state_dict(path)
    text = "\n".join(d.message for d in caught.value.diagnostics)
    assert message in text
    assert all(d.file == str(path) for d in caught.value.diagnostics)


def test_a_bad_pth_through_the_cli_is_exit_2(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = torch_save([np.ones(3, np.float32)], tmp_path / "list.pth")
    err = refused(capsys, ["build", str(tiny_spec), "--weights", str(path)])
    assert "holds a list, not a state dict" in err


@pytest.mark.parametrize(
    "obj",
    [
        Call(Global("__main__", "Net"), ()),
        {"model": Call(Global("torch.nn.modules.conv", "Conv2d"), (3, 8, 3))},
    ],
)
def test_a_pickled_module_is_one_plain_line(obj: Any, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        read_state_dict(torch_save(obj, tmp_path / "module.pth"))
    (diagnostic,) = caught.value.diagnostics
    text = f"{diagnostic.message} {diagnostic.hint}"
    assert "holds pickled Python objects" in text and "reads only tensors" in text
    assert "torch.save(model.state_dict(), path)" in text
    assert "\n" not in text and "\x1b" not in text and "weights_only" not in text


@pytest.mark.parametrize(
    "payload",
    [
        Call(Global("os", "system"), ("touch {marker}",)),
        Call(Global("builtins", "exec"), ("open({marker!r}, 'w')",)),
        Call(Global("subprocess", "call"), (["touch", "{marker}"],)),
        # hidden where a tensor's arguments are
        Call(
            Global("torch._utils", "_rebuild_tensor_v2"),
            (Call(Global("os", "system"), ("touch {marker}",)), 0, (1,), (1,)),
        ),
    ],
)
def test_no_code_from_a_pth_file_runs(payload: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(marker=str(marker))
        if isinstance(value, Call):
            return Call(value.function, tuple(fill(a) for a in value.args))
        if isinstance(value, tuple | list):
            return type(value)(fill(v) for v in value)
        return value

    path = torch_save({"x": fill(payload)}, tmp_path / "evil.pth")
    with pytest.raises(SpecError, match="pickled Python objects"):
        read_state_dict(path)
    assert not marker.exists()


def damaged(tmp_path: Path, change: str) -> Path:
    import zipfile

    good = torch_save({"w": np.arange(6, dtype=np.float32)}, tmp_path / "good.pth")
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if change == "missing storage":
        del members["archive/data/0"]
    elif change == "short storage":
        members["archive/data/0"] = members["archive/data/0"][:8]
    elif change == "torchscript":
        members = {"archive/constants.pkl": b"", "archive/code/m.py": b""}
    elif change == "no pickle":
        del members["archive/data.pkl"]
    elif change == "truncated pickle":
        members["archive/data.pkl"] = members["archive/data.pkl"][:40]
    path = tmp_path / f"{change.replace(' ', '_')}.pth"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing storage", "data/0 is missing"),
        ("short storage", "is 8 bytes; its tensors need 24"),
        ("torchscript", "TorchScript program"),
        ("no pickle", "without data.pkl"),
        ("truncated pickle", "malformed pickle"),
    ],
)
def test_damaged_pth_archives(tmp_path: Path, change: str, message: str) -> None:
    with pytest.raises(SpecError, match="cannot read the PyTorch file") as caught:
        read_state_dict(damaged(tmp_path, change))
    assert message in caught.value.diagnostics[0].message


def test_a_view_past_its_storage_is_refused(tmp_path: Path) -> None:
    oversized = Tensor("FloatStorage", bytes(8), (4,))  # 2 floats of data, 4 claimed
    with pytest.raises(SpecError):
        read_state_dict(torch_save({"w": oversized}, tmp_path / "over.pth"))


def test_legacy_pth_without_torch_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "old.pth"
    path.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")  # the legacy magic number
    with pytest.raises(SpecError) as caught:
        read_state_dict(path)
    (diagnostic,) = caught.value.diagnostics
    assert "legacy format" in diagnostic.message and "pip install torch" in (diagnostic.hint or "")


def test_npz_files_that_hold_one_array(tmp_path: Path) -> None:
    single = tmp_path / "one.npz"
    with single.open("wb") as f:
        np.save(f, np.ones(3, np.float32))  # .npy content under an .npz name
    with pytest.raises(SpecError, match=r"holds a single array \(numpy.save's .npy format\)"):
        read_state_dict(single)
    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, np.ones(3, np.float32))
    with pytest.raises(SpecError, match=r"array\(s\) have no names"):
        read_state_dict(unnamed)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_not_a_weights_file(tmp_path: Path) -> None:
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        read_state_dict(fifo)


def snapshot(model: Any) -> list[np.ndarray]:
    return [np.array(w.numpy()) for w in model.weights]


def bad_values(state: dict[str, np.ndarray], kind: str) -> dict[str, Any]:
    """The state with a few late tensors spoiled, so a partial assignment would show."""
    names = list(state)[-3:]
    spoiled: dict[str, Any] = dict(state)
    for name in names:
        if kind == "text":
            spoiled[name] = np.full(state[name].shape, "abc")
        elif kind == "int8":
            spoiled[name] = state[name].astype(np.int8)
        elif kind == "nan":
            value = state[name].copy()
            value.flat[0] = np.nan
            value.flat[-1] = np.inf
            spoiled[name] = value
    return spoiled


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "holds text values; ghostspec loads floating-point weights only"),
        ("int8", "holds int8 values"),
        ("nan", "has 1 NaN and 1 infinite values"),
    ],
)
def test_every_tensor_is_checked_before_any_is_assigned(
    plan: Plan, tmp_path: Path, kind: str, message: str
) -> None:
    model = ghostspec.build(plan)
    before = snapshot(model)
    state = bad_values(random_state(plan), kind)
    sources: list[Any] = [state]
    if kind != "text":  # safetensors holds numbers only; .npz holds text too
        save_file(state, str(tmp_path / "w.safetensors"))
        sources.append(tmp_path / "w.safetensors")
    np.savez(tmp_path / "w.npz", **state)
    sources.append(tmp_path / "w.npz")
    for source in sources:
        with pytest.raises(SpecError) as caught:
            load_weights(model, plan, source)
        diagnostics = caught.value.diagnostics
        assert len(diagnostics) == 3, diagnostics  # one per spoiled tensor, each named
        for name, diagnostic in zip(list(state)[-3:], diagnostics, strict=True):
            assert f"tensor {name!r} {message}" in diagnostic.message
        for old, new in zip(before, snapshot(model), strict=True):
            np.testing.assert_array_equal(old, new)


def test_nan_weights_are_exit_2_for_build(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "small.yaml"
    spec.write_text(dump_yaml(SMALL))
    state = random_state(plan)
    state["classifier.weight"][0, 0] = np.nan
    save_file(state, str(tmp_path / "nan.safetensors"))
    err = refused(capsys, ["build", str(spec), "--weights", str(tmp_path / "nan.safetensors")])
    assert "tensor 'classifier.weight' has 1 NaN and 0 infinite values" in err
    assert not (tmp_path / "small.keras").exists()


def test_an_ordered_state_dict_with_metadata(plan: Plan, tmp_path: Path) -> None:
    """torch.save(model.state_dict()) pickles an OrderedDict with a `_metadata` attribute."""
    state = random_state(plan)
    read = read_state_dict(torch_save(OrderedDict(state), tmp_path / "sd.pth"))
    assert list(read) == list(state)


def test_torchs_own_refusal_becomes_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legacy format goes through torch.load(weights_only=True); its multi-line, coloured
    refusal of a pickled module (advising weights_only=False) is not passed on."""
    import pickle
    import types

    def load(*args: Any, **kwargs: Any) -> Any:
        assert kwargs["weights_only"] is True
        raise pickle.UnpicklingError(
            "Weights only load failed. Re-running `torch.load` with `weights_only` set to "
            "`False` will likely succeed, but it can result in arbitrary code execution.\n"
            "\x1b[1mWeightsUnpickler error: Unsupported global: GLOBAL __main__.Net\x1b[0m\n"
            "Check the documentation of torch.load to learn more."
        )

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))
    path = tmp_path / "old.pth"
    path.write_bytes(b"\x80\x02legacy")
    with pytest.raises(SpecError) as caught:
        read_state_dict(path)
    (diagnostic,) = caught.value.diagnostics
    text = f"{diagnostic.message} {diagnostic.hint}"
    assert "holds pickled Python objects (__main__.Net), and ghostspec reads only tensors" in text
    assert "\n" not in text and "\x1b" not in text and "weights_only" not in text


def test_large_inputs_get_fewer_parity_samples() -> None:
    """At 4096x4096x3 one input is 192 MiB: five of them stay under 1 GiB."""
    big = Footprint(4096 * 4096 * 3, 10**9, 10**8, 10**6)
    memory, fits = export_memory(
        big, big, batch=None, to="savedmodel", quantize="none", available=None
    )
    assert fits and memory.samples == 5 and memory.chunk == 1
    one, _ = export_memory(
        big.scaled(4), big.scaled(4), batch=None, to="onnx", quantize="none", available=None
    )
    assert one.samples == 1
