"""Training rows, their decoded working copies and the augmented views the heads are fitted on (the clean view
the network sees at query time is retrieval/embedders/preprocess.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..collection import local_rows
from ..embedders.preprocess import CROPPED_MODES, INPUT_SIZE, crop_border, tone, working_copy
from ..evaluation.rows import Item, item_from_row
from ..images import load_image

NO_LABEL = ""


def read_items(collection: str | Path) -> list[Item]:
    """The rows of a local collection (imagefolder with metadata.csv, or category sub-folders), sorted by id."""
    items = [item_from_row(r) for r in local_rows(collection) if r.category.strip()]
    return sorted(items, key=lambda item: item.id)


# --- pixels ---------------------------------------------------------------------------------------------------
def load_working_copies(items: Sequence[Item], progress: bool = True) -> list[np.ndarray]:
    """Decode every item once (retrieval.images.load_image) into a working copy."""
    from tqdm.auto import tqdm

    return [working_copy(load_image(item.path)) for item in tqdm(items, desc="decode", disable=not progress,
                                                                   leave=False)]


def random_geometry(gray: np.ndarray, rng: np.random.Generator, mode: str) -> Image.Image:
    """The geometric part of every training view: border crop (the cropped modes), flip, small rotation, random
    crop."""
    if mode in CROPPED_MODES:
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
    return image.crop((x0, y0, x0 + cw, y0 + ch))


def augmented_view(gray: np.ndarray, rng: np.random.Generator, mode: str = "squash", size: int = INPUT_SIZE) -> np.ndarray:
    """A random 'other scanner' view: crop/scale, small rotation, flip, resolution loss, gamma/contrast, noise."""
    image = random_geometry(gray, rng, mode)
    if rng.random() < 0.4:  # resolution loss: some sources are 224-px copies or heavy JPEGs
        side = int(rng.integers(64, 160))
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    data = np.asarray(image, dtype=np.float32) / 255.0
    data = np.clip(data, 0, 1) ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))  # gamma
    contrast, brightness = float(rng.uniform(0.7, 1.3)), float(rng.uniform(-0.12, 0.12))
    data = (data - data.mean()) * contrast + data.mean() + brightness
    if rng.random() < 0.3:
        data = data + rng.normal(0, float(rng.uniform(0.005, 0.03)), data.shape)
    return tone(np.clip(data * 255.0, 0, 255).astype(np.uint8), mode)
