"""ghostspec sweep: search a declared space of variants of one spec for the best trade-offs.

Takes: a sweep file (language/sweep.py), optionally an image folder. `space` turns decisions
into `--set`/`--hp` overrides, `costs` reads a variant's figures from its plan without any
framework, `trial` adds latency (deploy's profile) and training (the train room), `engine`
chooses the folder, costs cost-only sweeps and writes the outputs, `study` runs the local
Optuna study (persistent), `cluster` runs the trials on Ray (Tune with OptunaSearch).
Hands on: a SweepResult (rows and Pareto front) and SWEEP_DIR/ with results.csv, pareto.json,
pareto.png, best-N.yaml, the study's storage and trials/.
Never imports: TensorFlow or Keras for a cost-only sweep; the CLI or the package face.
"""

from ghostspec.sweep.engine import SweepResult, run
from ghostspec.sweep.results import Row, pareto_front

__all__ = ["Row", "SweepResult", "pareto_front", "run"]
