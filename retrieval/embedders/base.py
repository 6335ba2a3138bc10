"""The one interface every model implements: batches in, L2-normalised float32 vectors out."""

from __future__ import annotations

from abc import ABC
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import UnsupportedModality
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

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows of unit length. Images arrive as 8-bit grayscale PIL images."""
        raise UnsupportedModality(f"Model {self.name!r} does not embed images; choose an image model.")

    # Models fitted on the collection (TF-IDF) keep their state beside the index.
    needs_fit: bool = False

    def fit(self, texts: Sequence[str]) -> None:
        """Fit on the collection's texts (only for `needs_fit` models)."""

    def save_state(self, directory: Path) -> None:
        """Write fitted state into `directory` (only for `needs_fit` models)."""

    def load_state(self, directory: Path) -> None:
        """Read fitted state written by `save_state`."""
