"""The build command: compile a spec into a Keras model file (.keras), weights loaded,
parameter counts checked against the plan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ghostspec.cli.exit_codes import EXIT_FAULT, EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.files import check_output
    from ghostspec.keras.modelfile import save_model_file

    spec = ghostspec.load(args.spec, args.overrides)
    plan = ghostspec.plan(args.spec, args.overrides)
    output = Path(args.output or f"{plan.name}.keras")
    inputs = [args.spec, args.weights]
    check_output(output, inputs=inputs, suffixes=(".keras",), what="model file")  # before building
    model = ghostspec.build(plan)
    skipped: tuple[str, ...] = ()
    if args.weights:
        from ghostspec.keras.weights import load_weights

        skipped = load_weights(model, plan, args.weights)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    statistics = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    if trainable != plan.params or statistics != plan.buffers:
        print(
            f"ghostspec: internal error: the model has {trainable:,} trainable parameters and "
            f"{statistics:,} BatchNorm statistics, but the plan says {plan.params:,} and "
            f"{plan.buffers:,}. This is a bug in ghostspec; please report it with your spec.",
            file=sys.stderr,
        )
        return EXIT_FAULT
    save_model_file(model, output, _metadata(spec, plan, args), inputs=inputs)
    summary = {
        "name": plan.name,
        "input_shape": [None, *plan.input_shape],
        "output_shape": [None, *plan.output_shape],
        "params": trainable,
        "batchnorm_statistics": statistics,
        "keras_count_params": model.count_params(),
        "macs": plan.macs,
        "weights": args.weights,
        "output": str(output),
    }
    if plan.features:
        summary["features"] = [{"name": t.name, "shape": [None, *t.shape]} for t in plan.features]
        summary["skipped_tensors"] = len(skipped)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    macs = "-" if plan.macs is None else f"{plan.macs / 1e6:.1f} M"
    shape = "x".join("?" if v is None else str(v) for v in plan.input_shape)
    if plan.features:
        maps = ", ".join(f"{t.name} {'x'.join(map(str, t.shape))}" for t in plan.features)
        print(f"built {plan.name}: input {shape}, outputs {maps}".replace("None", "?"))
    else:
        print(f"built {plan.name}: input {shape}, output {tuple(plan.output_shape)}")
    print(
        f"  parameters {trainable:,} (+ {statistics:,} BatchNorm running statistics = "
        f"{model.count_params():,}, Keras' count_params), {macs} multiply-adds"
    )
    if args.weights:
        print(f"  weights from {args.weights}")
    if skipped:
        from ghostspec.keras.weights import skipped_note

        print(f"  note: {skipped_note(args.weights, skipped)}")
    print(f"  wrote {output}")
    return EXIT_OK


def _metadata(spec: Any, plan: Any, args: argparse.Namespace) -> Any:
    """What the .keras file records besides Keras' config: the resolved spec (so the model can
    be fused and exported from the file alone, GhostNetV3's branches too), mean, std and, for a
    fixed-size spec, the input size."""
    from ghostspec.keras.modelfile import ModelMetadata
    from ghostspec.language.fmt import resolved_spec_text

    sets = " ".join(f"--set {o}" for o in args.overrides)
    note = f"resolved by ghostspec build from {args.spec}{' ' + sets if sets else ''}"
    h, w, _ = plan.input_shape
    return ModelMetadata(
        mean=tuple(plan.mean),
        std=tuple(plan.std),
        input_size=None if h is None or w is None else (int(h), int(w)),
        spec=resolved_spec_text(spec, note),
    )
