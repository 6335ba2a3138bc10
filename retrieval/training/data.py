"""Rows, decoded working copies of the images and the augmentations: one place for what the network sees."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..collection import local_rows
from ..images import load_image

WORK_LONG_SIDE = 320  # working copy kept in memory: enough for 224-px crops, small enough for 2-3k images
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics (the backbone was trained with them)
STD = (0.229, 0.224, 0.225)
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
    """The collection fingerprint (retrieval.collection.metadata_fingerprint) of the rows the model was
    trained on, over the fields an Item keeps (not the pixels)."""
    from ..collection import metadata_fingerprint

    return metadata_fingerprint(items, fields=("file_name", "category", "label", "source", "caption"))


# --- pixels ---------------------------------------------------------------------------------------------------
def working_copy(image: Image.Image) -> np.ndarray:
    """8-bit grayscale array, long side <= WORK_LONG_SIDE, aspect kept."""
    image = image if image.mode == "L" else image.convert("L")
    if max(image.size) > WORK_LONG_SIDE:
        image = image.copy()
        image.thumbnail((WORK_LONG_SIDE, WORK_LONG_SIDE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


def load_working_copies(items: Sequence[Item], progress: bool = True) -> list[np.ndarray]:
    """Decode every item once (retrieval.images.load_image) into a working copy."""
    from tqdm.auto import tqdm

    return [working_copy(load_image(item.path)) for item in tqdm(items, desc="decode", disable=not progress,
                                                                   leave=False)]


def crop_border(gray: np.ndarray, tolerance: float = 6.0, max_share: float = 0.25) -> np.ndarray:
    """Cut uniform letterbox bars / frame borders (rows or columns whose spread is ~0), at most max_share a side."""
    h, w = gray.shape
    data = gray.astype(np.float32)
    row_std, col_std = data.std(axis=1), data.std(axis=0)
    top, bottom, left, right = 0, h, 0, w
    while top < int(h * max_share) and row_std[top] < tolerance:
        top += 1
    while bottom > h - int(h * max_share) and row_std[bottom - 1] < tolerance:
        bottom -= 1
    while left < int(w * max_share) and col_std[left] < tolerance:
        left += 1
    while right > w - int(w * max_share) and col_std[right - 1] < tolerance:
        right -= 1
    if bottom - top < 16 or right - left < 16:
        return gray
    return gray[top:bottom, left:right]


def stretch(gray: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Percentile intensity window to 0..255 (removes scanner-specific brightness/contrast offsets)."""
    lo, hi = np.percentile(gray, [low, high])
    if hi - lo < 1:
        return gray
    return np.clip((gray.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def clean_view(gray: np.ndarray, mode: str = "squash") -> np.ndarray:
    """The deterministic query-time view: 'squash' = the frozen baseline (resize whole image to 224);
    'norm' = border crop + percentile stretch first."""
    if mode == "norm":
        gray = stretch(crop_border(gray))
    elif mode != "squash":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    return np.asarray(Image.fromarray(gray).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC))


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


def to_batch(views: Sequence[np.ndarray]):
    """uint8 224x224 grayscale views -> normalised float tensor (n, 3, 224, 224), channels_last."""
    import torch

    data = torch.from_numpy(np.stack(views)).float().div_(255.0)  # (n, h, w)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    batch = (data[:, None].expand(-1, 3, -1, -1) - mean) / std
    return batch.contiguous(memory_format=torch.channels_last)
