"""What the evaluation reads from the stored images: the raw-pixel baseline (32x32 thumbnails) and the near
duplicates by the validator's pHash rule, taking the pHash the build stored and computing it only where missing."""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .index_access import IndexAccess

THUMBNAIL_SIDE = 32
_PHASH = re.compile(r"[0-9a-f]{16}")  # str(imagehash.phash(image)): 64 bits as 16 hex digits


def image_features(index: IndexAccess, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel vectors ((rows, 1024) grayscale thumbnails, L2-normalised) and (rows, 64) pHash bits."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..embedders import l2_normalise

    stored = index.stored_phashes() or [""] * len(index.ids)

    def inspect(row: int):
        image = index.image(row)
        thumbnail = image.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
        return np.asarray(thumbnail, dtype=np.float32).ravel(), phash_bits(stored[row], image)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(tqdm(pool.map(inspect, range(len(index.ids))), total=len(index.ids), desc="read images",
                            unit="img", disable=not progress))
    thumbnails = l2_normalise(np.stack([r[0] for r in results]))
    return thumbnails, np.stack([r[1] for r in results])


def phash_bits(stored: str, image) -> np.ndarray:
    """(64,) bits of a row's pHash: the stored hex digits when they are well formed, else computed from `image`."""
    import imagehash

    stored = (stored or "").strip().lower()
    if _PHASH.fullmatch(stored):
        return imagehash.hex_to_hash(stored).hash.flatten()
    return imagehash.phash(image).hash.flatten()


def near_duplicates(ids: list[str], hashes: np.ndarray, bits: int) -> tuple[dict[int, set[int]], list]:
    """({row: {partner rows}}, [(row, row, distance)]) by the validator's pHash rule."""
    from ..validate import near_duplicate_pairs

    position = {item: i for i, item in enumerate(ids)}
    pairs = [(position[a], position[b], d) for a, b, d in near_duplicate_pairs(ids, list(hashes), bits)]
    partners: dict[int, set[int]] = defaultdict(set)
    for i, j, _ in pairs:
        partners[i].add(j)
        partners[j].add(i)
    return dict(partners), pairs


__all__ = ["image_features", "phash_bits", "near_duplicates", "THUMBNAIL_SIDE"]
