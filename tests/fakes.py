"""Embedders whose right answers are obvious, registered the same way real models are (through the
`fake_models` fixture of conftest.py, which unregisters them afterwards)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from retrieval.embedders import IMAGE, TEXT, Availability, Embedder, EmbedderSpec, l2_normalise, register, unregister

KEYWORDS = ("chest", "knee", "dental", "fracture", "hand", "spine")


class KeywordEmbedder(Embedder):
    """One dimension per keyword: a text's vector counts the keywords it contains."""

    dim = len(KEYWORDS)

    def embed_texts(self, texts):
        return l2_normalise([[text.lower().count(word) for word in KEYWORDS] for text in texts])


class BrightnessEmbedder(Embedder):
    """Image vector = (mean of the top half, mean of the bottom half, stripe energy): synthetic kinds separate."""

    dim = 3
    delay = 0.0  # seconds per batch, to make a build slow enough to kill in a test

    def embed_images(self, images):
        time.sleep(self.delay)
        rows = []
        for image in images:
            pixels = np.asarray(image.resize((64, 64)), dtype=np.float32) / 255.0
            rows.append([pixels[:32].mean() + 0.01, pixels[32:].mean() + 0.01,
                         np.abs(np.diff(pixels, axis=1)).mean()])
        return l2_normalise(rows)


FAKES = ("keywords", "brightness")


def register_fakes(delay: float = 0.0) -> None:
    """Register the fakes (a build in a subprocess calls this; tests use the `fake_models` fixture)."""
    BrightnessEmbedder.delay = delay
    ready = lambda: Availability(True, "defined in tests")  # noqa: E731
    register(EmbedderSpec("keywords", "test", (TEXT,), TEXT, len(KEYWORDS), "tests", "keyword counts",
                          KeywordEmbedder, ready, version="keywords:1"))
    register(EmbedderSpec("brightness", "test", (IMAGE,), IMAGE, 3, "tests", "half brightness",
                          BrightnessEmbedder, ready, version="brightness:1"))


@contextmanager
def fakes_registered(delay: float = 0.0):
    register_fakes(delay)
    try:
        yield
    finally:
        for name in FAKES:
            unregister(name)
