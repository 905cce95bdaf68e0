"""`ghostspec sweep`: a thin face over the sweep room (ghostspec.sweep)."""

from __future__ import annotations

import argparse

from ghostspec.cli.exit_codes import EXIT_OK
from ghostspec.diagnostics import Diagnostic, SpecError


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.trials is not None and args.trials < 1:
        raise SpecError([Diagnostic(file="--trials", message="must be at least 1")])
    if args.sweep is None and args.resume is None:
        raise SpecError(
            [Diagnostic(file="sweep", message="name a sweep file, or --resume SWEEP_DIR")]
        )
    from ghostspec.sweep import run

    run(
        args.sweep,
        data=args.data,
        output=args.output,
        resume=args.resume,
        trials=args.trials,
        engine=args.engine,
        overrides=args.overrides,
        storage=args.storage,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
    )
    return EXIT_OK
