"""Training rows, their decoded working copies and the augmented views the heads are fitted on (the clean view
the network sees at query time is retrieval/embedders/preprocess.py's)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..collection import local_rows
from ..embedders.preprocess import INPUT_SIZE, crop_border, stretch, working_copy
from ..images import load_image

NO_LABEL = ""


@dataclass(frozen=True)
class Item:
    """The metadata of one training row that the model and the protocols need."""

    id: str
    file_name: str
    path: str
    category: str
    label: str
    source: str
    caption: str

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
                source=str(get("source", "") or "").strip() or _folder_source(file_name),
                caption=str(get("caption", "") or "").strip())


def read_items(collection: str | Path) -> list[Item]:
    """The rows of a local collection (imagefolder with metadata.csv, or category sub-folders), sorted by id."""
    items = [item_from_row(r) for r in local_rows(collection) if r.category.strip()]
    return sorted(items, key=lambda item: item.id)


def _folder_source(file_name: str) -> str:
    """A plain folder has no source column: every row counts as one unknown source."""
    return "unknown"


def fingerprint(items: Sequence[Item]) -> str:
    """sha256 over the sorted metadata rows (what the model was trained on, not the pixels)."""
    lines = sorted(json.dumps([i.file_name, i.category, i.label, i.source, i.caption], ensure_ascii=False)
                   for i in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


# --- pixels ---------------------------------------------------------------------------------------------------
def load_working_copies(items: Sequence[Item], progress: bool = True) -> list[np.ndarray]:
    """Decode every item once (retrieval.images.load_image) into a working copy."""
    from tqdm.auto import tqdm

    return [working_copy(load_image(item.path)) for item in tqdm(items, desc="decode", disable=not progress,
                                                                   leave=False)]


def augmented_view(gray: np.ndarray, rng: np.random.Generator, mode: str = "squash") -> np.ndarray:
    """A random 'other scanner' view: crop/scale, small rotation, flip, resolution loss, gamma/contrast, noise."""
    if mode == "norm":
        gray = crop_border(gray)
    image = Image.fromarray(gray)
    w, h = image.size
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-10, 10))
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=int(rng.integers(0, 40)))
    scale = float(rng.uniform(0.55, 1.0))
    ratio = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    cw = int(round(min(w, w * np.sqrt(scale * ratio))))
    ch = int(round(min(h, h * np.sqrt(scale / ratio))))
    x0 = int(rng.integers(0, max(1, w - cw + 1)))
    y0 = int(rng.integers(0, max(1, h - ch + 1)))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.4:  # resolution loss: some sources are 224-px copies or heavy JPEGs
        side = int(rng.integers(64, 160))
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    data = np.asarray(image, dtype=np.float32) / 255.0
    data = np.clip(data, 0, 1) ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))  # gamma
    contrast, brightness = float(rng.uniform(0.7, 1.3)), float(rng.uniform(-0.12, 0.12))
    data = (data - data.mean()) * contrast + data.mean() + brightness
    if rng.random() < 0.3:
        data = data + rng.normal(0, float(rng.uniform(0.005, 0.03)), data.shape)
    out = np.clip(data * 255.0, 0, 255).astype(np.uint8)
    if mode == "norm":
        out = stretch(out)
    return out
