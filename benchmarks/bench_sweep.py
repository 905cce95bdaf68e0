"""Cost-only sweep rate: variants costed per second from the plan, without TensorFlow.

Run: PYTHONPATH=. python benchmarks/bench_sweep.py [TRIALS]
A random sweep over width, SE, kernels and two stage depths of specs/large.yaml (mostly distinct
variants, so the per-variant cache does not flatter the figure).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = f"""ghostspec-sweep: 1
name: bench
spec: {ROOT / "specs" / "large.yaml"}
space:
  width: {{range: [0.5, 1.3], step: 0.05}}
  stages.3.*.2: {{choice: [0, 0.25]}}
  stages.4.*.2: {{choice: [0, 0.25]}}
  stages.6.*.2: {{choice: [0, 0.25]}}
  stages.2.0.4: {{choice: [3, 5]}}
  stages.3.0.4: {{choice: [3, 5]}}
  stages.5.0.4: {{choice: [3, 5]}}
  stages.8.*.4: {{choice: [3, 5]}}
  head.filters: {{choice: [640, 800, 960]}}
  stages.6: {{depth: [3, 4, 5, 6]}}
  stages.8: {{depth: [2, 3, 4]}}
constraints: {{macs: 150000000}}
objectives: {{macs: minimize, params: minimize}}
search: random
"""


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    from ghostspec.sweep import run

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SWEEP)
        start = time.perf_counter()
        result = run(path, output=Path(tmp) / "out", trials=trials, echo=lambda _: None)
        seconds = time.perf_counter() - start
    distinct = len({r.overrides for r in result.rows})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    print(
        f"{trials} variants ({distinct} distinct) in {seconds:.2f} s: "
        f"{trials / seconds:,.0f} variants/s end to end (outputs included); "
        f"TensorFlow or Keras imported: {bool(heavy)}"
    )


if __name__ == "__main__":
    main()
