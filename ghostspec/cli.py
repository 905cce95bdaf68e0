"""The command line: parse arguments, call the phases, print. No logic of its own.

argparse rather than typer: `validate` must start in well under half a second, and typer with
click costs about 0.15 s of imports on its own; rich is imported only where a table is drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from ghostspec.diagnostics import Diagnostic, SpecError, render_json, render_text

EXIT_OK, EXIT_FAULT, EXIT_INVALID = 0, 1, 2


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a spec value, e.g. --set width=1.3 --set stages.0.0.3=2 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostspec",
        description="Compile declarative GhostNet-family specs (YAML or JSON) into Keras 3 models.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("validate", help="check specs and report every problem with its place")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    _add_overrides(p)
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = commands.add_parser("inspect", help="print the resolved network: one row per node")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="cost at this size")
    p.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    _add_overrides(p)

    p = commands.add_parser("schema", help="print, write or check the editor JSON Schema")
    p.add_argument("-o", "--output", metavar="PATH", help="write the schema to PATH")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed schema (PATH, or schemas/ghostspec.schema.json) is stale",
    )

    p = commands.add_parser("fmt", help="rewrite specs in the canonical layout, comments kept")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any would")

    p = commands.add_parser("plot", help="draw the network block by block (SVG or PNG)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", required=True, metavar="arch.svg|arch.png")
    _add_overrides(p)

    p = commands.add_parser("build", help="compile a spec into a Keras model file (.keras)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="OUT.keras", help="default: <spec name>.keras")
    p.add_argument("--weights", metavar="PATH", help="reference state dict to load")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _add_overrides(p)
    return parser


def _version() -> str:
    from ghostspec import __version__

    return f"ghostspec {__version__}"


def cmd_validate(args: argparse.Namespace) -> int:
    import ghostspec

    problems: list[Diagnostic] = []
    valid = []
    for spec in args.specs:
        try:
            plan = ghostspec.plan(spec, args.overrides)
        except SpecError as err:
            problems.extend(err.diagnostics)
            continue
        valid.append(
            {"file": spec, "name": plan.name, "blocks": len(plan.blocks), "params": plan.params}
        )
    if args.format == "json":
        print(
            json.dumps({"valid": valid, "diagnostics": [d.to_json() for d in problems]}, indent=2)
        )
    else:
        for v in valid:
            print(
                f"{v['file']}: ok ({v['name']}, {v['blocks']} blocks, {v['params']:,} parameters)"
            )
        if problems:
            print(render_text(problems), file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec import report

    size = tuple(args.input_size) if args.input_size else None
    if size is not None and min(size) < 1:
        raise SpecError([Diagnostic(file="--input-size", message="H and W must be at least 1")])
    plan = ghostspec.plan(args.spec, args.overrides, input_size=size)
    if args.format == "json":
        print(json.dumps(report.plan_report(plan), indent=2))
    elif args.format == "markdown":
        print(report.render_markdown(plan))
    else:
        print(report.render_table(plan))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from ghostspec import schema
    from ghostspec.files import write_text

    text = schema.render()
    if args.check:
        path = Path(args.output or schema.SCHEMA_PATH)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "is missing" if current is None else "differs from the spec models"
            print(
                f"{path} {state}; regenerate it with `ghostspec schema -o {path}` and commit it",
                file=sys.stderr,
            )
            return EXIT_FAULT
        print(f"{path}: up to date")
        return EXIT_OK
    if args.output:
        write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from ghostspec.files import write_text
    from ghostspec.fmt import format_text
    from ghostspec.source import read_text

    problems: list[Diagnostic] = []
    changed = []
    for spec in args.specs:
        try:
            text = read_text(Path(spec))
            formatted = format_text(text, spec)
        except SpecError as err:
            problems.extend(err.diagnostics)
            continue
        if formatted == text:
            continue
        changed.append(spec)
        if not args.check:
            write_text(spec, formatted)
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
    from ghostspec.plot import plot_plan

    plan = ghostspec.plan(args.spec, args.overrides)
    plot_plan(plan, args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    import ghostspec
    from ghostspec.files import write_with

    plan = ghostspec.plan(args.spec, args.overrides)
    output = Path(args.output or f"{plan.name}.keras")
    if output.suffix != ".keras":
        raise SpecError(
            [
                Diagnostic(
                    file=str(output), message="the output must end in .keras", hint="-o x.keras"
                )
            ]
        )
    model = ghostspec.build(plan, weights=args.weights)
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
    write_with(output, lambda temp: model.save(temp))
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
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    macs = "-" if plan.macs is None else f"{plan.macs / 1e6:.1f} M"
    shape = "x".join("?" if v is None else str(v) for v in plan.input_shape)
    print(f"built {plan.name}: input {shape}, output {tuple(plan.output_shape)}")
    print(
        f"  parameters {trainable:,} (+ {statistics:,} BatchNorm running statistics = "
        f"{model.count_params():,}, Keras' count_params), {macs} multiply-adds"
    )
    if args.weights:
        print(f"  weights from {args.weights}")
    print(f"  wrote {output}")
    return EXIT_OK


COMMANDS = {
    "validate": cmd_validate,
    "inspect": cmd_inspect,
    "schema": cmd_schema,
    "fmt": cmd_fmt,
    "plot": cmd_plot,
    "build": cmd_build,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 a ghostspec fault, 2 invalid input)."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as err:
        if getattr(args, "format", "text") == "json":
            print(render_json(err.diagnostics))
        else:
            print(render_text(err.diagnostics), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("ghostspec: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            "ghostspec: internal error (the traceback above). This is a bug in ghostspec, not in "
            "your input; please report it with the command you ran.",
            file=sys.stderr,
        )
        return EXIT_FAULT


def main() -> None:
    sys.exit(run())
