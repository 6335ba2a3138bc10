"""Queries turned into vectors by an index's models: each model loaded once, a model fitted on the collection
(TF-IDF) read from this index's own state, and one query at a time per model (models are not thread-safe)."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable, Collection

import numpy as np
from PIL import Image

from .embedders import embedder_spec, get_embedder
from .embedders.base import Embedder
from .images import ImageSource, load_image
from .layout import IndexGeneration


class QueryEncoder:
    """Embeds query texts and images (and computes feature maps) with the models of one index generation."""

    def __init__(self, generation: IndexGeneration):
        self.generation = generation
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._fitted: dict[str, Embedder] = {}

    def texts(self, model: str, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors."""
        return self._run(model, lambda embedder: embedder.embed_texts(texts))

    def text_per_model(self, models: list[str], text: str, expanded: Collection[str] = ()) -> dict[str, np.ndarray]:
        """{model: (1, dim) unit vector} of one text for several models (the hybrid's components), each text
        encoded once: a model whose text tower reads another listed model's vectors (xray-lite0 reads MiniLM's)
        is given those instead of encoding the text again. The `expanded` models (fitted word models) encode the
        text with the vocabularies' words for its words they lack (expansion.py)."""
        vectors: dict[str, np.ndarray] = {}
        readers = {model: get_embedder(model).text_input for model in models}
        for model in sorted(models, key=lambda name: readers[name] in models):  # the read models first
            source = readers[model]
            if source in vectors:
                vectors[model] = self._run(model, lambda embedder, v=vectors[source]: embedder.embed_text_vectors(v))
            elif model in expanded:
                vectors[model] = self.texts(model, [self.expanded_text(model, text)])
            else:
                vectors[model] = self.texts(model, [text])
        return {model: vectors[model] for model in models}

    def expanded_text(self, model: str, text: str) -> str:
        """The text as a fitted word model (TF-IDF) searches for it when expanded: with the vocabularies' words
        for the words its own vocabulary lacks."""
        from .expansion import expand

        return self._run(model, lambda embedder: expand(text, embedder.vocabulary)
                         if hasattr(embedder, "vocabulary") else text, as_array=False)  # no vocabulary: as typed

    def image(self, model: str, image: ImageSource) -> np.ndarray:
        """(1, dim) unit vector of an image (PIL image, path or bytes), decoded as the build decoded it."""
        picture = load_image(image, max_side=self.decode_side(model))
        return self._run(model, lambda embedder: embedder.embed_images([picture]))

    def feature_maps(self, model: str, picture: Image.Image):
        """The model's spatial features of one decoded picture (for heat maps)."""
        return self._run(model, lambda embedder: embedder.feature_maps([picture]), as_array=False)

    def decode_side(self, model: str) -> int:
        """The long side a model's images are decoded to, at build time and at query time alike."""
        return get_embedder(model).decode_side

    def load(self, model: str) -> None:
        """Load the model now (and its fitted state), so the first query does not wait."""
        self._run(model, lambda embedder: np.zeros(0))

    def _run(self, model: str, run: Callable[[Embedder], object], as_array: bool = True):
        embedder = get_embedder(model)
        with self._locks[model]:
            if embedder.needs_fit:  # fitted on this index's collection: this engine keeps its own copy
                if model not in self._fitted:
                    fitted = embedder_spec(model).factory()
                    fitted.load_state(self.generation.state_path(model))
                    self._fitted[model] = fitted
                embedder = self._fitted[model]
            result = run(embedder)
        return np.asarray(result, dtype=np.float32) if as_array else result


__all__ = ["QueryEncoder"]
