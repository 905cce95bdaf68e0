"""keras-hub's own test battery for vision backbones, run on GhostNetBackbone exactly as
keras-hub's backbone tests call it (resnet_backbone_test.py, mobilenet_backbone_test.py), on the
backend of the run (conftest's `--backend`, else KERAS_BACKEND; each backend in its own process):

    for b in tensorflow jax torch; do
        python -m pytest --backend $b tests/test_hub_backbone.py tests/test_hub_tasks.py
    done

The battery checks the config round trip, eager and compiled predict, tf.data predict, the name,
mixed precision, int8/float8 quantization, the pyramid's keys and sizes, and (where keras-hub
runs it: not on TensorFlow's CPU) the same again with "channels_first".
"""

from __future__ import annotations

import pytest

pytest.importorskip("keras_hub")

from keras import ops
from keras_hub.src.tests import test_case

from ghostspec.hub import GhostNetBackbone

pytestmark = pytest.mark.backend_neutral  # conftest: every backend runs these

# Five stride-2 steps, so the pyramid has P1..P5 at 64x64 input: 32, 16, 8, 4, 2.
TINY = """\
ghostspec: 1
name: tiny_pyramid
input: {shape: [64, 64, 3]}
width: 0.5
stem: {filters: 16, kernel: 3, stride: 2}
stages:
  - [[16, 16, 0, 1, 3]]
  - [[48, 24, 0, 2, 3]]
  - [[72, 40, 0.25, 2, 5]]
  - [[120, 48, 0, 2, 3]]
  - [[160, 64, 0.25, 2, 3]]
head: {filters: 96, hidden: 128, dropout: 0.1, classes: 4}
"""


class GhostNetBackboneTest(test_case.TestCase):
    test_session = None  # tf.test.TestCase's helper, not a test

    def setUp(self):
        self.init_kwargs = {"spec": TINY, "image_shape": (64, 64, 3)}
        self.input_data = ops.ones((2, 64, 64, 3))

    def test_backbone_basics(self):
        self.run_vision_backbone_test(
            cls=GhostNetBackbone,
            init_kwargs=self.init_kwargs,
            input_data=self.input_data,
            expected_output_shape=(2, 2, 2, 48),
            expected_pyramid_output_keys=["P1", "P2", "P3", "P4", "P5"],
            expected_pyramid_image_sizes=[(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)],
        )

    def test_backbone_v2_any_size(self):
        # GhostNetV2's DFC attention, with any input size (its one custom layer in the graph).
        self.run_vision_backbone_test(
            cls=GhostNetBackbone,
            init_kwargs={
                "spec": TINY,
                "overrides": ["ghost.attention=dfc", "ghost.attention_from=1"],
                "image_shape": (None, None, 3),
            },
            input_data=self.input_data,
            expected_output_shape=(2, 2, 2, 48),
            expected_pyramid_output_keys=["P1", "P2", "P3", "P4", "P5"],
            expected_pyramid_image_sizes=[(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)],
        )

    def test_saved_model(self):
        self.run_model_saving_test(
            cls=GhostNetBackbone,
            init_kwargs=self.init_kwargs,
            input_data=self.input_data,
        )
