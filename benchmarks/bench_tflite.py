"""TFLite batch-1 latency of specs/large.yaml against Keras' MobileNetV3Large, fp32 and int8.

Run from the repository root:
`python benchmarks/bench_tflite.py [--spec specs/ghostnetv2.yaml ...] [--rounds N] [--invokes N]`
(add `--ops` to print each artifact's operator mix).

Every model is converted in this process with ghostspec's own exporter (`export._tflite_bytes`:
Keras -> SavedModel -> TFLite), as fp32 and as full-integer int8 with int8 input and output,
calibrated on `random:32` (latency does not depend on what the calibration saw). ghostspec models
are converted in the form `ghostspec export` converts, `ghostspec.fuse(model, batch_norm=True)`:
the converter would fold the BatchNorms itself, and the deploy form also keeps ghost1's two halves
apart up to ghost2's primary conv, so that the wide concatenation is never made. The reference is
`keras.applications.MobileNetV3Large(weights=None, include_preprocessing=False)`: without its
Rescaling layer both models take the same already-normalised input, and the comparison is of the
networks alone (the rescale would add one MUL and one ADD over 224x224x3 to MobileNetV3Large).
MobileNetV3Large ends in a softmax over 1000 classes; ghostspec's large spec returns logits. Each
difference is well under 1% of the latency.

Latency is one `invoke()` at batch 1, 224x224, on the interpreter ghostspec itself uses
(`tflite.tflite_interpreter`, LiteRT with its default XNNPACK delegate) with 2 threads. After a
warm-up, the models are interleaved round by round (the order rotates each round) so that load
from other processes hits all of them alike; each invoke is timed on its own and the figure is the
median over all rounds. Goals: ghostspec large fp32 <= 0.8x MobileNetV3Large fp32, and each
model's int8 faster than its fp32. Nothing is asserted: it measures and prints.

After the table it lists, per artifact, the ops XNNPACK does not take (they run on TFLite's own
kernels and split the delegated graph, which costs most at 2 threads) and, for int8, ops that
produce float tensors (a float island between QUANTIZE/DEQUANTIZE) or only requantize int8.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "large.yaml"
REFERENCE = "MobileNetV3Large"
SHAPE = (1, 224, 224, 3)
THREADS = 2
CALIBRATION = "random:32"
WARMUP = 10
FORMATS = {"none": "fp32", "int8": "int8"}
GOAL_FP32 = 0.8


@dataclass
class Artifact:
    """One converted model and the interpreter that times it."""

    model: str
    quantize: str
    content: bytes
    interpreter: Any = None
    times: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} {FORMATS[self.quantize]}"

    def prepare(self) -> None:
        """Allocate, feed one fixed input (int8 models take it quantized) and warm up."""
        from ghostspec.deploy import tflite

        self.interpreter = tflite.tflite_interpreter(self.content, threads=THREADS)
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(detail["index"], x)
        for _ in range(WARMUP):
            self.interpreter.invoke()

    def run(self, invokes: int) -> None:
        invoke = self.interpreter.invoke
        for _ in range(invokes):
            start = time.perf_counter()
            invoke()
            self.times.append(time.perf_counter() - start)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3


def builders(specs: list[Path]) -> dict[str, Callable[[], Any]]:
    """Model name -> zero-argument builder; ghostspec large first, the reference last."""
    import keras

    import ghostspec

    found: dict[str, Callable[[], Any]] = {}
    for spec in [SPEC, *specs]:
        name = "ghostspec " + (spec.stem if spec != SPEC else "large")
        # what `ghostspec export` converts: the deploy form (BatchNorm folded, ghost halves split)
        found[name] = lambda spec=spec: ghostspec.fuse(ghostspec.build(spec), batch_norm=True)
    found[REFERENCE] = lambda: keras.applications.MobileNetV3Large(
        weights=None, input_shape=SHAPE[1:], include_preprocessing=False
    )
    return found


def convert(name: str, build: Callable[[], Any]) -> list[Artifact]:
    """fp32 and int8 TFLite bytes through ghostspec's exporter (SavedModel, then the converter)."""
    from ghostspec.deploy import export

    model = build()
    artifacts = []
    for quantize in FORMATS:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the converter prints calibration notes
            content = export._tflite_bytes(
                model, SHAPE, quantize, CALIBRATION, export.Preprocessing()
            )
        seconds = time.perf_counter() - start
        print(f"  converted {name} {FORMATS[quantize]}: {seconds:.0f} s", file=sys.stderr)
        artifacts.append(Artifact(name, quantize, content))
    return artifacts


@dataclass(frozen=True)
class OpReport:
    """What an artifact runs: its operators, those XNNPACK leaves to TFLite's own kernels, and
    in an int8 model the ops that produce float tensors or requantize int8 to another scale."""

    ops: collections.Counter[str]
    not_delegated: collections.Counter[str] | None
    float_ops: collections.Counter[str]
    requantize: int


