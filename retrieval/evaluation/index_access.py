"""The one door between the evaluation and a served index: every SearchEngine member the evaluation uses is
used here and nowhere else, so the engine can change shape behind one small class.

Engine members used: the constructor `SearchEngine(index_dir)`, `index_dir`, `generation`, `vectors(name)`,
`search_text(text, model=, k=, min_score=)` (its hits' `row`); its policy's `models`, `models_for("text", fused=)`
and `indexes(name)`; its catalogue's `ids`, `record(id)` and `image(id)`; its encoder's `text_per_model(models,
text, expanded=)`, `row_vectors(model, rows)` and its store's `search(model, vector, n)` (each text model's own candidates, for fitting the hybrid). From the generation
(layout.IndexGeneration): `name`, `load_dataset()` (the stored `phash` column), `write_evaluation(...)` via
summary.py and `write_fusion(...)`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from ..layout import IndexGeneration
    from ..search import SearchEngine

PHASH_COLUMN = "phash"  # str(imagehash.phash(image)): 16 hex digits, stored per row by the build


class IndexAccess:
    """An index as the evaluation reads it: rows by number, their records, images and stored vectors, the
    models and what they index, text queries through the engine."""

    def __init__(self, engine: "SearchEngine"):
        self._engine = engine

    @classmethod
    def open(cls, index: "str | Path | SearchEngine | IndexAccess") -> "IndexAccess":
        """An index folder (or hf:// location), an engine already serving one, or an IndexAccess."""
        from ..search import SearchEngine

        if isinstance(index, IndexAccess):
            return index
        return cls(index if isinstance(index, SearchEngine) else SearchEngine(index))

    @property
    def root(self) -> Path:
        return Path(self._engine.index_dir)

    @property
    def generation(self) -> "IndexGeneration":
        return self._engine.generation

    @property
    def models(self) -> list[str]:
        return self._engine.policy.models

    def text_models(self) -> list[str]:
        """The models that can embed a text query here."""
        return self._engine.policy.models_for("text")

    def fusion_components(self) -> list[str]:
        """The text models with vectors of their own that the hybrid can fuse here."""
        return self._engine.policy.models_for("text", fused=False)

    def indexes(self, model: str) -> str:
        """What the model's stored vectors encode: "image" or "text" (the row's metadata); "fusion" for the hybrid."""
        return self._engine.policy.indexes(model)

    def component_lists(self, text: str, components: list[str], depth: int,
                        expanded: tuple[str, ...] = ()) -> dict[str, list[tuple[int, float]]]:
        """Each component's `depth` nearest rows (row, score) for a text query, as the hybrid fuses them (the
        `expanded` components search for the expanded query)."""
        from ..hybrid import component_lists

        engine = self._engine
        vectors = engine.encoder.text_per_model(components, text, expanded=expanded)
        return component_lists(vectors, lambda name, vector, n: engine.store.search(name, vector, n), depth)

    def feedback_list(self, text: str, first: list[tuple[int, float]], depth: int,
                      expanded: tuple[str, ...] = ()) -> list[tuple[int, float]]:
        """The hybrid's pseudo-relevance feedback list for a text query, given its first pass's ranking."""
        from ..hybrid import FEEDBACK_MODEL, feedback_list

        engine = self._engine
        query = engine.encoder.text_per_model([FEEDBACK_MODEL], text, expanded=expanded)[FEEDBACK_MODEL]
        return feedback_list(first, query, engine.row_vectors,
                             lambda name, vector, n: engine.store.search(name, vector, n), depth)

    @cached_property
    def ids(self) -> list[str]:
        return self._engine.catalogue.ids

    @cached_property
    def records(self) -> list[dict]:
        """Every row's metadata, in row order."""
        return [self._engine.catalogue.record(item) for item in self.ids]

    def image(self, row: int) -> "Image.Image":
        """The stored image of a row, decoded as the validator decodes it."""
        return self._engine.catalogue.image(self.ids[row])

    def vectors(self, model: str) -> np.ndarray:
        """(rows, dim) stored vectors; an unknown model raises the engine's error, listing the index's models."""
        return self._engine.vectors(model)

    def search_text(self, text: str, model: str, k: int) -> list[int]:
        """Row numbers of the k best rows for a text query, best first (no score threshold)."""
        return [hit.row for hit in self._engine.search_text(text, model=model, k=k, min_score=-1.0)]

    def stored_phashes(self) -> list[str] | None:
        """Each row's pHash as the build stored it, or None for an index built before the column existed."""
        dataset = self.generation.load_dataset()
        if PHASH_COLUMN not in dataset.column_names:
            return None
        return [str(value or "") for value in dataset[PHASH_COLUMN]]


__all__ = ["IndexAccess", "PHASH_COLUMN"]
