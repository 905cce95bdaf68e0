"""Emit a keras.Model from a Plan: one builder call per plan node, in order."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras

from ghostspec.keras import blocks  # the module, not the package face
from ghostspec.plan.ir import Bottleneck, Classifier, ConvNode, Head, Plan, layer_name

BUILDERS: dict[type, Callable[[Any, Any], Any]] = {
    ConvNode: blocks.conv_node,
    Bottleneck: blocks.bottleneck,
    Head: blocks.head,
    Classifier: blocks.classifier,
}


@contextlib.contextmanager
def image_data_format(data_format: str | None) -> Iterator[str]:
    """Keras' image layout for the layers built inside (the current one when None)."""
    previous = keras.config.image_data_format()
    if data_format is None or data_format == previous:
        yield previous
        return
    keras.config.set_image_data_format(data_format)
    try:
        yield data_format
    finally:
        keras.config.set_image_data_format(previous)


def data_format_of(model: Any) -> str:
    """The layout a ghostspec model was built in: its convolutions'."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            return str(layer.data_format)
    return str(keras.config.image_data_format())


def build_model(plan: Plan, data_format: str | None = None) -> keras.Model:
    """A functional keras.Model computing exactly the plan's network; for a feature extractor
    (`plan.features`), with a list of outputs, one feature map per tap.

    The layout is `data_format`, by default Keras' `image_data_format()`: with "channels_first"
    the model takes and returns (N, C, H, W) tensors, the same function with the same weights.

    The graph is wired inside a `keras.StatelessScope`, which defers creating the variables until
    the scope closes. Created there, outside every layer's name scope, each TensorFlow variable
    gets the same short debug name ("kernel", "gamma", ...), so eager op kernels are reused instead
    of being instantiated once per variable: about half of the variable creation time. Variable
    paths (`layer/kernel`) and values are unchanged.
    """
    with image_data_format(data_format) as layout, keras.StatelessScope():
        h, w, c = plan.input_shape
        shape = (c, h, w) if layout == "channels_first" else (h, w, c)
        inputs = keras.Input(shape=shape, name="input")
        x = inputs
        pre_norm = {tap.node for tap in plan.features if tap.pre_norm}
        maps: dict[tuple[str, bool], Any] = {}  # (node, pre_norm) -> tensor, for the taps
        for node in plan.nodes:
            if node.name in pre_norm:
                assert isinstance(node, ConvNode)
                x, maps[(node.name, True)] = blocks.conv_node_pre_norm(x, node)
            else:
                x = BUILDERS[type(node)](x, node)
            maps[(node.name, False)] = x
        if not plan.features:
            return keras.Model(inputs, x, name=layer_name(plan.name))
        # A backbone: one named output per tap, in the spec's order (the names become the
        # output names of the model and of its exported signatures).
        outputs = [
            keras.layers.Identity(name=layer_name(tap.name))(maps[(tap.node, tap.pre_norm)])
            for tap in plan.features
        ]
        return keras.Model(inputs, outputs, name=layer_name(plan.name))