def inspect_ops(artifact: Artifact) -> OpReport:
    """Read the op list from an interpreter of the class `tflite.tflite_interpreter` chose.

    With delegate node fusion off, XNNPACK replaces each op it takes by a DELEGATE node with the
    same outputs, so an op whose outputs no DELEGATE node produces is run by TFLite's own kernels
    (and splits the delegated graph).
    """
    kind = type(artifact.interpreter)
    try:
        interpreter = kind(
            model_content=artifact.content,
            num_threads=THREADS,
            experimental_disable_delegate_node_fusion=True,
        )
    except TypeError:  # pragma: no cover - an interpreter without that option
        interpreter = artifact.interpreter
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    delegated = {tuple(op["outputs"]) for op in ops if op["op_name"] == "DELEGATE"}
    own = [op for op in ops if op["op_name"] != "DELEGATE"]
    left = collections.Counter(op["op_name"] for op in own if tuple(op["outputs"]) not in delegated)
    floats: collections.Counter[str] = collections.Counter()
    requantize = 0
    if artifact.quantize == "int8":
        for op in own:
            if any(dtypes[i] == np.float32 for i in op["outputs"]):
                floats[op["op_name"]] += 1
            elif op["op_name"] == "QUANTIZE":  # int8 in, int8 out at another scale
                requantize += 1
    return OpReport(
        collections.Counter(op["op_name"] for op in own),
        left if interpreter is not artifact.interpreter else None,
        floats,
        requantize,
    )


def print_delegation(artifacts: list[Artifact], reports: dict[str, OpReport]) -> None:
    print("\nexecution (XNNPACK is the default delegate; ops it leaves split the graph)")
    for a in artifacts:
        r = reports[a.label]
        left = "unknown" if r.not_delegated is None else dict(r.not_delegated) or "none"
        line = f"  {a.label:<29} {sum(r.ops.values()):>4} ops, not delegated: {left}"
        if a.quantize == "int8":
            line += f"; float ops: {dict(r.float_ops) or 'none'}"
            if r.requantize:
                line += f"; int8 requantize: {r.requantize}"
        print(line)


def print_ops(artifacts: list[Artifact], reports: dict[str, OpReport]) -> None:
    counts = {a.label: reports[a.label].ops for a in artifacts}
    names = sorted(
        {op for c in counts.values() for op in c},
        key=lambda op: (-max(c[op] for c in counts.values()), op),
    )
    width = max(len(label) for label in counts)
    print("\noperator mix (ops in the flatbuffer)")
    print(f"  {'op':<20}" + "".join(f"{label:>{width + 2}}" for label in counts))
    for op in names:
        print(f"  {op:<20}" + "".join(f"{c[op]:>{width + 2}}" for c in counts.values()))
    print(f"  {'total':<20}" + "".join(f"{sum(c.values()):>{width + 2}}" for c in counts.values()))


def report(artifacts: list[Artifact]) -> None:
    by = {(a.model, a.quantize): a for a in artifacts}
    models = list(dict.fromkeys(a.model for a in artifacts))
    print(
        f"\n{'model':<22} {'format':<6} {'size MB':>8} {'median ms':>10} {'min ms':>8} "
        f"{'p90 ms':>8} {'n':>5}"
    )
    for a in artifacts:
        p90 = statistics.quantiles(a.times, n=10)[-1] * 1e3
        print(
            f"{a.model:<22} {FORMATS[a.quantize]:<6} {len(a.content) / 1e6:>8.2f} "
            f"{a.median_ms:>10.2f} {min(a.times) * 1e3:>8.2f} {p90:>8.2f} {len(a.times):>5}"
        )
    print("\nratios (of medians)")
    for model in models[:-1]:
        for quantize, fmt in FORMATS.items():
            ratio = by[model, quantize].median_ms / by[REFERENCE, quantize].median_ms
            print(f"  {model} / {REFERENCE} {fmt}: {ratio:.2f}x")
    for model in models:
        ratio = by[model, "int8"].median_ms / by[model, "none"].median_ms
        print(f"  {model} int8 / fp32: {ratio:.2f}x")

    ours = by["ghostspec large", "none"].median_ms / by[REFERENCE, "none"].median_ms
    print("\ngoals")
    verdict = "met" if ours <= GOAL_FP32 else "missed"
    print(f"  ghostspec large fp32 <= {GOAL_FP32}x {REFERENCE} fp32: {ours:.2f}x ({verdict})")
    for model in models:
        ratio = by[model, "int8"].median_ms / by[model, "none"].median_ms
        verdict = "met" if ratio < 1 else "missed"
        print(f"  {model} int8 faster than its fp32: {ratio:.2f}x ({verdict})")


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "not installed (tf.lite)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec",
        type=Path,
        action="append",
        default=[],
        help="another spec to include (repeatable), e.g. specs/ghostnetv2.yaml",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--invokes", type=int, default=30, help="invokes per model per round")
    parser.add_argument("--ops", action="store_true", help="print each artifact's operator mix")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"ai-edge-litert {litert_version()}, {os.cpu_count()} CPUs"
    )

    artifacts: list[Artifact] = []
    for name, build in builders(args.spec).items():
        artifacts.extend(convert(name, build))
    for artifact in artifacts:
        artifact.prepare()
    kind = type(artifacts[0].interpreter)
    print(
        f"interpreter {kind.__module__}.{kind.__name__}, {THREADS} threads, batch 1, "
        f"{SHAPE[1]}x{SHAPE[2]}; {args.rounds} rounds x {args.invokes} invokes per model, "
        f"after {WARMUP} warm-up invokes"
    )

    before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        shift = round_ % len(artifacts)
        for artifact in artifacts[shift:] + artifacts[:shift]:
            artifact.run(args.invokes)
    # Other processes share the CPUs with both threads; a load near the CPU count means noise.
    print(f"load average (1 min) {before:.2f} before timing, {os.getloadavg()[0]:.2f} after")
    report(artifacts)
    reports = {a.label: inspect_ops(a) for a in artifacts}
    print_delegation(artifacts, reports)
    if args.ops:
        print_ops(artifacts, reports)


if __name__ == "__main__":
    main()
