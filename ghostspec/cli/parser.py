"""The argument parser: every command, its flags and their help, in the order `--help` lists
them. Parsing only; the handlers live in the command-family modules."""

from __future__ import annotations

import argparse


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


def build_parser() -> argparse.ArgumentParser:
    """The `ghostspec` parser: the global flags and one subparser per command."""
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
        help="write a deployable artifact (SavedModel, TFLite, ONNX, keras-hub preset), "
        "parity-checked",
        parents=[verbose],
    )
    p.add_argument("source", metavar="SPEC|MODEL.keras|RUN_DIR")
    p.add_argument("--to", required=True, choices=["savedmodel", "tflite", "onnx", "keras-hub"])
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
        "--val-split",
        type=float,
        metavar="F",
        help="for DIR/<class>/*: the held-out fraction (default: a run's own, else 0.2)",
    )
    p.add_argument(
        "--seed", type=int, help="seed of the --val-split split (default: a run's own, else 0)"
    )
    p.add_argument(
        "--strict-data", action="store_true", help="stop at an unreadable image (default: skip)"
    )
    _add_overrides(p)

    _add_predict(commands, verbose)

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
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue although the image folder changed (metrics.csv notes it)",
    )
    p.add_argument("--weights", metavar="PATH", help="start from a reference state dict")
    _add_overrides(p)
    return parser


def _add_predict(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    verbose: argparse.ArgumentParser,
) -> None:
    p = commands.add_parser(
        "predict",
        help="top-k classes of images with a run folder, .keras, .tflite or .onnx model",
        parents=[verbose],
    )
    p.add_argument("model", metavar="MODEL", help="RUN_DIR, MODEL.keras, .tflite or .onnx")
    p.add_argument("images", nargs="+", metavar="IMAGE|DIR|GLOB", help="folders are walked")
    p.add_argument(
        "--top-k", type=int, metavar="K", help="classes per image (5, or all when fewer)"
    )
    p.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        help="default: from -o's suffix (.json, .csv), else table",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.txt, .json, .csv)")
    p.add_argument("--batch", type=int, default=32, metavar="N", help="images per batch (32)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: on a terminal, for long lists)",
    )


def _version() -> str:
    from ghostspec import __version__

    return f"ghostspec {__version__}"
