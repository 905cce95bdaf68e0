"""Measured batch-1 latency of the deploy form, node by node, with the TFLite interpreter.

The Python interpreter has no per-operator profiler, so each plan node (stem, every bottleneck,
the last conv, head, classifier) is cut out of the deploy model (`ghostspec.fuse(model,
batch_norm=True)`, what `export` converts) as its own Keras model from the previous node's output
to its own, converted to TFLite and timed alone; the whole network is converted and timed too.
Every segment gets a real measurement (a time is never a difference of two noisy ones), and the
sum of the segments next to the whole network shows what running them separately costs.

All interpreters run in this process, one invoke of each in network order per round, so every
figure of one run was taken under the same conditions, and a block's weights are as cold or warm
as they are when the whole network runs. TensorFlow is imported when `measure` runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostspec.deploy.latency import Profile, Segment, Timing, format_ms
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import check_output, write_with
from ghostspec.needs import require_tensorflow
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import Node, Plan, layer_name, reference_name
from ghostspec.plan.memory import (
    USABLE_FRACTION,
    available_bytes,
    format_bytes,
    plan_footprint,
    profile_bytes,
)
from ghostspec.views.report import node_row

if TYPE_CHECKING:
    import keras

DEFAULT_SIZE = (224, 224)
CHART_FORMATS = {".png": "png", ".svg": "svg"}
WARMUP = 5
CALIBRATION_SAMPLES = 8
MAX_REPEATS = 10_000
MAX_THREADS_PER_CPU = 4
# Layers the Keras backend names by role rather than under their node's name.
STEM_LAYERS = ("bn1", "act1")
HEAD_LAYERS = ("global_pool", "flatten")


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what the platform says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def check_target(
    path: str | Path, suffixes: tuple[str, ...], flag: str, inputs: Iterable[Any] = ()
) -> None:
    """Refuse an output path before a minute of measuring, not after: its suffix here, the rest
    (its folder, not a folder or device itself, none of `inputs`) as for every output."""
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise SpecError(
            [
                Diagnostic(
                    file=str(target),
                    message=f"{flag} must end in {' or '.join(suffixes)}",
                    hint=f"e.g. {flag} profile{suffixes[0]}",
                )
            ]
        )
    check_output(target, inputs=inputs)


def check_settings(threads: int, repeats: int) -> None:
    """--threads and --repeats within what a measurement can use: a number typed by mistake
    (--repeats 1000000000) would otherwise run for days, and thousands of interpreter threads
    abort TensorFlow."""
    most = MAX_THREADS_PER_CPU * (os.cpu_count() or 1)
    for flag, value, limit, why in (
        ("--threads", threads, most, f"{MAX_THREADS_PER_CPU} per logical CPU of this machine"),
        ("--repeats", repeats, MAX_REPEATS, "more rounds do not steady the median further"),
    ):
        if value < 1:
            raise SpecError([Diagnostic(file=flag, message="must be at least 1")])
        if value > limit:
            message = f"{value:,} is more than the {limit:,} a profile uses ({why})"
            raise SpecError(
                [Diagnostic(file=flag, message=message, hint=f"e.g. {flag} {min(limit, 100)}")]
            )


def check_memory(plan: Plan) -> None:
    """Refuse, with the estimate, a size whose measurement cannot fit in the memory available
    (before anything is built): every node's input is computed for CALIBRATION_SAMPLES images
    at once, and an interpreter per node stays allocated while it is timed."""
    need = profile_bytes(plan_footprint(fuse_plan(plan, batch_norm=True)), CALIBRATION_SAMPLES)
    available = available_bytes()
    if available is None or need <= available * USABLE_FRACTION:
        return
    h, w, _ = plan.input_shape
    message = (
        f"profiling at {h}x{w} needs about {format_bytes(need)} of memory, and "
        f"{format_bytes(available)} is available (a profile takes at most "
        f"{USABLE_FRACTION:.0%} of it)"
    )
    hint = "use a smaller --input-size: activations grow with H x W"
    raise SpecError([Diagnostic(file="--input-size", message=message, hint=hint)])


def profile_plan(
    source: Any, overrides: list[str] | tuple[str, ...], input_size: tuple[int, int] | None
) -> tuple[Plan, tuple[int, int]]:
    """The plan to measure, at a static size: `input_size`, the spec's, or 224x224."""
    from ghostspec.plan.pipeline import plan as load_plan

    plan = load_plan(source, overrides)
    h, w, c = plan.input_shape
    if input_size is None:
        input_size = (h, w) if h is not None and w is not None else DEFAULT_SIZE
    if (h, w) != input_size:
        sized = [*overrides, f"input.shape=[{input_size[0]}, {input_size[1]}, {c}]"]
        plan = load_plan(source, sized)
    return plan, input_size


