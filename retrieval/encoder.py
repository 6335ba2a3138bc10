"""Queries turned into vectors by an index's models: each model loaded once, a model fitted on the collection
(TF-IDF) read from this index's own state, and one query at a time per model (models are not thread-safe).

An image query that several models embed (the ranking model and the "no close match" judge's) is decoded once
and embedded by the models side by side: at batch 1 a backbone pass gains little from a second core, so two
passes at once finish well before two passes in a row (docs/performance.md). Each model still embeds one
query at a time: every pass takes its model's lock, wherever it runs."""

from __future__ import annotations

import ctypes
import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Collection, Container

import numpy as np
from PIL import Image

from .embedders import embedder_spec, get_embedder
from .embedders.base import Embedder
from .images import ImageSource, load_image
from .layout import IndexGeneration

WORKERS = 2  # image passes side by side: the ranking model's and the "no close match" judge's other model
WARM_PASSES, WARM_SIDE = 2, 256  # `load`'s passes, on a blank image of this side
_WORKER = threading.local()  # whether this worker thread has taken its share of torch's threads


class QueryEncoder:
    """Embeds query texts and images (and computes feature maps) with the models of one index generation."""

    def __init__(self, generation: IndexGeneration, concurrent: bool | None = None):
        """`concurrent`: embed an image with several models side by side (default: where the CPU has more than
        one core); False embeds them one after the other, with the same vectors."""
        self.generation = generation
        self.concurrent = (os.cpu_count() or 1) > 1 if concurrent is None else concurrent
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._fitted: dict[str, Embedder] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def texts(self, model: str, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors."""
        return self._run(model, lambda embedder: embedder.embed_texts(texts))

    def text_per_model(self, models: list[str], text: str, expanded: Collection[str] = ()) -> dict[str, np.ndarray]:
        """{model: (1, dim) unit vector} of one text for several models (the hybrid's components), each text
        encoded once: a model whose text tower reads another listed model's vectors (xray-lite0 reads MiniLM's)
        is given those of the text as typed instead of encoding the text again. The `expanded` models encode the
        text with the vocabularies' words for its words the first expanded model with a vocabulary (the word
        TF-IDF) lacks (expansion.py); then a model whose vectors another one reads encodes the typed text too."""
        vectors: dict[str, np.ndarray] = {}
        typed: dict[str, np.ndarray] = {}  # an expanded model's vector of the text as typed, for its readers
        readers = {model: get_embedder(model).text_input for model in models}
        owns = {model: getattr(type(get_embedder(model)), "vocabulary", None) is not None for model in models}
        lender = next((name for name in expanded if name in models and owns[name]), None)
        widened: dict[str | None, str] = {}  # the text expanded by each vocabulary, once
        for model in sorted(models, key=lambda name: readers[name] in models):  # the read models first
            source = readers[model]
            if source in vectors:
                given = typed.get(source, vectors[source])
                vectors[model] = self._run(model, lambda embedder, v=given: embedder.embed_text_vectors(v))
            elif model in expanded:
                owner = model if owns[model] else lender
                if owner not in widened:
                    widened[owner] = self.expanded_text(model, text, lender)
                wide = widened[owner]
                if wide != text and model in readers.values():  # both texts in one batch: one pass, not two
                    both = self.texts(model, [wide, text])
                    vectors[model], typed[model] = both[:1], both[1:]
                else:
                    vectors[model] = self.texts(model, [wide])
            else:
                vectors[model] = self.texts(model, [text])
        return {model: vectors[model] for model in models}

    def expanded_text(self, model: str, text: str, lender: str | None = None) -> str:
        """The text as `model` searches for it when expanded: with the vocabularies' words for the words its own
        vocabulary (a fitted word model's, TF-IDF) lacks; a model without one (MiniLM) uses `lender`'s; neither:
        as typed."""
        from .expansion import expand

        for owner in (model, lender) if lender and lender != model else (model,):
            wide = self._run(owner, lambda embedder: expand(text, embedder.vocabulary)
                             if hasattr(embedder, "vocabulary") else None, as_array=False)
            if wide is not None:
                return wide
        return text

    def vocabulary(self, model: str) -> Container[str]:
        """The terms a fitted word model (TF-IDF) knows; empty for a model without a vocabulary."""
        return self._run(model, lambda embedder: getattr(embedder, "vocabulary", {}), as_array=False)

    def marks_negation(self, model: str) -> bool:
        """Whether `model`, as this index fitted it, reads negated words as other terms (word TF-IDF, negation.py)."""
        return bool(self._run(model, lambda embedder: getattr(embedder, "marks_negation", False), as_array=False))

    def image(self, model: str, image: ImageSource) -> np.ndarray:
        """(1, dim) unit vector of an image (PIL image, path or bytes), decoded as the build decoded it."""
        return self.images([model], image)[model]

    def images(self, models: list[str], image: ImageSource) -> dict[str, np.ndarray]:
        """{model: (1, dim) unit vector} of one image for several models, each the vector `image(model, image)`
        gives: decoded once per decode side, then embedded by the models side by side in the encoder's worker
        threads (`concurrent`), else one after the other in this thread."""
        pictures: dict[int, Image.Image] = {}
        for model in models:
            side = self.decode_side(model)
            if side not in pictures:
                pictures[side] = load_image(image, max_side=side)
        embed = lambda model: self._run(model, lambda embedder: embedder.embed_images(  # noqa: E731
            [pictures[self.decode_side(model)]]))
        if not self.concurrent or len(models) < 2:
            return {model: embed(model) for model in models}
        passes = {model: self._workers().submit(lambda m: _share_the_cores() or embed(m), model) for model in models}
        wait(passes.values())  # every pass ends before the query does, a failed one too
        return {model: future.result() for model, future in passes.items()}

    def feature_maps(self, model: str, picture: Image.Image):
        """The model's spatial features of one decoded picture (for heat maps)."""
        return self._run(model, lambda embedder: embedder.feature_maps([picture]), as_array=False)

    def decode_side(self, model: str) -> int:
        """The long side a model's images are decoded to, at build time and at query time alike."""
        return get_embedder(model).decode_side

    def load(self, model: str) -> None:
        """Load the model now (and its fitted state) and run it WARM_PASSES times on a query-sized input, so the
        first query does not wait: a traced pass (embedders/tracing.py) is traced on its first call and optimised
        on its second (0.2 s and 24 ms of CPU for EfficientNet-Lite0 here, then 10 ms)."""
        from .embedders.base import IMAGE, TEXT

        reads_vectors = self._run(model, lambda embedder: embedder.text_input, as_array=False)
        spec = embedder_spec(model)
        for _ in range(WARM_PASSES):
            if spec.embeds(TEXT) and not reads_vectors:  # xray-lite0's text head reads MiniLM's, warmed there
                self.texts(model, ["a warm-up query", "warm-up"])  # two texts: the hybrid's batch
            if spec.embeds(IMAGE):
                self.image(model, Image.new("L", (WARM_SIDE, WARM_SIDE), 128))

    def _workers(self) -> ThreadPoolExecutor:
        """The threads the models of an image query embed in side by side (created on first use)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="query-embed",
                                                initializer=_share_the_cores)
            return self._pool

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


def _share_the_cores() -> None:
    """Give this worker thread its share of torch's CPU threads (on 2 cores: 1), so that WORKERS passes side by
    side do not ask for more threads than there are cores. Only this thread's OpenMP setting changes:
    `torch.set_num_threads` would change every thread that starts later, and the BLAS library, too. Where
    torch's OpenMP library is not found (another build), the worker keeps torch's count."""
    import sys

    torch = sys.modules.get("torch")  # only models that run on torch have threads to share
    if torch is None or getattr(_WORKER, "shared", False):
        return  # not loaded yet: the next pass in this worker tries again
    _WORKER.shared = True
    share = max(1, torch.get_num_threads() // WORKERS)  # get_num_threads also fixes this thread's count first
    libraries = sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*"))
    if libraries and share < torch.get_num_threads():
        ctypes.CDLL(str(libraries[0])).omp_set_num_threads(share)


__all__ = ["QueryEncoder"]
