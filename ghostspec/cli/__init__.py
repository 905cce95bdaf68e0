"""The command line: parse arguments, call the phases, print. No logic of its own.

argparse rather than typer: `validate` must start in well under half a second, and typer with
click costs about 0.15 s of imports on its own; rich is imported only where a table is drawn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec.diagnostics import Diagnostic, SpecError, render_json, render_text

if TYPE_CHECKING:
    from ghostspec.plan.ir import Plan

EXIT_OK, EXIT_FAULT, EXIT_INVALID = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cmd | head -1` reports for other Unix tools
# Commands that load TensorFlow: their terminal is kept quiet (ghostspec.quiet).
TENSORFLOW_COMMANDS = frozenset({"build", "export", "profile", "evaluate", "train"})
SCHEMA_LIMIT = 16 << 20  # a generated schema is about 50 kB


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every temporary file is removed on the way out."""


def _add_overrides(
    parser: argparse.ArgumentParser, flag: str = "--set", dest: str = "overrides"
) -> None:
    """--set for spec values; --hp (dest hyperparameters) for recipe values."""
    example = (
        "a spec value, e.g. --set width=1.3 --set stages.0.0.3=2"
        if flag == "--set"
        else "a recipe value, e.g. --hp epochs=3 --hp optimizer.lr=0.05"
    )
    parser.add_argument(
        flag,
        dest=dest,
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help=f"override {example} (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostspec",
        description="Compile declarative GhostNet-family specs (YAML or JSON) into Keras 3 models.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own start-up and log output (or set GHOSTSPEC_VERBOSE=1)",
    )
    verbose = argparse.ArgumentParser(add_help=False)  # `build --verbose` works too
    verbose.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "validate", help="check specs and recipes and report every problem with its place"
    )
    p.add_argument("specs", nargs="+", metavar="SPEC|RECIPE")
    _add_overrides(p)
    _add_overrides(p, "--hp", "hyperparameters")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = commands.add_parser("inspect", help="print the resolved network: one row per node")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="cost at this size")
    p.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    p.add_argument(
        "--latency",
        metavar="PROFILE.json",
        help="add measured ms per node from a saved profile (ghostspec profile --save)",
    )
    _add_overrides(p)

    p = commands.add_parser("schema", help="print, write or check the editor JSON Schemas")
    p.add_argument("-o", "--output", metavar="PATH", help="write the schema to PATH")
    p.add_argument(
        "--recipe", action="store_true", help="the training-recipe schema instead of the spec's"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a committed schema is stale: PATH, or both schemas/ghostspec.schema.json "
        "and schemas/ghostspec-recipe.schema.json",
    )

    p = commands.add_parser(
        "fmt", help="rewrite specs and recipes in the canonical layout, comments kept"
    )
    p.add_argument("specs", nargs="+", metavar="SPEC|RECIPE")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any would")

    p = commands.add_parser("plot", help="draw the network block by block (SVG or PNG)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", required=True, metavar="arch.svg|arch.png")
    _add_overrides(p)

    p = commands.add_parser(
        "export",
        help="write a deployable artifact (SavedModel, TFLite, ONNX), parity-checked",
        parents=[verbose],
    )
    p.add_argument("source", metavar="SPEC|MODEL.keras|RUN_DIR")
    p.add_argument("--to", required=True, choices=["savedmodel", "tflite", "onnx"])
    p.add_argument(
        "-o", "--output", metavar="PATH", help="default: named after the model (or the run)"
    )
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--batch", type=int, metavar="N", help="fixed batch size (TFLite default 1)")
    p.add_argument("--quantize", choices=["none", "fp16", "int8"], default="none")
    p.add_argument(
        "--calibration",
        metavar="DIR|random:N",
        help="int8 representative data: a folder of images, or an image folder (DIR/train/<class>"
        "/*, DIR/<class>/*) whose train split is used",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        metavar="N",
        help="images drawn from the calibration folder (default 200)",
    )
    p.add_argument(
        "--eval-data",
        metavar="DIR",
        help="int8: compare int8 and float top-1 on this image folder's val split (default: the "
        "--calibration folder when it has class folders)",
    )
    p.add_argument(
        "--val-split", type=float, metavar="F", help="for DIR/train without DIR/val: the val share"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration draw and split")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--weights", metavar="PATH", help="reference state dict to load (specs only)")
    p.add_argument(
        "--fuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold BatchNorm and GhostNetV3 training branches into the convs first "
        "(specs only; default: on)",
    )
    _add_overrides(p)

    p = commands.add_parser(
        "profile",
        help="measure TFLite latency of the deploy form, whole and node by node",
        parents=[verbose],
    )
    p.add_argument("spec", metavar="SPEC|NAME")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: 224 224")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads (1)")
    p.add_argument("--quantize", choices=["none", "int8"], default="none")
    p.add_argument("--repeats", type=int, default=100, metavar="N", help="timed rounds (100)")
    p.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    p.add_argument("-o", "--output", metavar="profile.png", help="bar chart (.png or .svg)")
    p.add_argument("--save", metavar="PROFILE.json", help="write it for inspect --latency")
    _add_overrides(p)

    p = commands.add_parser("list", help="the registered models: a name works wherever SPEC does")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = commands.add_parser(
        "evaluate",
        help="top-1, top-5, loss and per-class accuracy on an image folder",
        parents=[verbose],
    )
    p.add_argument("source", metavar="SPEC|MODEL.keras|RUN_DIR")
    p.add_argument("--data", required=True, metavar="DIR", help="image folder (see README)")
    p.add_argument("--weights", metavar="PATH", help="reference state dict to load (specs only)")
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--confusion", metavar="confusion.png", help="also draw the confusion matrix")
    p.add_argument("--batch-size", type=int, default=64, metavar="N")
    p.add_argument(
        "--val-split", type=float, metavar="F", help="for DIR/<class>/*: the held-out fraction"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --val-split split")
    p.add_argument(
        "--strict-data", action="store_true", help="stop at an unreadable image (default: skip)"
    )
    _add_overrides(p)

    p = commands.add_parser(
        "build", help="compile a spec into a Keras model file (.keras)", parents=[verbose]
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="OUT.keras", help="default: <spec name>.keras")
    p.add_argument("--weights", metavar="PATH", help="reference state dict to load")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _add_overrides(p)

    p = commands.add_parser(
        "train",
        help="train a spec on an image folder with a recipe; writes a run folder",
        parents=[verbose],
    )
    p.add_argument("spec", nargs="?", metavar="SPEC", help="the spec (not with --resume)")
    p.add_argument(
        "--data", metavar="DIR", help="DIR/train/<class>/*, DIR/val/<class>/*; or DIR/<class>/*"
    )
    p.add_argument(
        "--recipe", metavar="FILE|NAME", help="a recipe file, or finetune (default) or imagenet"
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe value, e.g. --hp epochs=3 --hp optimizer.lr=0.05 (repeatable)",
    )
    p.add_argument("--epochs", type=int, metavar="N", help="the same as --hp epochs=N")
    p.add_argument(
        "--batch-size", type=int, metavar="N", help="global batch size (--hp batch_size=N)"
    )
    p.add_argument(
        "--val-split", type=float, metavar="F", help="hold out this fraction of train/ as val"
    )
    p.add_argument("--strict-data", action="store_true", help="stop at an unreadable image")
    p.add_argument(
        "--strategy",
        choices=["auto", "one", "mirrored", "multiworker"],
        help="tf.distribute strategy (--hp strategy=...; multiworker reads TF_CONFIG)",
    )
    p.add_argument(
        "--devices",
        metavar="DEV[,DEV]",
        help="devices for one/mirrored, e.g. --devices gpu:0,gpu:1 (default: every GPU)",
    )
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="default: runs/<spec name>-<n>")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last epoch")
    p.add_argument("--weights", metavar="PATH", help="start from a reference state dict")
    _add_overrides(p)
    return parser