def owners(model: keras.Model, plan: Plan) -> dict[str, list[str]]:
    """Each plan node's layer names, in the model's (topological) order; a backbone's output
    layers (identities naming its feature maps) belong to none."""
    names = [n.name for n in plan.nodes]
    stem = next((n.name for n in plan.nodes if n.kind == "stem"), None)
    head = next((n.name for n in plan.nodes if n.kind == "head"), None)
    # a backbone's named maps
    outputs = {layer_name(tap.name) for tap in getattr(plan, "features", ())}
    owned: dict[str, list[str]] = {name: [] for name in names}
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer" or layer.name in outputs:
            continue
        name = reference_name(layer.name)
        owner = max(
            (n for n in names if name == n or name.startswith(f"{n}.")),
            key=len,
            default=None,
        )
        if owner is None and name in STEM_LAYERS:
            owner = stem
        if owner is None and name in HEAD_LAYERS:
            owner = head
        if owner is None:
            raise RuntimeError(f"layer {layer.name!r} belongs to no plan node")
        owned[owner].append(layer.name)
    return owned


def segments(model: keras.Model, plan: Plan) -> list[tuple[Node, keras.Model, Any]]:
    """One Keras model per plan node, from the previous node's output to its own; with the
    model's tensor that feeds it."""
    import keras

    owned = owners(model, plan)
    previous = model.inputs[0]
    result = []
    for node in plan.nodes:
        if not owned[node.name]:
            continue
        end = model.get_layer(owned[node.name][-1]).output
        piece = keras.Model(previous, end, name=layer_name(node.name))
        result.append((node, piece, previous))
        previous = end
    return result


