"""The deploy commands: export (SavedModel, TFLite, ONNX, parity-checked, int8 calibrated and
compared) and profile (TFLite latency of the deploy form, whole and node by node)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec.cli.exit_codes import EXIT_FAULT, EXIT_OK
from ghostspec.diagnostics import Diagnostic, SpecError

if TYPE_CHECKING:
    from ghostspec.plan.ir import Plan


def cmd_export(args: argparse.Namespace) -> int:
    if args.to == "keras-hub":
        return _export_keras_hub(args)
    from ghostspec.deploy import export
    from ghostspec.deploy.calibration import (
        DEFAULT_SAMPLES,
        DEFAULT_SOURCE,
        calibration_images,
        calibration_notice,
        parse_calibration,
    )
    from ghostspec.deploy.source import default_stem, saved_source

    for flag, value in (
        ("--batch", args.batch),
        ("--input-size", args.input_size),
        ("--calibration-samples", args.calibration_samples),
    ):
        if value is not None and min(value if isinstance(value, list) else [value]) < 1:
            raise SpecError([Diagnostic(file=flag, message="must be at least 1")])
    for flag, value in (
        ("--calibration", args.calibration),
        ("--calibration-samples", args.calibration_samples),
        ("--eval-data", args.eval_data),
        ("--val-split", args.val_split),
    ):
        if value is not None and args.quantize != "int8":
            raise SpecError([Diagnostic(file=flag, message="is only used with --quantize int8")])
    calibration = parse_calibration(args.calibration or DEFAULT_SOURCE)
    if args.calibration_samples is not None and calibration.folder is None:
        raise SpecError(
            [
                Diagnostic(
                    file="--calibration-samples",
                    message="counts images of a calibration folder; random:N gives its own count",
                    hint="drop it, or pass --calibration DIR",
                )
            ]
        )
    saved = saved_source(args.source)  # a run folder must hold best.keras: checked first
    suffix = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}[args.to]
    tag = "" if args.quantize == "none" else f"_{args.quantize}"

    def default_path(name: str) -> Path:
        return Path(
            f"{name}{tag}_savedmodel" if args.to == "savedmodel" else f"{name}{tag}{suffix}"
        )

    # every input, folders too: the artifact goes neither over one nor inside one
    inputs = (
        args.source,
        args.weights,
        None if saved is None else saved.path,
        calibration.folder,
        args.eval_data if args.quantize == "int8" else None,
    )
    stem = None if saved is None else default_stem(saved)
    output = Path(args.output) if args.output else None
    if output is None and stem is not None:
        output = default_path(stem)
    if output is not None:  # where the artifact goes is checked before any work
        export.check_artifact_path(args.to, output, inputs)
    # the calibration images and the images of the accuracy comparison, before any model
    images = None
    if args.quantize == "int8" and calibration.folder is not None:
        images = calibration_images(
            calibration.folder,
            samples=args.calibration_samples or DEFAULT_SAMPLES,
            seed=args.seed,
            val_split=args.val_split,
        )
    comparison = _comparison_data(args, images, saved)
    if output is not None:  # an image reached through a symlink or a hard link is an input too
        _check_against_images(output, images, comparison)
    samples = calibration.random or (0 if images is None else len(images.files))
    memory = None
    if saved is None:
        # spec and size errors, and exports that cannot fit in memory, before TensorFlow loads
        plan, note = _spec_export_plan(args)
        output = output or export.check_artifact_path(args.to, default_path(plan.name), inputs)
        _check_against_images(output, images, comparison)
        memory = export.plan_memory(
            plan, fuse=args.fuse, to=args.to, batch=args.batch, quantize=args.quantize
        )
        size = (plan.input_shape[0] or 0, plan.input_shape[1] or 0)  # fixed: planned at size
        notice = calibration_notice(samples, size)
        if args.quantize == "int8" and notice:
            print(notice, file=sys.stderr)
    model, built, name, pre, static, classes = _export_model(args, saved)
    if saved is not None:
        requested = (args.input_size[0], args.input_size[1]) if args.input_size else None
        size, note = export.export_size(requested, static, fixed=True, source=args.source)
        notice = calibration_notice(samples, size)
        if args.quantize == "int8" and notice:
            print(notice, file=sys.stderr)
    mapping = None
    if comparison is not None:  # the classes of model and data agree, before converting
        from ghostspec.deploy import quantized as quantized_eval

        if args.eval_data is None and not quantized_eval.is_classifier(built):
            comparison = None  # a backbone calibrated on a labelled folder: nothing to score
        else:
            mapping = quantized_eval.label_map(comparison, built, classes)
    if output is None:
        output = export.check_artifact_path(args.to, default_path(name), inputs)
        _check_against_images(output, images, comparison)
    try:
        result = export.export(
            model,
            args.to,
            output,
            input_size=size,
            batch=args.batch,
            quantize=args.quantize,
            calibration=images or args.calibration,
            preprocessing=pre,
            reference_model=built,
            memory=memory,
            classes=classes,
            name=name,
        )
    except export.ExportFault as fault:
        print(f"ghostspec: export failed: {fault}", file=sys.stderr)
        return EXIT_FAULT
    accuracy = None
    if comparison is not None and mapping is not None:
        accuracy = quantized_eval.compare(
            built,
            result.path.read_bytes(),
            comparison,
            mapping,
            size=size,
            mean=tuple(pre.mean),
            std=tuple(pre.std),
            crop_pct=pre.crop_pct,
        )
    if args.format == "json":
        print(json.dumps(_export_json(result, size, images, accuracy), indent=2))
        return EXIT_OK
    mib = result.size_bytes / 2**20
    print(
        f"wrote {result.path} ({args.to}, {args.quantize}, {size[0]}x{size[1]}{note}): "
        f"{mib:.2f} MiB; parity with Keras: {result.parity.line()}"
    )
    for output_name, parity in result.outputs:  # a backbone: each feature map on its own
        print(f"  {output_name}: {parity.line()}")
    if images is not None:
        print(
            f"  calibrated on {len(images.files)} of {images.available} images in {images.source}"
        )
    if accuracy is not None:
        print(f"  {accuracy.line()}")
    return EXIT_OK


def _export_keras_hub(args: argparse.Namespace) -> int:
    """A run folder or a .keras file as a keras-hub preset folder (ghostspec.hub.preset)."""
    from ghostspec.deploy.source import saved_source
    from ghostspec.hub import require_keras_hub

    require_keras_hub("--to keras-hub")
    from ghostspec.hub.preset import export_preset

    unused = {
        "--input-size": args.input_size,
        "--batch": args.batch,
        "--quantize": None if args.quantize == "none" else args.quantize,
        "--calibration": args.calibration,
        "--eval-data": args.eval_data,
        "--weights": args.weights,
        "--set": args.overrides or None,
    }
    problems = [
        Diagnostic(file=flag, message="does not apply to --to keras-hub")
        for flag, value in unused.items()
        if value is not None
    ]
    saved = saved_source(args.source)
    if saved is None:
        problems.append(
            Diagnostic(
                file=args.source,
                message="a keras-hub preset is made from a trained model: a run folder or a "
                ".keras file written by ghostspec",
                hint="for a spec, use ghostspec.hub.GhostNetBackbone(spec) in Python",
            )
        )
    if problems:
        raise SpecError(problems)
    assert saved is not None
    stem = saved.run.resolve().name if saved.run is not None else saved.path.stem
    output = export_preset(args.source, args.output or f"{stem}_keras_hub")
    print(f"wrote {output} (keras-hub preset: GhostNetBackbone, GhostNetImageClassifier)")
    return EXIT_OK


def _export_model(
    args: argparse.Namespace, saved: Any
) -> tuple[Any, Any, str, Any, tuple[int, int] | None, tuple[str, ...] | None]:
    """The model to export, the model as built or saved (the parity reference), its name, its
    preprocessing, its static input size and its class names (None when unknown)."""
    import ghostspec
    from ghostspec.deploy.export import Preprocessing

    if saved is not None:  # a run folder or a .keras file (ghostspec.deploy.source)
        if args.weights or args.overrides:
            raise SpecError(
                [
                    Diagnostic(
                        file=args.source,
                        message="--weights and --set apply to specs, not to a saved model",
                        hint="export the spec with --weights, or drop them",
                    )
                ]
            )
        from ghostspec.deploy.source import load_saved

        m = load_saved(saved, fuse=args.fuse)
        return m.model, m.reference, m.name, m.preprocessing, m.static, m.classes
    plan, _ = _spec_export_plan(args)
    built = ghostspec.build(plan, weights=args.weights)
    model = ghostspec.fuse(built, plan, batch_norm=True) if args.fuse else built
    h, w, _ = plan.input_shape
    pre = Preprocessing(mean=plan.mean, std=plan.std)
    return model, built, plan.name, pre, (None if h is None or w is None else (h, w)), None


def _spec_export_plan(args: argparse.Namespace) -> tuple[Plan, str]:
    """The plan of the spec at the size it is exported at (--input-size, else the spec's, else
    224x224), so the planner's size checks apply, and the summary line's note on the size."""
    import ghostspec
    from ghostspec.deploy.export import export_size
    from ghostspec.plan.checks import on_flag

    spec = ghostspec.load(args.source, args.overrides)
    h, w, _ = spec.input.shape
    requested = (args.input_size[0], args.input_size[1]) if args.input_size else None
    static = None if h is None or w is None else (h, w)
    size, note = export_size(requested, static, fixed=False, source=args.source)
    located = on_flag("--input-size" if requested else f"{args.source}: input.shape")
    return ghostspec.plan(args.source, args.overrides, input_size=size, size_from=located), note


def _comparison_data(args: argparse.Namespace, images: Any, saved: Any) -> Any:
    """The labelled images int8 and float top-1 are compared on (ghostspec.deploy.quantized):
    --eval-data, else the calibration folder when it has classes and the model was trained (a
    saved model, or a spec with --weights). None when there is nothing to compare on."""
    if args.quantize != "int8":
        return None
    from ghostspec.deploy import quantized as quantized_eval

    if args.eval_data is not None:
        return quantized_eval.eval_data(
            args.eval_data, flag="--eval-data", val_split=args.val_split, seed=args.seed
        )
    if images is None or not images.labelled or (saved is None and args.weights is None):
        return None
    return quantized_eval.eval_data(
        images.source, flag="--calibration", val_split=args.val_split, seed=args.seed
    )


def _check_against_images(output: Path, images: Any, comparison: Any) -> None:
    """The artifact is none of the images calibration or the accuracy comparison reads."""
    from ghostspec.files import check_not_an_input

    files = [] if images is None else list(images.files)
    files += [] if comparison is None else [s.path for s in comparison.checked.samples]
    if files:
        check_not_an_input(output, files)


def _export_json(result: Any, size: tuple[int, int], images: Any, accuracy: Any) -> dict[str, Any]:
    """The export's figures for tools: the artifact, its parity, the calibration, int8 top-1."""

    def parity(p: Any) -> dict[str, Any]:
        return {
            "max_abs_diff": p.max_abs_diff,
            "cosine": p.cosine,
            "top1_agreement": p.top1_agreement,
        }

    return {
        "path": str(result.path),
        "format": result.format,
        "quantize": result.quantize,
        "input_size": list(size),
        "size_bytes": result.size_bytes,
        "parity": parity(result.parity),
        "outputs": {name: parity(p) for name, p in result.outputs},
        "calibration": None
        if images is None
        else {"source": images.source, "images": len(images.files), "available": images.available},
        "int8_accuracy": None if accuracy is None else accuracy.to_json(),
    }