def _version() -> str:
    from ghostspec import __version__

    return f"ghostspec {__version__}"


def _validate_one(path: str, args: argparse.Namespace) -> dict[str, object]:
    """Validate a spec or a recipe (told apart by the version key); its summary record."""
    import ghostspec
    from ghostspec.language.languages import LANGUAGES, RECIPE
    from ghostspec.language.source import detect_language

    # a registered model name is not a file: the spec loader resolves it (or says what is wrong)
    if Path(path).exists() and detect_language(path, LANGUAGES) is RECIPE:
        from ghostspec.language.recipe import load_recipe

        recipe = load_recipe(path, args.hyperparameters)
        return {
            "file": path,
            "kind": "recipe",
            "name": recipe.name,
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
            "optimizer": recipe.optimizer.kind,
            "lr": recipe.scaled_lr,
        }
    plan = ghostspec.plan(path, args.overrides)
    return {
        "file": path,
        "kind": "spec",
        "name": plan.name,
        "blocks": len(plan.blocks),
        "params": plan.params,
    }


def _summary(v: dict[str, Any]) -> str:
    if v["kind"] == "recipe":
        name = f"{v['name']}, " if v["name"] else ""
        return (
            f"{v['file']}: ok (recipe {name}{v['epochs']} epochs, batch {v['batch_size']}, "
            f"{v['optimizer']} at lr {v['lr']:g})"
        )
    return f"{v['file']}: ok ({v['name']}, {v['blocks']} blocks, {v['params']:,} parameters)"


