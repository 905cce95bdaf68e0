"""The Ray engine's entry: Ray is an optional extra, and its absence is said in one line.

Trials on a Ray cluster (Ray Tune with Optuna's search, retried when a worker dies) are not in
this version: the local engine runs every sweep. What is here is the contract the CLI keeps:
`--engine ray` without Ray names the extra to install and exits 2.
"""

from __future__ import annotations

from ghostspec.diagnostics import Diagnostic, SpecError

EXTRA = "pip install 'ghostspec[sweep]'"


def require_ray() -> None:
    """Ray Tune importable, or a SpecError naming the extra."""
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError:
        raise SpecError(
            [
                Diagnostic(
                    file="--engine ray",
                    message=f"Ray Tune is not installed; {EXTRA} adds it",
                )
            ]
        ) from None


def run_ray() -> None:
    require_ray()
    raise SpecError(
        [
            Diagnostic(
                file="--engine ray",
                message="the Ray engine is not available in this version",
                hint="run the sweep with --engine local",
            )
        ]
    )
