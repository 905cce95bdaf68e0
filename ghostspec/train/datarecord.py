"""What a run was trained on: state/data.json, and what changed in the image folder since.

Per split and per class: the number of images, their bytes, and a digest of the sorted
(path relative to the image folder, size) pairs. File contents are not read (a digest of every
image would read the whole dataset on every resume); a folder moved or copied elsewhere is the
same data. A resume compares the folder with the record and refuses when it changed, unless
`--allow-data-change` says to continue (then the record is renewed and metrics.csv notes it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ghostspec.data.classnames import shown
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file, write_text

if TYPE_CHECKING:
    from ghostspec.data.pipeline import ImageFolder

RECORD_VERSION = 1
RECORD_LIMIT = 64 * 2**20


class SplitRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    images: int = Field(ge=0)
    bytes: int = Field(ge=0)
    digest: str
    classes: dict[str, int]  # images per class


class DataRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    splits: dict[str, SplitRecord]

    def to_json(self) -> str:
        record = {"ghostspec-data": RECORD_VERSION, **self.model_dump(mode="json")}
        return json.dumps(record, indent=1, ensure_ascii=True) + "\n"


def record_of(images: ImageFolder) -> DataRecord:
    """The record of an image folder's splits (one stat per image)."""
    splits: dict[str, SplitRecord] = {}
    root = Path(images.root)
    for split, samples in images.splits.items():
        entries: list[tuple[bytes, int]] = []
        counts = dict.fromkeys(images.classes, 0)
        for sample in samples:
            try:
                size = os.stat(sample.path).st_size
            except OSError:
                size = -1  # gone since it was found: a change like any other
            try:
                name = Path(sample.path).relative_to(root)
            except ValueError:
                name = Path(sample.path)
            entries.append((os.fsencode(name), size))
            counts[images.classes[sample.label]] += 1
        digest = hashlib.sha256()
        for name_bytes, size in sorted(entries):
            digest.update(name_bytes + b"\0" + str(size).encode() + b"\n")
        splits[split] = SplitRecord(
            images=len(entries),
            bytes=sum(max(s, 0) for _, s in entries),
            digest=digest.hexdigest(),
            classes=counts,
        )
    return DataRecord(splits=splits)


def write_record(path: Path, record: DataRecord) -> None:
    write_text(path, record.to_json())


def read_record(path: Path) -> DataRecord | None:
    """The record, or None for a run of an earlier version (which has none); SpecError when
    it is damaged."""
    if not path.exists():
        return None
    raw = read_regular_file(path, RECORD_LIMIT, "data record")
    try:
        record = json.loads(raw.decode("utf-8"))
        if not isinstance(record, dict) or record.pop("ghostspec-data", None) != RECORD_VERSION:
            raise ValueError("not a ghostspec data record (version 1)")
        return DataRecord.model_validate(record)
    except (ValueError, ValidationError) as err:
        first = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
        raise SpecError(
            [
                Diagnostic(
                    file=str(path),
                    message=f"the record of the run's data is damaged ({first})",
                    hint="restore it, or move it away to resume without the data check",
                )
            ]
        ) from None


def _class_changes(before: Mapping[str, int], now: Mapping[str, int]) -> str:
    changes = [
        f"{shown(name)} {now.get(name, 0) - before.get(name, 0):+d}"
        for name in sorted(set(before) | set(now))
        if now.get(name, 0) != before.get(name, 0)
    ]
    if not changes:
        return ""
    more = f", {len(changes) - 5} more classes" if len(changes) > 5 else ""
    return f" ({', '.join(changes[:5])}{more})"


def changes(before: DataRecord, now: DataRecord) -> list[str]:
    """What differs, one phrase per split; empty when nothing did."""
    found = []
    for split in sorted(set(before.splits) | set(now.splits)):
        old, new = before.splits.get(split), now.splits.get(split)
        if old is None or new is None:
            found.append(f"{split}: {'added' if old is None else 'gone'}")
        elif old.digest != new.digest:
            if old.images != new.images:
                what = f"{old.images} images then, {new.images} now"
            else:
                what = f"the same {new.images} images in number, but other files or sizes"
            found.append(f"{split}: {what}{_class_changes(old.classes, new.classes)}")
    return found
