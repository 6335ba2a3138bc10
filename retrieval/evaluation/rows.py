"""A row as the protocols see it (`Item`), and the fingerprint of a set of rows that a training card records:
shared by training and evaluation, so evaluation never imports training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

UNKNOWN_SOURCE = "unknown"  # a plain folder has no source column: every row counts as one unknown source


@dataclass(frozen=True)
class Item:
    """The metadata of one row that a model's training and the protocols need."""

    id: str
    file_name: str
    path: str
    category: str
    label: str
    source: str
    caption: str
    body_part: str = ""  # what anatomy is on the film ("" where the collection does not say)

    @property
    def key(self) -> str:
        """Label-level identity: same category AND same label ('' when the row has no label)."""
        return f"{self.category}\x1f{self.label}" if self.label else ""


def item_from_row(row) -> Item:
    """An Item from a retrieval.collection.Row, an index row dict, or anything with those fields."""
    get = row.get if isinstance(row, dict) else lambda field, default="": getattr(row, field, default)
    file_name = str(get("file_name", "") or "")
    return Item(id=str(get("id", "") or Path(file_name).with_suffix("").as_posix()), file_name=file_name,
                path=str(get("path", "") or ""), category=str(get("category", "") or "").strip().lower(),
                label=str(get("label", "") or "").strip().lower(),
                source=str(get("source", "") or "").strip() or UNKNOWN_SOURCE,
                caption=str(get("caption", "") or "").strip(),
                body_part=str(get("body_part", "") or "").strip().lower())



def fingerprint(items: Sequence[Item]) -> str:
    """The collection fingerprint (retrieval.collection.metadata_fingerprint) of the rows a model was trained on,
    over the fields an Item keeps (not the pixels)."""
    from ..collection import metadata_fingerprint

    return metadata_fingerprint(items, fields=("file_name", "category", "label", "source", "caption"))


__all__ = ["Item", "item_from_row", "fingerprint", "UNKNOWN_SOURCE"]
