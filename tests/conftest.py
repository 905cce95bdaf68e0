"""The Keras backend a test run uses: `pytest --backend jax` (or KERAS_BACKEND), one per process.

Keras fixes its backend when it is first imported, so each backend runs in its own pytest
process. TensorFlow runs the whole suite; JAX and PyTorch run the tests marked
`backend_neutral` (the model path: build, fuse, weights, `.keras` files, backbones, named
constructors), and the other tests are deselected there. `.ci/run` runs all three.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

BACKENDS = ("tensorflow", "jax", "torch")
MARKER = "backend_neutral"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="the Keras backend of this run (default: KERAS_BACKEND, else tensorflow); "
        f"other than tensorflow, only the tests marked {MARKER} run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the test needs no TensorFlow-only feature; CI runs it on every backend",
    )
    config.addinivalue_line("markers", "inference: trains nothing (on PyTorch: no gradients)")
    backend = config.getoption("--backend") or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise pytest.UsageError(f"Keras was imported before --backend {backend} could apply")
    os.environ["KERAS_BACKEND"] = backend  # subprocesses the tests start inherit it too


@pytest.fixture(autouse=True)
def _inference_on_torch(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PyTorch, numpy refuses a tensor that needs gradients: tests marked `inference` (that
    read model outputs with numpy and train nothing) run as under torch.no_grad;
    `inference(False)` on a test of such a module undoes it."""
    marker = request.node.get_closest_marker("inference")
    if os.environ["KERAS_BACKEND"] != "torch" or marker is None or marker.args[:1] == (False,):
        yield
        return
    import torch

    with torch.no_grad():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        return
    keep = [item for item in items if item.get_closest_marker(MARKER)]
    dropped = [item for item in items if not item.get_closest_marker(MARKER)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"keras backend: {os.environ['KERAS_BACKEND']}"
