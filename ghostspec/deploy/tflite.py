"""Running a TFLite artifact on float32 batches: the one interpreter choice, int8 I/O
(de)quantized, at the model's own batch size. Export's parity checks, profile and predict use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

INPUT_NAME = "input"  # the input's name in every exported signature


def tflite_interpreter(content: bytes, threads: int | None = None) -> Any:
    """The one place that picks the TFLite interpreter (LiteRT when installed, else tf.lite),
    with its tensors allocated. XNNPACK, its default delegate, refuses some int8 graphs ("failed
    to prepare", depending on the weights' values); those run on the built-in kernels instead."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - depends on the environment
        from ghostspec.needs import require_tensorflow

        require_tensorflow("running a TFLite model")
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
        OpResolverType = tf.lite.experimental.OpResolverType
    interpreter = Interpreter(model_content=content, num_threads=threads)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as err:
        if "XNNPACK" not in str(err):
            raise
        interpreter = Interpreter(
            model_content=content,
            num_threads=threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(content: bytes, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run a TFLite model sample by sample at its own batch size, (de)quantizing int8 I/O."""
    return tflite_runner(content, threads)(batch)


def tflite_runner(content: bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A TFLite model as a function of float32 batches of any length: one interpreter, run at
    the model's own batch size (a last short chunk padded), int8 I/O (de)quantized."""
    interpreter = tflite_interpreter(content, threads)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    n = int(inp["shape"][0])
    return lambda batch: _run_interpreter(interpreter, inp, out, n, batch)


def _run_interpreter(interpreter: Any, inp: Any, out: Any, n: int, batch: np.ndarray) -> np.ndarray:
    results = []
    for start in range(0, len(batch), n):
        x = batch[start : start + n]
        short = n - len(x)
        if short:
            x = np.concatenate([x, np.zeros((short, *x.shape[1:]), x.dtype)])
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(np.array(y[: n - short], dtype=np.float32))
    return np.concatenate(results)


def run_tflite_named(content: bytes, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """Run a TFLite model with several outputs through its signature, sample by sample at its
    own batch size (int8 I/O (de)quantized), and return the outputs in the order of `names`."""
    runner = tflite_interpreter(content).get_signature_runner()
    inp = runner.get_input_details()[INPUT_NAME]
    details = runner.get_output_details()
    n = int(inp["shape"][0])
    results: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(batch), n):
        x = batch[start : start + n]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        out = runner(**{INPUT_NAME: x})
        for name in names:
            y = out[name]
            if details[name]["dtype"] == np.int8:
                scale, zero = details[name]["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            results[name].append(np.array(y, dtype=np.float32))
    return [np.concatenate(results[name]) for name in names]
