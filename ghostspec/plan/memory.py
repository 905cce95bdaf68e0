"""Memory estimates made from the plan before anything is built or allocated.

Sizes a user types (input size, batch) multiply every activation of the network, so a command
that allocates by them first asks here whether they fit in the memory this machine has free, and
refuses with the estimate otherwise. Export's parity check uses it today; training can size its
batches with the same footprint. Everything is float32. No TensorFlow import.

The counts follow the Keras backend's layers (`ghostspec.keras.blocks`): every conv, BatchNorm,
activation, padding, concatenation, slice, gate and add makes one tensor. Keras' eager functional
call keeps every layer's output until it returns (`total`); graph runtimes (TFLite, a SavedModel,
ONNX Runtime) free a tensor after its last use, so about one block is alive at a time (`peak`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ghostspec.plan.ir import (
    Bottleneck,
    Classifier,
    Conv,
    ConvBn,
    ConvNode,
    ConvOp,
    Dfc,
    GhostModule,
    Head,
    Plan,
    Size,
    SqueezeExcite,
)

FLOAT = 4  # bytes of a float32
GIB = 1 << 30
# Measured with benchmarks/export_memory.py: the resident memory of TensorFlow, the converter
# and a runtime beyond the tensors counted here (about 0.9 GiB; tf2onnx with ONNX Runtime adds
# about 0.6 GiB), and how many copies of the weights a conversion holds.
FRAMEWORK_BYTES = 5 * GIB // 4
ONNX_BYTES = 3 * GIB // 4
WEIGHT_COPIES = 8
RUNTIME_OVERHEAD = 1.5  # graph runtimes' arenas and scratch buffers, per counted tensor byte


@dataclass(frozen=True)
class Footprint:
    """Element counts of one sample's forward pass at one input size."""

    input: int  # one input sample
    total: int  # every layer output: what an eager Keras call holds at its end
    peak: int  # the most alive at once in a graph runtime (one block and its input)
    weights: int  # parameters and buffers

    def scaled(self, factor: float) -> Footprint:
        """The footprint at `factor` times the pixels (activations scale, weights do not)."""
        return Footprint(
            math.ceil(self.input * factor),
            math.ceil(self.total * factor),
            math.ceil(self.peak * factor),
            self.weights,
        )


def _area(size: Size) -> int:
    h, w = size
    if h is None or w is None:
        raise ValueError("memory estimates need a plan at a fixed input size")
    return h * w


def _conv(c: Conv) -> int:
    padding = 0
    if c.stride > 1 and any(c.padding_hw):  # an explicit ZeroPadding2D layer
        (h, w), (ph, pw) = c.in_size, c.padding_hw
        padding = _area((h + 2 * ph if h else h, w + 2 * pw if w else w)) * c.cin
    return padding + _area(c.out_size) * c.cout


def _conv_bn(op: ConvBn) -> int:
    out = _area(op.conv.out_size) * op.conv.cout
    layers = int(op.bn is not None) + int(op.bn is not None and op.activation != "linear")
    return _conv(op.conv) + layers * out


def _conv_op(op: ConvOp) -> int:
    if isinstance(op, ConvBn):
        return _conv_bn(op)
    out = _area(op.fused.out_size) * op.fused.cout
    parts = [*op.branches, *([op.scale] if op.scale else [])]
    count = sum(_conv_bn(p) for p in parts) + (out if op.skip else 0)
    summed = len(parts) + int(op.skip is not None) > 1
    return count + out * (int(summed) + int(op.activation != "linear"))


def _dfc(d: Dfc, cout: int) -> int:
    pooled = _area(d.pooled_size)
    convs = sum(_conv_bn(op) for op in (d.conv, d.horizontal, d.vertical))
    # pool, gate, the upsampling's concatenations and reshapes (2x then 4x the pooled map), scale
    return pooled * d.conv.conv.cin + convs + pooled * cout * (1 + 12) + _area(d.in_size) * cout


def _ghost(m: GhostModule) -> int:
    size = _area(m.primary.conv.out_size)
    made = m.primary.conv.cout + m.cheap.conv.cout
    count = _conv_op(m.primary) + _conv_op(m.cheap) + size * made
    if made != m.cout:
        count += size * m.cout
    if m.attention is not None:
        count += _dfc(m.attention, m.cout)
    return count


def _se(se: SqueezeExcite, size: int) -> int:
    return 2 * se.channels + se.reduced + size * se.channels


def node_activations(node: ConvNode | Bottleneck | Head | Classifier) -> int:
    """Elements of every tensor the Keras backend makes for one sample in `node`."""
    if isinstance(node, ConvNode):
        return _conv_op(node.op)
    if isinstance(node, Bottleneck):
        count = _ghost(node.ghost1) + _ghost(node.ghost2)
        if node.conv_dw is not None:
            count += _conv_op(node.conv_dw)
        if node.se is not None:
            count += _se(node.se, _area(node.out_size))
        for part in node.shortcut or ():
            count += _conv_bn(part)
        return count + _area(node.out_size) * node.cout
    if isinstance(node, Head):
        return node.cin + 2 * node.cout
    return 2 * node.cin + node.cout


# Activations of nodes already counted, by the node's id (the node is kept so the id stays its
# own): a sweep's plans share nodes through lowering's memo.
ActivationMemo = dict[int, tuple[ConvNode | Bottleneck | Head | Classifier, int]]


