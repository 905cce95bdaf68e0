"""Emit a keras.Model from a Plan: one builder call per plan node, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from ghostspec.keras import blocks  # the module, not the package face
from ghostspec.plan.ir import Bottleneck, Classifier, ConvNode, Head, Plan

BUILDERS: dict[type, Callable[[Any, Any], Any]] = {
    ConvNode: blocks.conv_node,
    Bottleneck: blocks.bottleneck,
    Head: blocks.head,
    Classifier: blocks.classifier,
}


def build_model(plan: Plan) -> keras.Model:
    """A functional, channels-last keras.Model computing exactly the plan's network; for a
    feature extractor (`plan.features`), with a list of outputs, one feature map per tap.

    The graph is wired inside a `keras.StatelessScope`, which defers creating the variables until
    the scope closes. Created there, outside every layer's name scope, each TensorFlow variable
    gets the same short debug name ("kernel", "gamma", ...), so eager op kernels are reused instead
    of being instantiated once per variable: about half of the variable creation time. Variable
    paths (`layer/kernel`) and values are unchanged.
    """
    with keras.StatelessScope():
        inputs = keras.Input(shape=plan.input_shape, name="input")
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
            return keras.Model(inputs, x, name=plan.name)
        # A backbone: one named output per tap, in the spec's order (the names become the
        # output names of the model and of its exported signatures).
        outputs = [
            keras.layers.Identity(name=tap.name)(maps[(tap.node, tap.pre_norm)])
            for tap in plan.features
        ]
        return keras.Model(inputs, outputs, name=plan.name)
