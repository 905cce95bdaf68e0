"""The commands on specs, recipes and sweeps that never load TensorFlow: validate, inspect, schema,
fmt, plot and list."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ghostspec.cli.exit_codes import EXIT_FAULT, EXIT_INVALID, EXIT_OK
from ghostspec.diagnostics import Diagnostic, SpecError, render_text

SCHEMA_LIMIT = 16 << 20  # a generated schema is about 50 kB


def _validate_one(path: str, args: argparse.Namespace) -> dict[str, object]:
    """Validate a spec or a recipe (told apart by the version key); its summary record."""
    import ghostspec
    from ghostspec.language.languages import LANGUAGES, RECIPE, SWEEP
    from ghostspec.language.source import detect_language

    # a registered model name is not a file: the spec loader resolves it (or says what is wrong)
    language = detect_language(path, LANGUAGES) if os.path.exists(path) else None
    if language is SWEEP:
        from ghostspec.language.sweep import load_sweep

        loaded = load_sweep(path, args.overrides)
        return {
            "file": path,
            "kind": "sweep",
            "name": loaded.sweep.name,
            "spec": loaded.spec_source,
            "decisions": len(loaded.sweep.space),
            "search": loaded.sweep.search,
            "trials": loaded.sweep.budget.trials,
        }
    if language is RECIPE:
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
    if v["kind"] == "sweep":
        name = f"{v['name']}, " if v["name"] else ""
        return (
            f"{v['file']}: ok (sweep {name}{v['decisions']} decisions over {v['spec']}, "
            f"{v['search']} search, {v['trials']} trials)"
        )
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
    from ghostspec.plan.checks import on_flag
    from ghostspec.views import report

    size = tuple(args.input_size) if args.input_size else None
    if size is not None and min(size) < 1:
        raise SpecError([Diagnostic(file="--input-size", message="H and W must be at least 1")])
    plan = ghostspec.plan(
        args.spec, args.overrides, input_size=size, size_from=on_flag("--input-size")
    )
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


SCHEMA_KINDS = ("spec", "recipe", "sweep")


def _schema_module(kind: str) -> Any:
    from ghostspec.language import recipe_schema, schema, sweep_schema

    return {"spec": schema, "recipe": recipe_schema, "sweep": sweep_schema}[kind]


def cmd_schema(args: argparse.Namespace) -> int:
    from ghostspec.files import write_text

    kind = "recipe" if args.recipe else "sweep" if args.sweep else "spec"
    if args.check:
        # without PATH, --recipe or --sweep, every committed schema is checked
        chosen = args.output or args.recipe or args.sweep
        kinds = [kind] if chosen else list(SCHEMA_KINDS)
        fresh = [
            _check_schema(
                Path(args.output or _schema_module(k).SCHEMA_PATH), _schema_module(k).render(), k
            )
            for k in kinds
        ]
        return EXIT_OK if all(fresh) else EXIT_FAULT
    text = _schema_module(kind).render()
    if args.output:
        check_schema_output(Path(args.output))
        write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check_schema(path: Path, text: str, kind: str) -> bool:
    """Whether the committed schema at `path` is `text`; says what to do when it is not."""
    from ghostspec.files import read_regular_file

    current = None
    if path.exists():  # a folder, pipe or huge file is bad input (SpecError), not a traceback
        try:
            current = read_regular_file(path, SCHEMA_LIMIT, "schema file").decode("utf-8")
        except UnicodeDecodeError:
            current = ""  # not the schema
    if current != text:
        flag = "" if kind == "spec" else f" --{kind}"
        state = "is missing" if current is None else f"differs from the {kind} models"
        print(
            f"{path} {state}; regenerate it with `ghostspec schema{flag} -o {path}` and commit it",
            file=sys.stderr,
        )
        return False
    print(f"{path}: up to date")
    return True


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