def _activations(node: ConvNode | Bottleneck | Head | Classifier, memo: ActivationMemo) -> int:
    known = memo.get(id(node))
    if known is not None and known[0] is node:
        return known[1]
    count = node_activations(node)
    memo[id(node)] = (node, count)
    return count


def plan_footprint(plan: Plan, memo: ActivationMemo | None = None) -> Footprint:
    """The footprint of a plan with a fixed input size (plan it with `input_size=`); `memo` (kept
    by the caller) counts a node shared by many plans once."""
    h, w, c = plan.input_shape
    if h is None or w is None:
        raise ValueError("memory estimates need a plan at a fixed input size")
    if memo is None:
        sizes = [node_activations(node) for node in plan.nodes]
    else:
        sizes = [_activations(node, memo) for node in plan.nodes]
    inputs = [h * w * c, *(_node_output(n) for n in plan.nodes[:-1])]
    peak = max(i + s for i, s in zip(inputs, sizes, strict=True))
    return Footprint(h * w * c, h * w * c + sum(sizes), peak, plan.params + plan.buffers)


def _node_output(node: ConvNode | Bottleneck | Head | Classifier) -> int:
    h, w = node.out_size
    return (h or 1) * (w or 1) * node.cout


# ---------------------------------------------------------------------------------- available


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, or less if a cgroup limit is lower.
    None where neither can be read (then nothing is refused)."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isascii() and limit.isdigit() and used.isascii() and used.isdigit():
            found.append(int(limit) - int(used))
    except OSError:
        pass
    override = os.environ.get("GHOSTSPEC_MEMORY_LIMIT", "")
    if override.isascii() and override.isdigit():  # for a shared machine: a budget of one's own
        found.append(int(override))
    return min(found) if found else None


def format_bytes(count: float) -> str:
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{count / (1 << 20):.0f} MiB"


# ------------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportMemory:
    """How export checks parity within memory: `samples` random inputs, run through the Keras
    model `chunk` at a time (eagerly, or as one traced graph when `graph`, which frees each
    layer's output after its last use), and the estimated peak memory of the whole export."""

    samples: int
    chunk: int
    graph: bool
    bytes: int


PARITY_SAMPLES = 8
COMFORT_BYTES = GIB  # the parity inputs, and one Keras call, stay under this where they can
USABLE_FRACTION = 0.8  # of the memory available: estimates are estimates, and others need some


def export_memory(
    reference: Footprint,
    artifact: Footprint,
    *,
    batch: int | None,
    to: str,
    quantize: str,
    available: int | None,
) -> tuple[ExportMemory, bool]:
    """The parity check for an export, and whether it fits in `available` bytes (None: no
    limit). `reference` is the model Keras runs (as built), `artifact` the exported one.

    Up to 8 samples, in whole batches of a fixed-batch artifact, fewer where the inputs alone
    would pass 1 GiB; Keras runs them in calls of at most 1 GiB, eagerly (no tracing) or, where
    that cannot fit, as a traced graph; then fewer samples. If nothing fits: the smallest check
    and False."""
    unit = batch or 1  # a fixed-batch artifact runs whole batches only
    fixed = batch is not None or to == "tflite"
    most = unit * max(1, math.ceil(PARITY_SAMPLES / unit))
    most = min(most, unit * max(1, COMFORT_BYTES // (unit * reference.input * FLOAT)))
    smallest = None
    for samples in range(most, unit - 1, -unit):
        for graph in (False, True):
            per_sample = FLOAT * (reference.peak * RUNTIME_OVERHEAD if graph else reference.total)
            widest = min(samples, max(1, int(COMFORT_BYTES // per_sample)))
            for chunk in sorted({widest, 1}, reverse=True):
                run_batch = unit if fixed else chunk
                smallest = _export_bytes(
                    reference, artifact, samples, chunk, graph, run_batch, to, quantize
                )
                if available is None or smallest.bytes <= available:
                    return smallest, True
    assert smallest is not None
    return smallest, False


def _export_bytes(
    reference: Footprint,
    artifact: Footprint,
    samples: int,
    chunk: int,
    graph: bool,
    run_batch: int,
    to: str,
    quantize: str,
) -> ExportMemory:
    keras_pass = chunk * FLOAT * (reference.peak * RUNTIME_OVERHEAD if graph else reference.total)
    run = run_batch * artifact.peak * FLOAT * RUNTIME_OVERHEAD
    convert: float = WEIGHT_COPIES * artifact.weights * FLOAT
    if quantize == "int8":  # the calibrator runs the float model one sample at a time
        convert += artifact.total * FLOAT * RUNTIME_OVERHEAD
    total = (
        FRAMEWORK_BYTES
        + (ONNX_BYTES if to == "onnx" else 0)
        + 2 * reference.weights * FLOAT  # the model as built and its deploy form
        + 2 * samples * reference.input * FLOAT  # the inputs, and their copy in a runtime
        + max(keras_pass, run, convert)
    )
    return ExportMemory(samples, chunk, graph, int(total))


# ------------------------------------------------------------------------------------ profile


def profile_bytes(deploy: Footprint, samples: int) -> int:
    """The peak memory of `ghostspec profile` for the deploy form's footprint: `samples` images
    through the eager Keras model at once (every node's input, kept as calibration data), one
    interpreter per node and one for the whole network allocated together, and the converter's
    copies of the weights."""
    return int(
        FRAMEWORK_BYTES
        + (2 + WEIGHT_COPIES) * deploy.weights * FLOAT
        + samples * (deploy.input + deploy.total) * FLOAT
        + (deploy.total + deploy.peak) * FLOAT * RUNTIME_OVERHEAD
    )