def cmd_validate(args: argparse.Namespace) -> int:
    problems: list[Diagnostic] = []
    valid = []
    for path in args.specs:
        try:
            valid.append(_validate_one(path, args))
        except SpecError as err:
            problems.extend(err.diagnostics)
    if args.format == "json":
        print(
            json.dumps({"valid": valid, "diagnostics": [d.to_json() for d in problems]}, indent=2)
        )
    else:
        for v in valid:
            print(_summary(v))
        if problems:
            print(render_text(problems), file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.views import report

    size = tuple(args.input_size) if args.input_size else None
    if size is not None and min(size) < 1:
        raise SpecError([Diagnostic(file="--input-size", message="H and W must be at least 1")])
    plan = ghostspec.plan(args.spec, args.overrides, input_size=size)
    accepts = plan.input_shape
    if plan.macs is None:  # any input size: cost it at the reference size instead of not at all
        from ghostspec.plan.ir import reference_size

        with contextlib.suppress(SpecError):  # no room at that size: --input-size it is
            at = reference_size(plan.input_shape[:2])
            plan = ghostspec.plan(args.spec, args.overrides, input_size=at)
    if args.latency:
        return _inspect_latency(args, plan)
    if args.format == "json":
        print(json.dumps(report.plan_report(plan, accepts), indent=2))
    elif args.format == "markdown":
        print(report.render_markdown(plan, accepts))
    else:
        print(report.render_table(plan, accepts))
    return EXIT_OK


def _check_schema(path: Path, text: str, recipe: bool) -> bool:
    """Whether the committed schema at `path` is `text`; says what to do when it is not."""
    from ghostspec.files import read_regular_file

    current = None
    if path.exists():  # a folder, pipe or huge file is bad input (SpecError), not a traceback
        try:
            current = read_regular_file(path, SCHEMA_LIMIT, "schema file").decode("utf-8")
        except UnicodeDecodeError:
            current = ""  # not the schema
    if current != text:
        models, flag = ("recipe", " --recipe") if recipe else ("spec", "")
        state = "is missing" if current is None else f"differs from the {models} models"
        print(
            f"{path} {state}; regenerate it with `ghostspec schema{flag} -o {path}` and commit it",
            file=sys.stderr,
        )
        return False
    print(f"{path}: up to date")
    return True


def _inspect_latency(args: argparse.Namespace, plan: object) -> int:
    from ghostspec.deploy import latency

    profile = latency.read_profile(args.latency)
    if args.format == "json":
        print(json.dumps(latency.joined_report(plan, profile), indent=2))  # type: ignore[arg-type]
    elif args.format == "markdown":
        print(latency.render_joined_markdown(plan, profile))  # type: ignore[arg-type]
    else:
        print(latency.render_joined_table(plan, profile))  # type: ignore[arg-type]
    return EXIT_OK


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


def cmd_schema(args: argparse.Namespace) -> int:
    from ghostspec.files import write_text
    from ghostspec.language import recipe_schema, schema

    modules = {False: schema, True: recipe_schema}
    if args.check:
        # without PATH or --recipe, both committed schemas are checked
        which = [args.recipe] if (args.output or args.recipe) else [False, True]
        fresh = [
            _check_schema(Path(args.output or modules[r].SCHEMA_PATH), modules[r].render(), r)
            for r in which
        ]
        return EXIT_OK if all(fresh) else EXIT_FAULT
    text = modules[args.recipe].render()
    if args.output:
        check_schema_output(Path(args.output))
        write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def check_schema_output(path: Path) -> None:
    """`schema -o` writes JSON, and replaces only a previous JSON Schema: never a spec."""
    from ghostspec.files import check_output, read_regular_file

    check_output(path, suffixes=(".json",), what="schema file")
    if not path.exists():
        return
    try:
        current = json.loads(read_regular_file(path, SCHEMA_LIMIT, "schema file"))
    except (SpecError, ValueError, RecursionError):
        current = None
    if not (isinstance(current, dict) and "$schema" in current):
        raise SpecError(
            [
                Diagnostic(
                    file=str(path),
                    message="exists and is not a JSON Schema; ghostspec replaces only a "
                    "previous schema file",
                    hint="choose another output path, e.g. -o schemas/ghostspec.schema.json",
                )
            ]
        )


def cmd_fmt(args: argparse.Namespace) -> int:
    from ghostspec.files import write_text
    from ghostspec.language.fmt import format_text
    from ghostspec.language.languages import LANGUAGES
    from ghostspec.language.reading import read_text
    from ghostspec.language.source import detect_language

    problems: list[Diagnostic] = []
    changed = []
    for spec in args.specs:
        try:
            text = read_text(Path(spec), detect_language(spec, LANGUAGES))
            formatted = format_text(text, spec)
            if formatted != text and not args.check:
                write_text(spec, formatted)  # through a symlink, keeping the file's mode
        except SpecError as err:
            problems.extend(err.diagnostics)
            continue
        if formatted == text:
            continue
        changed.append(spec)
    verb = "would reformat" if args.check else "reformatted"
    for spec in changed:
        print(f"{verb} {spec}")
    unchanged = len(args.specs) - len(changed) - len({d.file for d in problems})
    print(f"{len(changed)} file(s) {verb}, {unchanged} unchanged")
    if problems:
        print(render_text(problems), file=sys.stderr)
        return EXIT_INVALID
    return EXIT_FAULT if (args.check and changed) else EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.files import check_output
    from ghostspec.views.plot import plot_plan

    check_output(args.output, inputs=[args.spec])
    plan = ghostspec.plan(args.spec, args.overrides)
    plot_plan(plan, args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from ghostspec.views import catalog as registry

    records = registry.catalog()
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        print(registry.render_catalog(records))
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.files import check_output
    from ghostspec.keras.modelfile import save_model_file

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
    save_model_file(model, output, inputs=inputs)
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

    spec = ghostspec.load(args.source, args.overrides)
    h, w, _ = spec.input.shape
    requested = (args.input_size[0], args.input_size[1]) if args.input_size else None
    static = None if h is None or w is None else (h, w)
    size, note = export_size(requested, static, fixed=False, source=args.source)
    return ghostspec.plan(args.source, args.overrides, input_size=size), note


def cmd_export(args: argparse.Namespace) -> int:
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

    inputs = (args.source, args.weights, None if saved is None else saved.path)
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
    samples = calibration.random or (0 if images is None else len(images.files))
    memory = None
    if saved is None:
        # spec and size errors, and exports that cannot fit in memory, before TensorFlow loads
        plan, note = _spec_export_plan(args)
        output = output or export.check_artifact_path(args.to, default_path(plan.name), inputs)
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
    output = output or export.check_artifact_path(args.to, default_path(name), inputs)
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


def cmd_train(args: argparse.Namespace) -> int:
    from ghostspec.train import Interrupted, train

    hp = list(args.hp)
    hp += [] if args.epochs is None else [f"epochs={args.epochs}"]
    hp += [] if args.batch_size is None else [f"batch_size={args.batch_size}"]
    try:
        train(
            args.spec,
            args.data,
            args.recipe,
            overrides=args.overrides,
            hp=hp,
            val_split=args.val_split,
            strict_data=args.strict_data,
            output=args.output,
            resume=args.resume,
            weights=args.weights,
            strategy=args.strategy,
            devices=[d.strip() for d in (args.devices or "").split(",") if d.strip()],
        )
    except Interrupted as stop:
        terminated = isinstance(stop.signal, Terminated)
        print(
            f"ghostspec: {'terminated' if terminated else 'interrupted'} after {stop.epoch} "
            f"completed epoch(s); resume with: ghostspec train --resume {stop.run_dir}",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ghostspec import evaluate

    inputs = [args.source, args.weights]
    confusion = evaluate.check_png_target(args.confusion, inputs) if args.confusion else None
    result = evaluate.evaluate(
        args.source,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        weights=args.weights,
        overrides=args.overrides,
        val_split=args.val_split,
        seed=args.seed,
        strict=args.strict_data,
    )
    if confusion is not None:
        evaluate.write_confusion(result, confusion)
    if args.format == "json":
        print(evaluate.render_json(result))
    else:
        print(evaluate.render_table(result, f"{args.source} on {args.data} ({args.split})"))
        if confusion is not None:
            print(f"wrote {confusion}")
    return EXIT_OK


COMMANDS = {
    "validate": cmd_validate,
    "inspect": cmd_inspect,
    "schema": cmd_schema,
    "fmt": cmd_fmt,
    "plot": cmd_plot,
    "profile": cmd_profile,
    "list": cmd_list,
    "build": cmd_build,
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "train": cmd_train,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 a ghostspec fault, 2 invalid input)."""
    _tolerant_streams()
    return _dispatch(_parser().parse_args(argv))


def _tolerant_streams() -> None:
    """A file name that is not valid in the terminal's encoding (PYTHONIOENCODING=utf-8:strict
    and a Latin-1 name) is printed with escapes instead of crashing the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; a reader that closed the pipe (`ghostspec inspect ... | head -1`) ends
    it quietly, like other Unix tools, instead of with a traceback."""
    try:
        return _handled(args)
    except BrokenPipeError:
        _discard_output()
        return EXIT_BROKEN_PIPE


def _handled(args: argparse.Namespace) -> int:
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SpecError as err:
        if getattr(args, "format", "text") == "json":
            print(render_json(err.diagnostics))
        else:
            print(render_text(err.diagnostics), file=sys.stderr)
        return EXIT_INVALID
    except Terminated:
        print("ghostspec: terminated; nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("ghostspec: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception:
        traceback.print_exc()
        print(
            "ghostspec: internal error (the traceback above). This is a bug in ghostspec, not in "
            "your input; please report it with the command you ran.",
            file=sys.stderr,
        )
        return EXIT_FAULT


def _discard_output() -> None:
    """Point descriptors 1 and 2 at /dev/null, so the flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _finish(code: int) -> None:
    """Exit with `code`. The command is over: from here a signal takes its default action (the
    process ends at once, as the shell expects) instead of raising into TensorFlow's clean-up,
    which prints "Exception ignored" with a traceback."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    sys.exit(code)


def main() -> None:
    """The `ghostspec` command: SIGTERM cleans up like Ctrl-C, and the commands that load
    TensorFlow print only their own output unless --verbose or GHOSTSPEC_VERBOSE asks."""
    from ghostspec import quiet

    _tolerant_streams()
    signal.signal(signal.SIGTERM, _terminate)
    args = _parser().parse_args()
    try:
        if args.command in TENSORFLOW_COMMANDS and not quiet.verbose_requested(args.verbose):
            with quiet.quiet_tensorflow():
                code = _dispatch(args)
        else:
            code = _dispatch(args)
    except Terminated:  # after the command's own handling (while the terminal is restored)
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    _finish(code)
