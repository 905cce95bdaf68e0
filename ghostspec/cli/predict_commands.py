"""The predict command: top-k classes of images with a trained or exported model, as a table,
json or csv, on stdout or into a file (`ghostspec.predictor` does the work)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ghostspec.cli.exit_codes import EXIT_OK
from ghostspec.diagnostics import Diagnostic, SpecError


def cmd_predict(args: argparse.Namespace) -> int:
    from ghostspec import predictor
    from ghostspec.files import check_output, write_with

    for flag, value in (("--top-k", args.top_k), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise SpecError([Diagnostic(file=flag, message=f"{value}: must be at least 1")])
    fmt = predictor.output_format(args.format, args.output)
    predictor.check_model_argument(args.model)  # before the images are walked
    images = predictor.collect_images(args.images)
    target = None
    if args.output:  # checked before the model loads: never an input, never in an input folder
        run_folder = [args.model] if os.path.isdir(args.model) else []
        target = check_output(
            args.output,
            inputs=(*predictor.model_inputs(args.model), *images.files),
            suffixes=(predictor.FORMAT_SUFFIXES[fmt],),
            what=f"{fmt} output",
            folders=(*images.folders, *run_folder),
        )
    model, top_k = predictor.load_model(args.model, args.top_k)
    for problem in images.problems:
        print(problem.render(), file=sys.stderr)
    with _progress_bar(len(images.files), args.progress) as advance:
        result = predictor.predict_images(
            model, images, top_k=top_k, batch=args.batch, progress=advance
        )
    for problem in result.skipped:
        print(problem.render(), file=sys.stderr)
    text = predictor.RENDERERS[fmt](result)
    notes = sys.stderr if target is None else sys.stdout
    if target is None:
        print(text)
    else:
        data = (text + "\n").encode("utf-8", "surrogateescape")  # file names as they were
        write_with(target, lambda temp: _write(temp, data))
        print(f"wrote {target} ({len(result.records)} images, top-{top_k} each)")
    skipped = len(result.skipped) + len(images.problems)
    skipped_text = f"; {skipped} skipped (named above)" if skipped else ""
    count = len(result.records)
    print(
        f"predicted {count} image{'s' if count != 1 else ''} with {result.model} in "
        f"{result.seconds:.2f} s ({result.rate:.0f} images/s){skipped_text}",
        file=notes,
    )
    return EXIT_OK


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@contextmanager
def _progress_bar(total: int, wanted: bool | None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (rich) when it is a terminal or --progress asks, for lists
    longer than a few batches; nothing otherwise (--no-progress, pipes, logs)."""
    show = sys.stderr.isatty() and total > 64 if wanted is None else wanted
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as progress:
        task = progress.add_task("predicting", total=total)
        yield lambda n: progress.advance(task, n)
