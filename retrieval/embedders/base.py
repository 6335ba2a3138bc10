"""The one interface every model implements: batches in, L2-normalised float32 vectors out."""

from __future__ import annotations

from abc import ABC
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..errors import NoSpatialFeatures, UnsupportedModality
from ..files import WORK_SIDE

TEXT = "text"
IMAGE = "image"


def l2_normalise(vectors) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32 so inner product == cosine."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)  # a map that covers the whole input image (left, top, right, bottom)


class FeatureMaps(NamedTuple):
    """One forward pass of image features, kept spatial: what "why similar" heat maps are made of.

    For models whose embedding averages the map (CNNs, the EfficientNet family, DINOv2's CLS + mean patch),
    `vectors` is `l2_normalise(maps.mean(axis=(1, 2)))`; for CLS-token models (ViT, CLIP) the map holds the
    patch tokens and `vectors` the CLS embedding of the same pass.
    """

    maps: np.ndarray  # (n, h, w, dim) float32: each location's feature, in the embedding space
    vectors: np.ndarray  # (n, dim) float32, unit rows: what embed_images returns for the same images
    boxes: np.ndarray  # (n, 4) float32: the part of each input image the map covers (left, top, right, bottom
    #                    as fractions of its width and height; less than the whole when preprocessing crops)

    def row(self, i: int) -> FeatureMaps:
        """Image i's features alone (a batch of one)."""
        return FeatureMaps(self.maps[i:i + 1], self.vectors[i:i + 1], self.boxes[i:i + 1])


def averaged(maps: np.ndarray, boxes: np.ndarray | None = None) -> FeatureMaps:
    """FeatureMaps of a model whose embedding is the average of its map (boxes default to the whole image)."""
    maps = np.asarray(maps, dtype=np.float32)
    if boxes is None:
        boxes = np.tile(np.asarray(FULL_IMAGE, dtype=np.float32), (len(maps), 1))
    return FeatureMaps(maps, l2_normalise(maps.mean(axis=(1, 2))), np.asarray(boxes, np.float32).reshape(-1, 4))


class Embedder(ABC):
    """A loaded model: override the embed method(s) it supports. What it embeds, what it indexes and which
    weights it has are described once, by its registry entry (`EmbedderSpec`); the registry sets `name`."""

    name: str = ""
    dim: int = 0  # the loaded model's width (a fitted TF-IDF's vocabulary size)
    batch_size: int = 32  # images or texts per forward pass: the fastest measured on this machine's CPU
    decode_side: int = WORK_SIDE  # images reach embed_images with at most this long side (build and query)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows of unit length."""
        raise UnsupportedModality(f"Model {self.name!r} does not embed text; choose a text-capable model.")

    # A text tower that reads another registry model's unit vectors instead of the text (xray-lite0 reads
    # MiniLM's): given that model's vectors, `embed_text_vectors` skips computing them again.
    text_input: str | None = None

    def embed_text_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) float32 unit rows from `text_input`'s (n, its dim) unit vectors of the same texts."""
        raise UnsupportedModality(f"Model {self.name!r} reads texts, not another model's vectors.")

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows of unit length. Images arrive as 8-bit grayscale PIL images."""
        raise UnsupportedModality(f"Model {self.name!r} does not embed images; choose an image model.")

    def feature_maps(self, images: Sequence[Image.Image]) -> FeatureMaps:
        """The spatial features behind `embed_images`, from the same preprocessing, in one forward pass.
        Models without spatial features (text models) raise NoSpatialFeatures."""
        raise NoSpatialFeatures(f"Model {self.name!r} has no spatial features, so it cannot show the regions "
                                f"that drive a similarity; choose an image model.")

    # Models fitted on the collection (TF-IDF) keep their state beside the index.
    needs_fit: bool = False

    def fit(self, texts: Sequence[str]) -> None:
        """Fit on the collection's texts (only for `needs_fit` models)."""

    def save_state(self, directory: Path) -> None:
        """Write fitted state into `directory` (only for `needs_fit` models)."""

    def load_state(self, directory: Path) -> None:
        """Read fitted state written by `save_state`."""