def cmd_profile(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.deploy import latency, profile
    from ghostspec.files import write_text

    profile.check_settings(args.threads, args.repeats)
    if args.input_size and min(args.input_size) < 1:
        raise SpecError([Diagnostic(file="--input-size", message="H and W must be at least 1")])
    inputs = [args.spec]  # neither output may replace the spec
    if args.output:
        profile.check_target(args.output, tuple(profile.CHART_FORMATS), "-o", inputs)
    if args.save:
        profile.check_target(args.save, (".json",), "--save", inputs)
    size = tuple(args.input_size) if args.input_size else None
    ghostspec.plan(args.spec, args.overrides)  # spec errors before TensorFlow loads
    result = profile.measure(
        args.spec,
        args.overrides,
        input_size=size,
        threads=args.threads,
        quantize=args.quantize,
        repeats=args.repeats,
        progress=lambda line: print(f"  {line}", file=sys.stderr),
    )
    notes = sys.stderr if args.format == "json" else sys.stdout
    if args.format == "json":
        sys.stdout.write(result.to_json())
    elif args.format == "markdown":
        print(latency.render_profile_markdown(result))
    else:
        print(latency.render_profile_table(result))
    if args.save:
        write_text(args.save, result.to_json(), inputs=inputs)
        print(
            f"wrote {args.save} (join it: ghostspec inspect SPEC --latency {args.save})", file=notes
        )
    if args.output:
        profile.write_chart(result, args.output, inputs)
        print(f"wrote {args.output}", file=notes)
    return EXIT_OK
