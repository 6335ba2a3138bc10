"""Where the vectors are searched: the interface, its factory signature, and the default FAISS store.

The engine resolves rows to metadata and images; a store only answers "which rows are nearest". Every store
is made by a factory with one signature, `(generation, dataset, models) -> VectorStore`: `faiss_store` here,
`milvus_store(uri, ...)` in milvus_store.py.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

from .filters import Filters, RowFilter, with_category
from .layout import IndexGeneration
from .vector_columns import row_vectors

# A model whose vectors have at most this share of non-zero values is searched as a sparse matrix: word TF-IDF has
# 0.7 %, letter TF-IDF 6.3 % (0.46 ms a query against FAISS's 3.1 ms); a dense one (MiniLM: 0.79 against 0.35 ms)
# stays in FAISS, where one non-zero value costs about half what it costs in the sparse product.
SPARSE = 0.25
BLOCK = 4096  # rows copied out of FAISS at a time to make the sparse matrix (never a second dense copy of it all)


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

    def prepare(self, model: str) -> None:
        """Make `model`'s searches ready now, so the first query does not wait (the engine's warm-up calls it)."""


VectorStoreFactory = Callable[[IndexGeneration, object, list], VectorStore]


class FaissStore(VectorStore):
    """The embedded default: FAISS indexes attached to the Dataset's vector columns (flat inner product).

    Filters run inside FAISS through an ID selector over the rows they allow (precomputed per field value), so
    k results come back whenever k rows qualify. A model whose vectors are mostly zeros (TF-IDF: 0.7 % of 4,588
    word dimensions, 6.3 % of 4,096 letter ones) is searched as a scipy sparse matrix instead, made from its flat
    FAISS index on the first query: the same inner products, 0.1-0.5 instead of 3-5 ms a query (a hybrid query
    searches three such lists).
    """

    def __init__(self, generation: IndexGeneration, dataset, models: list[str]):
        self._dataset = dataset
        self._rows = RowFilter.of_dataset(dataset)
        self._sparse: dict[str, object] = {}  # model -> its CSR matrix, or None for a dense model (FAISS)
        self._lock = threading.Lock()
        for name in models:
            generation.attach_faiss(dataset, name)

    def search(self, model, vector, k, category=None, exclude=None, filters=None):
        import faiss

        params = None
        allowed = self._rows.allowed(with_category(filters, category), exclude)
        if allowed is not None and allowed.size == 0:
            return []
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(-1))
        matrix = self._sparse_matrix(model)
        if matrix is not None:
            return _top(matrix @ query, allowed, k)
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, rows = self._dataset.search(model, query, k=k, params=params)
        found = np.asarray(rows) >= 0  # -1: fewer rows than k
        return list(zip(np.asarray(rows)[found].tolist(), np.asarray(scores)[found].tolist()))

    def prepare(self, model):
        self._sparse_matrix(model)  # 0.1-0.3 s for the collection's TF-IDF

    def _sparse_matrix(self, model: str):
        """The model's vectors as a CSR matrix when its index is flat (exact: an approximate index answers as it
        was tuned to, ann.py) and at most SPARSE of a sample's values are non-zero, else None."""
        import faiss

        if model not in self._sparse:
            with self._lock:
                if model not in self._sparse:
                    index = self._dataset.get_index(model).faiss_index
                    flat = isinstance(index, faiss.IndexFlat)
                    sample = index.reconstruct_n(0, min(index.ntotal, 256)) if flat else np.zeros(0)
                    matrix = None
                    if sample.size and np.count_nonzero(sample) <= SPARSE * sample.size:
                        from scipy.sparse import csr_matrix, vstack

                        matrix = vstack([csr_matrix(index.reconstruct_n(start, min(BLOCK, index.ntotal - start)))
                                         for start in range(0, index.ntotal, BLOCK)], format="csr")
                    self._sparse[model] = matrix
        return self._sparse[model]

    def vector(self, model, row):
        return row_vectors(self._dataset, model, [row])[0]


def _top(scores: np.ndarray, allowed: np.ndarray | None, k: int) -> list[tuple[int, float]]:
    """The k best (row, score) among `allowed` rows (every row when None), best first, ties by row."""
    rows = np.arange(len(scores)) if allowed is None else np.asarray(allowed, dtype=np.int64)
    scores = scores if allowed is None else scores[rows]
    k = min(k, len(rows))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    best = best[np.lexsort((rows[best], -scores[best]))]
    return list(zip(rows[best].tolist(), scores[best].tolist()))  # Python ints and floats, made in C


def faiss_store(generation: IndexGeneration, dataset, models: list[str]) -> FaissStore:
    """The default factory: FAISS in this process."""
    return FaissStore(generation, dataset, models)


__all__ = ["VectorStore", "VectorStoreFactory", "FaissStore", "faiss_store"]
