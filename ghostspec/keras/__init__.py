"""The Keras 3 backend: a Plan becomes a functional keras.Model built from standard layers.

Takes: a Plan. `model` and `blocks` build the functional model; `fusion` folds the deploy form;
`weights` reads and writes reference state dicts (`torchfile` reads .pth without torch);
`modelfile` is the one .keras reader and writer (checked before any framework loads); `build`
joins the front phases to the builder.
Hands on: a keras.Model, its weights, and .keras files with ghostspec's metadata.
Never imports: TensorFlow, the training, data, deploy or views rooms, or the package face.

The model uses no custom layers, no Lambda and no tf.* calls (only `keras.layers` and
`keras.ops`, so it runs on every Keras backend), so a saved `.keras` file loads with
plain `keras.saving.load_model` in a process that never imports ghostspec. Two exceptions load
after `import ghostspec.keras.layers` (see there): GhostNetV2's attention with a dynamic input
size, and models built on JAX, whose depthwise convs are computed tap by tap.

Layer names are deterministic and derived from the plan, which keeps the reference (timm / Huawei)
module names as the contract for state dicts. A layer's name is its reference module's name with
every "." written "-" (`plan.ir.layer_name`), because PyTorch forbids dots in module and parameter
names; reference names hold no "-", so `plan.ir.reference_name` maps back. The conv of
`blocks.3.0.ghost1.primary_conv.0.weight` is the layer `blocks-3-0-ghost1-primary_conv-0`, its
BatchNorm `blocks-3-0-ghost1-primary_conv-1`. Layers without weights take the reference module's
name where the reference has one (`act1`, `blocks-3-0-ghost1-primary_conv-2`, `global_pool`,
`flatten`), otherwise a role under their owner's prefix: `<conv>-pad` (symmetric padding of a
strided conv), `<ghost>-concat`, `<ghost>-slice`, `<se>-pool`, `<se>-scale`, `<block>-add`,
`classifier-dropout`. A block's output is its `<block>-add` layer. Convolutions that are not
followed by BatchNorm (the SE convs, `conv_head`) and the classifier carry their activation
(SE activation and gate, head activation, softmax) inside the layer rather than as a layer of
their own. `.keras` files written before (dotted names) still load, on TensorFlow and JAX, and
their weights map: the weight code looks a layer up by either name.

GhostNetV2's DFC attention lives under its reference name `<ghost>-short_conv` (`-0` to `-5` are
its convs and BatchNorms) with `-pool`, `-gate`, `-repeat_cols`/`-cols`/`-repeat_rows`/`-rows`
(every row and column twice), `-edge1`/`-extend1` and `-edge2`/`-extend2` (the extra first
row/column of PyTorch's nearest rule on odd sizes) and `-scale`. GhostNetV3's training-time
branches keep their reference names (`<ghost>-primary_rpr_conv-0-conv`, `<ghost>-cheap_rpr_skip`,
`<block>-dw_rpr_scale-bn1`, ...); their sum is `<deploy conv>-sum`, e.g. `blocks-1-0-conv_dw-sum`.
A fused (deploy) plan gives the v1 names with a bias on each conv.

The layout follows Keras' `image_data_format()` when the model is built: channels-first models
take and return (N, C, H, W) tensors. Kernels are laid out alike in both, so reference weights
load either way. Nothing here imports TensorFlow: the model path runs on JAX and PyTorch without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model"]


def __getattr__(name: str) -> Any:
    # Keras loads only when a model is built: the .keras reader (modelfile) checks a file's
    # archive and metadata before any framework is imported, and it lives in this room.
    if name == "build_model":
        from ghostspec.keras.model import build_model

        return build_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
