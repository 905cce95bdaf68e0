"""Named reference networks, under timm's names: each is a shipped spec plus a width.

`resolve` is the one place a command's SPEC argument becomes a file: an existing path is used as it
is, and a registered name becomes its shipped spec with `name=` and `width=` overrides in front of
the user's own (`--set width=...` still wins). `ghostspec.load`, `ghostspec.plan` and through them
every command read specs through it. No TensorFlow here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.resources import shipped_dir


@dataclass(frozen=True)
class Entry:
    """A registered network: `spec` (a file in the shipped specs/ folder) at `width`."""

    name: str
    spec: str
    width: float
    description: str

    @property
    def path(self) -> Path:
        return shipped_dir("specs") / self.spec

    @property
    def overrides(self) -> tuple[str, ...]:
        return (f"name={self.name}", f"width={self.width}")


_V1 = "GhostNet {}x (Han et al., CVPR 2020) on the MobileNetV3-Large layout"
_V2 = "GhostNetV2 {}x: GhostNet with DFC attention (Tang et al., NeurIPS 2022)"
_V3 = "GhostNetV3 {}x: GhostNetV2 with re-parameterisable training branches (Liu et al., 2024)"

ENTRIES: tuple[Entry, ...] = (
    Entry("ghostnet_050", "large.yaml", 0.5, _V1.format("0.5")),
    Entry("ghostnet_100", "large.yaml", 1.0, _V1.format("1.0")),
    Entry("ghostnet_130", "large.yaml", 1.3, _V1.format("1.3")),
    Entry("ghostnetv2_100", "ghostnetv2.yaml", 1.0, _V2.format("1.0")),
    Entry("ghostnetv2_130", "ghostnetv2.yaml", 1.3, _V2.format("1.3")),
    Entry("ghostnetv2_160", "ghostnetv2.yaml", 1.6, _V2.format("1.6")),
    Entry("ghostnetv3_050", "ghostnetv3.yaml", 0.5, _V3.format("0.5")),
    Entry("ghostnetv3_100", "ghostnetv3.yaml", 1.0, _V3.format("1.0")),
    Entry("ghostnetv3_130", "ghostnetv3.yaml", 1.3, _V3.format("1.3")),
    Entry("ghostnetv3_160", "ghostnetv3.yaml", 1.6, _V3.format("1.6")),
    Entry(
        "ghostnet_small_100",
        "small.yaml",
        1.0,
        "Ghost bottlenecks on the MobileNetV3-Small layout, 1.0x (not in timm)",
    ),
)
REGISTRY: Mapping[str, Entry] = MappingProxyType({e.name: e for e in ENTRIES})


def looks_like_name(source: str | Path) -> bool:
    """No folder part and no suffix: `ghostnet_100`, not `specs/large.yaml` or `net.yaml`."""
    text = str(source)
    return bool(text) and "/" not in text and os.sep not in text and not Path(text).suffix


def suggestions(name: str) -> list[str]:
    """Up to three registered names close to `name`; on equal similarity the longer shared
    prefix first (`ghostnetv2_10` suggests ghostnetv2_100 before ghostnetv2_160)."""

    def score(candidate: str) -> tuple[float, int]:
        ratio = difflib.SequenceMatcher(None, name, candidate).ratio()
        prefix = next(
            (i for i, (a, b) in enumerate(zip(name, candidate, strict=False)) if a != b), None
        )
        return ratio, min(len(name), len(candidate)) if prefix is None else prefix

    scored = [(score(c), c) for c in REGISTRY]
    ranked = sorted((s for s in scored if s[0][0] >= 0.75), key=lambda s: (-s[0][0], -s[0][1]))
    return [c for _, c in ranked[:3]]


def resolve(source: str | Path) -> tuple[Path, tuple[str, ...]]:
    """The file to read for `source` and the overrides that come before the user's.

    A path that exists always wins, even when a registered model has the same name; otherwise a
    registered name gives its shipped spec. An unknown name that is no file is a SpecError with
    the closest registered names as a hint.
    """
    path = Path(source)
    try:
        exists = path.exists()
    except OSError:  # a name too long for the file system, say: the reader reports it
        exists = False
    if exists or not looks_like_name(source):
        return path, ()
    entry = REGISTRY.get(str(source))
    if entry is not None:
        return entry.path, entry.overrides
    close = suggestions(str(source))
    listing = "`ghostspec list` shows every registered model"
    if close:
        options = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        hint = f"did you mean {options}? {listing}"
    else:
        hint = f"{listing}; a spec file ends in .yaml, .yml or .json"
    raise SpecError(
        [
            Diagnostic(
                file=str(source),
                message="no such file, and no registered model has this name",
                hint=hint,
            )
        ]
    )


def display_path(path: Path) -> str:
    """A shipped file's name for diagnostics: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
