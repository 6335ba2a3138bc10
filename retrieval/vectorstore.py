"""Where the vectors are searched: the interface, its factory signature, and the default FAISS store.

The engine resolves rows to metadata and images; a store only answers "which rows are nearest". Every store
is made by a factory with one signature, `(generation, dataset, models) -> VectorStore`: `faiss_store` here,
`milvus_store(uri, ...)` in milvus_store.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

from .filters import Filters, RowFilter, with_category
from .layout import IndexGeneration
from .vector_columns import row_vectors


class VectorStore(ABC):
    """Nearest-neighbour search over one vector set per model, by cosine similarity."""

    @abstractmethod
    def search(self, model: str, vector: np.ndarray, k: int, category: str | None = None,
               exclude: int | Sequence[int] | None = None, filters: Filters | None = None) -> list[tuple[int, float]]:
        """Up to k (row, score) pairs, best first, only rows that pass `filters` ({field: (values, ...)}, see
        filters.py; `category` is one more filter on the category), never the row(s) in `exclude`."""

    @abstractmethod
    def vector(self, model: str, row: int) -> np.ndarray:
        """The stored vector of a row (for "more like this")."""


VectorStoreFactory = Callable[[IndexGeneration, object, list], VectorStore]


class FaissStore(VectorStore):
    """The embedded default: FAISS indexes attached to the Dataset's vector columns (flat inner product).

    Filters run inside FAISS through an ID selector over the rows they allow (precomputed per field value), so
    k results come back whenever k rows qualify.
    """

    def __init__(self, generation: IndexGeneration, dataset, models: list[str]):
        self._dataset = dataset
        self._rows = RowFilter.of_dataset(dataset)
        for name in models:
            generation.attach_faiss(dataset, name)

    def search(self, model, vector, k, category=None, exclude=None, filters=None):
        import faiss

        params = None
        allowed = self._rows.allowed(with_category(filters, category), exclude)
        if allowed is not None:
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(-1))
        scores, rows = self._dataset.search(model, query, k=k, params=params)
        return [(int(row), float(score)) for score, row in zip(scores, rows) if row >= 0]

    def vector(self, model, row):
        return row_vectors(self._dataset, model, [row])[0]


def faiss_store(generation: IndexGeneration, dataset, models: list[str]) -> FaissStore:
    """The default factory: FAISS in this process."""
    return FaissStore(generation, dataset, models)


__all__ = ["VectorStore", "VectorStoreFactory", "FaissStore", "faiss_store"]
