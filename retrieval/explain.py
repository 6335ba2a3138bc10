"""Why similar: heat maps of the regions that drive the similarity of two images under one image model.

For each image, the cosine between the OTHER image's embedding and this image's feature at each location
(`Embedder.feature_maps`, already in the embedding space), spread bilinearly over the part of the image the model
saw and laid over it in a perceptually uniform colour map. A map shows what the model matched, never a finding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, ClassVar, Hashable

import numpy as np
from PIL import Image

from .embedders.base import FeatureMaps

NOTE = ("Warm colours mark the regions that drive the similarity of the two images under this model (each "
        "region's cosine with the other image's embedding). A retrieval aid, not a finding.")
COLOUR_MAP = "inferno"  # perceptually uniform; still ordered when printed in grayscale or seen colour-blind
MAX_ALPHA = 0.6  # the strongest region is 60 % colour; the weakest leaves the radiograph untouched
CACHE_SIZE = 32  # feature maps kept (one image each: 50 KB for xray-lite0, 250 KB for efficientnet-lite0)


@dataclass
class Explanation:
    """A query and a result side by side, each with the regions that drive their similarity.

    `query_map` and `result_map` hold, for every pixel of their image, the cosine in [-1, 1] between the feature
    there and the other image's embedding; NaN where the model did not look (cropped away by its preprocessing).
    The overlays colour each map from its own lowest value (transparent) to its highest (MAX_ALPHA of
    COLOUR_MAP), so they show where the similarity comes from, not how strong it is: that is `score`.
    """

    model: str
    score: float  # cosine of the two embeddings: the score the search ranks by
    query_overlay: Image.Image  # RGB, the size of the query image
    result_overlay: Image.Image  # RGB, the size of the result image
    query_map: np.ndarray  # (height, width) float32
    result_map: np.ndarray
    result_id: str
    query_id: str | None = None  # None when the query is an uploaded image
    note: ClassVar[str] = NOTE


def explain(model: str, query: FeatureMaps, result: FeatureMaps, query_image: Image.Image,
            result_image: Image.Image, result_id: str, query_id: str | None = None) -> Explanation:
    """The Explanation of one pair, from the feature maps of one image each and the images to draw on."""
    query_map = heat_map(query.maps[0], result.vectors[0], query.boxes[0], query_image.size)
    result_map = heat_map(result.maps[0], query.vectors[0], result.boxes[0], result_image.size)
    return Explanation(model=model, score=float(query.vectors[0] @ result.vectors[0]),
                       query_overlay=overlay(query_image, query_map), result_overlay=overlay(result_image, result_map),
                       query_map=query_map, result_map=result_map, result_id=result_id, query_id=query_id)


def cosine_grid(features: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(h, w) cosine between each location's feature (h, w, dim) and the vector `other` (dim,)."""
    features = np.asarray(features, np.float32)
    other = np.asarray(other, np.float32)
    norms = np.linalg.norm(features, axis=-1) * max(float(np.linalg.norm(other)), 1e-12)
    return (features @ other / np.maximum(norms, 1e-12)).astype(np.float32)


def heat_map(features: np.ndarray, other: np.ndarray, box, size: tuple[int, int]) -> np.ndarray:
    """(height, width) float32 for an image of `size` (width, height): the cosine grid upsampled bilinearly over
    `box` (left, top, right, bottom fractions, the part the model saw); NaN elsewhere."""
    width, height = size
    left, top, right, bottom = (int(round(float(f) * side)) for f, side in zip(box, (width, height, width, height)))
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    heat = np.full((height, width), np.nan, np.float32)
    grid = Image.fromarray(cosine_grid(features, other))  # mode "F": PIL resizes floats
    heat[top:bottom, left:right] = np.asarray(grid.resize((right - left, bottom - top), Image.Resampling.BILINEAR))
    return heat


def overlay(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """The image (grayscale) under the map's colours: each map scaled from its lowest to its highest value,
    colour opacity rising with it up to MAX_ALPHA, so the radiograph stays readable everywhere."""
    gray = np.asarray(image.convert("L"), np.float32)[..., None]
    seen = np.isfinite(heat)
    low, high = (float(heat[seen].min()), float(heat[seen].max())) if seen.any() else (0.0, 0.0)
    level = np.nan_to_num((heat - low) / (high - low), nan=0.0) if high > low else np.zeros(heat.shape, np.float32)
    colours = _palette()[np.rint(level * 255).astype(np.uint8)]
    alpha = (MAX_ALPHA * level)[..., None]
    return Image.fromarray(np.rint(gray * (1 - alpha) + colours * alpha).astype(np.uint8), "RGB")


@lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    """(256, 3) float32 RGB of COLOUR_MAP; matplotlib is imported here, on the first heat map only."""
    from matplotlib import colormaps

    return (colormaps[COLOUR_MAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)


class FeatureCache:
    """A small thread-safe LRU of one image's FeatureMaps each, so a result row is run through its model once."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, FeatureMaps] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], FeatureMaps]) -> FeatureMaps:
        """The cached value of `key`, else `compute()` (run outside the lock: models have their own)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = FeatureCache()  # shared by every engine of the process; keys name the index, model, version and row
