"""The commands on trained models: train (a spec on an image folder with a recipe, into a run
folder) and evaluate (top-1, top-5, loss and per-class accuracy)."""

from __future__ import annotations

import argparse
import sys

from ghostspec.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, Terminated


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
            allow_data_change=args.allow_data_change,
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

    inputs = [args.source, args.weights, args.data]  # folders too: nothing is written inside them
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
        confusion=confusion,
    )
    if confusion is not None:
        evaluate.write_confusion(result, confusion, inputs)
    if args.format == "json":
        print(evaluate.render_json(result))
    else:
        print(evaluate.render_table(result, f"{args.source} on {args.data} ({args.split})"))
        if confusion is not None:
            print(f"wrote {confusion}")
    return EXIT_OK