def _tflite(
    model: keras.Model, shape: tuple[int, ...], quantize: str, samples: np.ndarray
) -> bytes:
    """The model as TFLite at a fixed batch-1 shape; int8 calibrated on `samples` (its inputs)."""
    import tensorflow as tf

    from ghostspec.deploy import export

    with tempfile.TemporaryDirectory(prefix="ghostspec-profile-") as scratch:
        directory = Path(scratch) / "model"
        export._savedmodel(model, shape, directory)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(directory))
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([s[None]] for s in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with contextlib.redirect_stdout(sys.stderr):
            return converter.convert()


class _Timed:
    """An interpreter with its input set, invoked and timed once per round."""

    def __init__(self, content: bytes, threads: int, value: np.ndarray) -> None:
        from ghostspec.deploy.tflite import tflite_interpreter

        self.interpreter = tflite_interpreter(content, threads=threads)  # allocated
        detail = self.interpreter.get_input_details()[0]
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(detail["index"], value.astype(detail["dtype"])[None])
        self.times: list[float] = []

    def invoke(self, record: bool) -> None:
        start = time.perf_counter()
        self.interpreter.invoke()
        elapsed = time.perf_counter() - start
        if record:
            self.times.append(elapsed * 1e3)

    def timing(self) -> Timing:
        p25, median, p75 = np.percentile(self.times, [25, 50, 75])
        return Timing(
            median_ms=float(median),
            p25_ms=float(p25),
            p75_ms=float(p75),
            min_ms=float(min(self.times)),
        )


def measure(
    source: Any,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    input_size: tuple[int, int] | None = None,
    threads: int = 1,
    quantize: str = "none",
    repeats: int = 100,
    progress: Any = None,
) -> Profile:
    """Profile a spec (path, registered name or Spec): build, fuse, convert, time."""
    require_tensorflow("profile (TFLite)")
    from ghostspec.keras.build import build
    from ghostspec.keras.fusion import fuse, plan_of

    check_settings(threads, repeats)
    plan, size = profile_plan(source, overrides, input_size)
    check_memory(plan)
    built = build(plan)
    deploy = fuse(built, plan, batch_norm=True)
    deploy_plan = plan_of(deploy, None) if deploy is not built else plan
    pieces = segments(deploy, deploy_plan)

    channels = plan.input_shape[2]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((CALIBRATION_SAMPLES, *size, channels)).astype(np.float32)
    import keras

    # every segment's input, computed once by the Keras deploy model (int8 calibration data)
    inner: list[Any] = []
    if len(pieces) > 1:
        boundaries = keras.Model(deploy.inputs[0], [feed for _, _, feed in pieces[1:]])
        inner = list(boundaries(images, training=False))
    inputs = [images, *(np.asarray(t) for t in inner)]

    timed: list[_Timed] = []
    for (node, piece, _), samples in zip(pieces, inputs, strict=True):
        if progress:
            progress(f"converting {node.name}")
        shape = (1, *samples.shape[1:])
        timed.append(_Timed(_tflite(piece, shape, quantize, samples), threads, samples[0]))
    if progress:
        progress("converting the whole network")
    whole = _Timed(_tflite(deploy, (1, *size, channels), quantize, images), threads, images[0])

    if progress:
        progress(f"timing {len(timed)} nodes and the whole network, {repeats} rounds")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for round_ in range(WARMUP + repeats):
        for item in (*timed, whole):
            item.invoke(record=round_ >= WARMUP)

    timings = [t.timing() for t in timed]
    total = sum(t.median_ms for t in timings) or 1.0
    return Profile(
        model=plan.name,
        form="deploy",
        input_size=size,
        quantize="int8" if quantize == "int8" else "none",
        threads=threads,
        repeats=repeats,
        cpu=cpu_name(),
        cpu_count=os.cpu_count(),
        load_average=load,
        params=deploy_plan.params,
        macs=deploy_plan.macs,
        whole=whole.timing(),
        segments=[
            Segment(
                name=node.name,
                kind=node.kind,
                output=node_row(node)["output"],
                params=node.params,
                macs=node.macs,
                time=timing,
                share=min(1.0, timing.median_ms / total),
            )
            for (node, _, _), timing in zip(pieces, timings, strict=True)
        ],
    )


def write_chart(profile: Profile, path: str | Path, inputs: Iterable[Any] = ()) -> None:
    """Bars of measured ms (with the interquartile range) and of MACs per node, side by side;
    `inputs`: files the command read, which the chart may not replace."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_target(path, tuple(CHART_FORMATS), "-o", inputs)
    names = [s.name for s in profile.segments]
    ms = np.array([s.time.median_ms for s in profile.segments])
    low = ms - np.array([s.time.p25_ms for s in profile.segments])
    high = np.array([s.time.p75_ms for s in profile.segments]) - ms
    macs = np.array([(s.macs or 0) / 1e6 for s in profile.segments])
    y = np.arange(len(names))

    figure = Figure(figsize=(10, 1.4 + 0.26 * len(names)), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, sharey=True)
    left.barh(y, ms, xerr=np.vstack([low, high]), color="#3b6e9c", ecolor="#1d3a55", capsize=2)
    left.set_xlabel("measured ms (median; bars: interquartile range)")
    right.barh(y, macs, color="#c0621b")
    right.set_xlabel("M multiply-adds")
    left.set_yticks(y, names, fontsize=8)
    left.invert_yaxis()
    for i, s in enumerate(profile.segments):
        left.text(ms[i] + high[i], i, f" {s.share:.0%}", va="center", fontsize=7)
    left.margins(x=0.1)
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    h, w = profile.input_size
    threads = f"{profile.threads} thread{'s' if profile.threads != 1 else ''}"
    quantize = "int8" if profile.quantize == "int8" else "fp32"
    figure.suptitle(
        f"{profile.model}: TFLite {quantize}, batch 1, {h}x{w}, {threads} on {profile.cpu}\n"
        f"whole network {format_ms(profile.whole.median_ms)} ms median, fastest "
        f"{format_ms(profile.whole.min_ms)} ms; nodes timed alone sum to "
        f"{format_ms(profile.segments_ms)} ms",
        fontsize=9,
    )
    fmt = CHART_FORMATS[Path(path).suffix.lower()]
    write_with(path, lambda temp: figure.savefig(temp, format=fmt, dpi=120), inputs=inputs)
