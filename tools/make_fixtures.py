r"""Write reference fixtures for ghostspec's weight-porting parity tests, using timm.

Why this exists: ghostspec's Keras models must load timm's GhostNet state dicts and reproduce
timm's logits. The test suite must not depend on torch, so this script runs the reference once
and stores, per fixture, a randomised state dict (``<name>.safetensors``, timm's key names), a
fixed input with the reference logits (``<name>.npz``, input NHWC) and a ``manifest.json``.

Regenerate (torch lives in a throw-away venv outside the repo, never in the project's .venv)::

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install \
        torch==2.14.1 torchvision==0.29.1 timm safetensors numpy
    /tmp/refenv/bin/python tools/make_fixtures.py

Weights are randomised rather than pretrained (no model hub is reachable, and random BatchNorm
statistics expose layout mistakes that fresh mean-0/var-1 statistics would hide).

Feature fixtures (``<name>_features.npz``, for the backbone form ``head: {features: [...]}``) reuse
a fixture's committed state dict: on one fixed input they store timm's ``features_only=True``
outputs (``timm_<level>``) and, through forward hooks on the classifier, the output of the last
bottleneck at each reduction (``last_<level>``; level = log2 of the reduction). Only those are
rewritten, from the committed weights, by::

    /tmp/refenv/bin/python tools/make_fixtures.py --features
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.utils.model import reparameterize_model
from torch import nn

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SEED = 20240611
CALIB_SEED_OFFSET = 1
INPUT_SEED_OFFSET = 2
BIAS_STD = 0.1

# Totals stated in /work/shared/reference/ghostnet.md, checked against timm on every run.
DOC_PARAMS = {
    "ghostnet_050": 2_587_292,
    "ghostnet_100": 5_182_508,
    "ghostnet_130": 7_358_820,
    "ghostnetv2_100": 6_156_908,
    "ghostnetv2_130": 8_960_404,
    "ghostnetv2_160": 12_392_698,
    "ghostnetv3_100": 8_129_028,
    "ghostnetv3_100_fused": 6_147_588,
}
DOC_MACS_M = {
    "ghostnet_050": 42.3,
    "ghostnet_100": 141.2,
    "ghostnet_130": 227.0,
    "ghostnetv2_100": 167.1,
    "ghostnetv2_130": 269.3,
    "ghostnetv2_160": 398.6,
}
WIDTHS = {
    "ghostnet_050": 0.5,
    "ghostnet_100": 1.0,
    "ghostnet_130": 1.3,
    "ghostnetv2_100": 1.0,
    "ghostnetv2_130": 1.3,
    "ghostnetv2_160": 1.6,
    "ghostnetv3_100": 1.0,
}


@dataclass(frozen=True)
class Fixture:
    """One fixture: which timm model, how many classes, and the NHWC input shape."""

    name: str
    model: str
    num_classes: int
    input_nhwc: tuple[int, int, int, int]
    fused_copy: bool = False  # also write `<name>_fused` after reparameterize_model
    width: float | None = None  # a width timm has no named variant for (v2/v3 at 0.5x)


FIXTURES = [
    Fixture("ghostnet_050_c10_96", "ghostnet_050", 10, (2, 96, 96, 3)),
    # 97 is odd on purpose: it exercises symmetric padding and v2's pool/upsample rounding.
    Fixture("ghostnet_100_c10_97", "ghostnet_100", 10, (1, 97, 97, 3)),
    # v2 and v3 at 0.5x keep the fixtures small; 97 gives the odd 7 -> 3 -> 7 DFC upsampling.
    Fixture("ghostnetv2_050_c10_97", "ghostnetv2_100", 10, (1, 97, 97, 3), width=0.5),
    Fixture(
        "ghostnetv3_050_c10_97", "ghostnetv3_100", 10, (1, 97, 97, 3), fused_copy=True, width=0.5
    ),
]


@dataclass(frozen=True)
class FeatureFixture:
    """Feature maps of fixture `weights` (its state dict and timm model) on one small input."""

    weights: str
    input_nhwc: tuple[int, int, int, int]


# 65 is odd (33, 17, 9, 5, 3 down the levels) and small: each file stays below 300 KB.
FEATURE_FIXTURES = [
    FeatureFixture("ghostnet_100_c10_97", (1, 65, 65, 3)),
    FeatureFixture("ghostnetv2_050_c10_97", (1, 65, 65, 3)),
    FeatureFixture("ghostnetv3_050_c10_97", (1, 65, 65, 3)),
]
FEATURE_SEED_OFFSET = 3


def param_count(model: nn.Module) -> int:
    """Count parameters the way the reference table does (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, hw: int = 224) -> int:
    """Count conv and linear multiply-adds for one image, the convention of ghostnet.md."""
    total = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += (out.numel() // out.shape[0]) * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, hw, hw))
    finally:
        for h in handles:
            h.remove()
    return total


def randomise_(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BN layer random affine params and running stats, and every bias a small value.

    Conv/linear weights keep timm's (seeded) default init; `calibrate_` fixes their scale.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * BIAS_STD)


def calibrate_(model: nn.Module, x: torch.Tensor) -> None:
    """Rescale each conv/linear weight so its pre-bias output has unit std on `x`.

    Why: timm's default init shrinks activations layer by layer (logits ~1e-2), and v3's summed
    branches would grow them; tiny or huge logits make parity tests weak. One eval-mode pass,
    in execution order, so every layer is scaled against its already-scaled inputs.
    """

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        bias = mod.bias
        if bias is None:
            pre = out
        elif isinstance(mod, nn.Conv2d):
            pre = out - bias.view(1, -1, 1, 1)
        else:
            pre = out - bias
        std = float(pre.std())
        if std <= 0.0:
            return out
        mod.weight.div_(std)
        return pre / std if bias is None else out + pre * (1.0 / std - 1.0)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def to_nchw(x_nhwc: np.ndarray) -> torch.Tensor:
    """Torch wants NCHW; fixtures store NHWC because the Keras side is channels-last."""
    return torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


def save_fixture(name: str, model: nn.Module, x_nhwc: np.ndarray) -> tuple[np.ndarray, int]:
    """Write `<name>.safetensors` and `<name>.npz`; return the logits and state-dict size."""
    with torch.no_grad():
        logits = model(to_nchw(x_nhwc)).numpy().astype(np.float32)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise TypeError(f"{name}: {key} is {tensor.dtype}, expected float32")
    save_file(state, str(OUT_DIR / f"{name}.safetensors"))
    np.savez(OUT_DIR / f"{name}.npz", input=x_nhwc, output=logits)
    return logits, len(state)


def create(fx: Fixture, **kwargs: Any) -> nn.Module:
    """The timm model of a fixture (timm's init), e.g. with `features_only=True`."""
    if fx.width is None:
        return timm.create_model(fx.model, pretrained=False, num_classes=fx.num_classes, **kwargs)
    # the named variants fix the width; timm's builder takes any
    from timm.models.ghostnet import _create_ghostnet

    version = "v3" if fx.model.startswith("ghostnetv3") else "v2"
    return _create_ghostnet(
        fx.model, width=fx.width, version=version, num_classes=fx.num_classes, **kwargs
    )


def build(fx: Fixture) -> nn.Module:
    """Build the timm model with seeded init, randomise it and calibrate its scales."""
    torch.manual_seed(SEED)
    model = create(fx).eval()
    randomise_(model, torch.Generator().manual_seed(SEED))
    n, h, w, c = fx.input_nhwc
    calib_gen = torch.Generator().manual_seed(SEED + CALIB_SEED_OFFSET)
    calib = torch.randn(max(n, 4), c, h, w, generator=calib_gen)
    calibrate_(model, calib)
    return model


def make_input(fx: Fixture) -> np.ndarray:
    """Standard-normal NHWC float32 input from a fixed seed."""
    rng = np.random.default_rng(SEED + INPUT_SEED_OFFSET)
    return rng.standard_normal(fx.input_nhwc).astype(np.float32)


def fixture_entry(
    fx: Fixture, name: str, model: nn.Module, logits: np.ndarray, n_keys: int, **extra: object
) -> dict[str, Any]:
    """Manifest record for one written fixture."""
    return {
        "name": name,
        "timm_model": fx.model,
        "constructor_args": {"pretrained": False, "num_classes": fx.num_classes}
        | ({} if fx.width is None else {"width": fx.width}),
        "width": fx.width if fx.width is not None else WIDTHS[fx.model],
        "num_classes": fx.num_classes,
        "input_nhwc": list(fx.input_nhwc),
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "max_abs_output": float(np.abs(logits).max()),
        "param_count": param_count(model),
        "state_dict_entries": n_keys,
        "files": [f"{name}.safetensors", f"{name}.npz"],
        **extra,
    }


def reference_totals() -> dict[str, Any]:
    """Parameter and MAC totals at 1000 classes, to compare with ghostnet.md's table."""
    params: dict[str, int] = {}
    macs: dict[str, int] = {}
    for variant in WIDTHS:
        model = timm.create_model(variant, pretrained=False).eval()
        params[variant] = param_count(model)
        if variant in DOC_MACS_M:
            macs[variant] = count_macs(model)
        if variant.startswith("ghostnetv3"):
            fused = reparameterize_model(model)
            params[f"{variant}_fused"] = param_count(fused)
            macs[f"{variant}_fused"] = count_macs(fused)
    return {
        "params_1000_classes": params,
        "macs_224x224_1000_classes": macs,
        "macs_convention": "Conv2d: out_elems*(in_ch/groups)*kh*kw; Linear: in*out; batch 1",
    }


def compare_with_doc(totals: dict[str, Any]) -> list[str]:
    """Lines comparing measured totals with ghostnet.md (MACs to its 0.1 M rounding)."""
    lines: list[str] = []
    for key, want in DOC_PARAMS.items():
        got = totals["params_1000_classes"].get(key)
        lines.append(f"params {key}: timm {got} doc {want} {'OK' if got == want else 'DIFF'}")
    for key, want_m in DOC_MACS_M.items():
        got_m = totals["macs_224x224_1000_classes"][key] / 1e6
        ok = round(got_m, 1) == want_m
        lines.append(f"MACs {key}: timm {got_m:.3f} M doc {want_m} M {'OK' if ok else 'DIFF'}")
    return lines


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().transpose(0, 2, 3, 1).astype(np.float32)


def level_of(reduction: int) -> int:
    level = int(math.log2(reduction))
    if 2**level != reduction:
        raise ValueError(f"reduction {reduction} is not a power of two")
    return level


def last_block_outputs(
    model: nn.Module, x: torch.Tensor
) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    """The last bottleneck (or the stem, where a level has none) at each reduction, by hooks.

    Independent of ghostspec's rule: the modules are timm's own (`act1`, then `blocks.S.I` in
    execution order, without the final ConvBnAct), grouped by the product of their strides.
    """
    final = f"blocks.{len(model.blocks) - 1}."
    names = [
        name
        for name, _ in model.named_modules()
        if name == "act1"
        or (re.fullmatch(r"blocks\.\d+\.\d+", name) and not name.startswith(final))
    ]
    order: list[str] = []
    outputs: dict[str, np.ndarray] = {}

    def hook(name: str) -> Any:
        def record(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            order.append(name)
            outputs[name] = nhwc(out.clone())  # act1 is in-place: copy before the next op

        return record

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    modules_at: dict[int, str] = {}
    reduction = 1
    for name in order:  # later modules at the same reduction replace earlier ones
        module = modules[name]
        reduction *= model.conv_stem.stride[0] if name == "act1" else module.stride
        modules_at[level_of(reduction)] = name
    return modules_at, {level: outputs[name] for level, name in modules_at.items()}


def write_features(fx: Fixture, ff: FeatureFixture) -> dict[str, Any]:
    """`<weights>_features.npz`: timm's features_only maps and the last block per level."""
    state = load_file(str(OUT_DIR / f"{ff.weights}.safetensors"))
    classifier = create(fx).eval()
    classifier.load_state_dict(state)
    features = create(fx, features_only=True).eval()
    # FeatureListNet flattens `blocks` into `blocks_0`, `blocks_1`, ...
    features.load_state_dict(
        {k: state[re.sub(r"^blocks_(\d+)\.", r"blocks.\1.", k)] for k in features.state_dict()}
    )
    rng = np.random.default_rng(SEED + FEATURE_SEED_OFFSET)
    x_nhwc = rng.standard_normal(ff.input_nhwc).astype(np.float32)
    x = to_nchw(x_nhwc)
    with torch.no_grad():
        timm_maps = [nhwc(t) for t in features(x)]
    info = features.feature_info
    timm_taps = [
        {"level": level_of(r), "module": m, "channels": c, "reduction": r}
        for m, c, r in zip(info.module_name(), info.channels(), info.reduction(), strict=True)
    ]
    last_modules, last_maps = last_block_outputs(classifier, x)
    last_taps = [
        {
            "level": level,
            "module": last_modules[level],
            "channels": int(last_maps[level].shape[-1]),
            "reduction": 2**level,
        }
        for level in sorted(last_modules)
    ]
    arrays = {"input": x_nhwc}
    arrays |= {f"timm_{t['level']}": a for t, a in zip(timm_taps, timm_maps, strict=True)}
    arrays |= {f"last_{level}": last_maps[level] for level in sorted(last_maps)}
    name = f"{ff.weights}_features"
    np.savez(OUT_DIR / f"{name}.npz", **arrays)
    return {
        "name": name,
        "weights": f"{ff.weights}.safetensors",
        "fixture": ff.weights,
        "timm_model": fx.model,
        "width": fx.width if fx.width is not None else WIDTHS[fx.model],
        "num_classes": fx.num_classes,
        "input_nhwc": list(ff.input_nhwc),
        "timm_param_count": param_count(features),
        "timm_taps": timm_taps,
        "last_taps": last_taps,
        "files": [f"{name}.npz"],
    }


def feature_entries() -> list[dict[str, Any]]:
    by_name = {fx.name: fx for fx in FIXTURES}
    entries = [write_features(by_name[ff.weights], ff) for ff in FEATURE_FIXTURES]
    for e in entries:
        taps = ", ".join(f"{t['module']} {t['channels']}/{t['reduction']}" for t in e["timm_taps"])
        print(f"{e['name']}: timm {taps}")
        last = ", ".join(f"{t['module']} {t['channels']}/{t['reduction']}" for t in e["last_taps"])
        print(f"{e['name']}: last {last}")
    return entries


def main() -> None:
    """Write all fixtures and the manifest, then print the checks against ghostnet.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--features",
        action="store_true",
        help="rewrite only the feature fixtures, from the committed state dicts",
    )
    if parser.parse_args().features:
        manifest_path = OUT_DIR / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["features"] = feature_entries()
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    available = set(timm.list_models("ghostnet*"))
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for fx in FIXTURES:
        if fx.model not in available:
            skipped.append(fx.name)
            print(f"skip {fx.name}: timm {timm.__version__} has no {fx.model}")
            continue
        model = build(fx)
        x = make_input(fx)
        logits, n_keys = save_fixture(fx.name, model, x)
        entries.append(fixture_entry(fx, fx.name, model, logits, n_keys))
        if fx.fused_copy:
            fused = reparameterize_model(model).eval()
            fname = f"{fx.name}_fused"
            fused_logits, fused_keys = save_fixture(fname, fused, x)
            diff = float(np.abs(fused_logits - logits).max())
            entries[-1]["fused_vs_unfused_max_abs_diff"] = diff
            entries.append(
                fixture_entry(
                    fx,
                    fname,
                    fused,
                    fused_logits,
                    fused_keys,
                    reparameterized=True,
                    fused_from=fx.name,
                    fused_vs_unfused_max_abs_diff=diff,
                )
            )
    totals = reference_totals()
    manifest = {
        "generator": "tools/make_fixtures.py",
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "seed": SEED,
        "randomisation": (
            "BN weight~U(0.5,1.5), bias~N(0,0.1), running_mean~N(0,0.1), running_var~U(0.5,1.5); "
            "conv/linear biases~N(0,0.1); conv/linear weights: timm default init rescaled so each "
            "layer's pre-bias output has unit std on a seeded calibration batch; eval mode"
        ),
        "layout": {"input": "NHWC float32", "output": "float32 logits [N, classes], pre-softmax"},
        "fixtures": entries,
        "skipped": skipped,
        "reference_totals": totals,
        "features": feature_entries(),
    }
    (OUT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for e in entries:
        print(f"{e['name']}: max|out| {e['max_abs_output']:.4f} params {e['param_count']}")
    for line in compare_with_doc(totals):
        print(line)


if __name__ == "__main__":
    main()
