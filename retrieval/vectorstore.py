"""Where the vectors are searched: the interface, and the default FAISS-on-Dataset implementation.

The engine resolves rows to metadata and images; a store only answers "which rows are nearest".
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from . import store as layout
from .errors import BrokenIndex


class VectorStore(ABC):
    """Nearest-neighbour search over one vector set per model, by cosine similarity."""

    @abstractmethod
    def search(self, model: str, vector: np.ndarray, k: int, category: str | None = None,
               exclude: int | None = None) -> list[tuple[int, float]]:
        """Up to k (row, score) pairs, best first, only rows of `category` when given, never row `exclude`."""

    @abstractmethod
    def vector(self, model: str, row: int) -> np.ndarray:
        """The stored vector of a row (for "more like this")."""


class FaissStore(VectorStore):
    """The embedded default: FAISS indexes attached to the Dataset's vector columns (flat inner product).

    Filters run inside FAISS through an ID selector, so k results come back whenever k rows qualify.
    """

    def __init__(self, dataset, generation, manifest: dict, models: list[str], categories: list[str]):
        self._dataset = dataset
        self._rows_in: dict[str, np.ndarray] = {}
        for row, category in enumerate(categories):
            self._rows_in.setdefault(category, []).append(row)
        self._rows_in = {c: np.asarray(r, dtype=np.int64) for c, r in self._rows_in.items()}
        for name in models:
            self._attach(generation, manifest, name)

    def _attach(self, generation, manifest: dict, name: str) -> None:
        path = layout.faiss_file(generation, name)
        if not path.is_file():
            raise BrokenIndex(f"The FAISS index for {name!r} is missing ({path}); rebuild the index.")
        try:
            self._dataset.load_faiss_index(name, str(path))
        except ValueError as error:  # datasets refuses an index whose size differs from the dataset's
            raise BrokenIndex(f"The FAISS index for {name!r} does not match the dataset ({error}); "
                              "rebuild the index.") from error
        except Exception as error:
            raise BrokenIndex(f"The FAISS index for {name!r} cannot be read ({error}); rebuild the index.") from error
        index = self._dataset.get_index(name).faiss_index
        expected = manifest["models"][name]["dim"], manifest["rows"]
        if (index.d, index.ntotal) != expected:
            raise BrokenIndex(f"The FAISS index for {name!r} has {index.ntotal} vectors of dimension {index.d}; "
                              f"the manifest says {expected[1]} of {expected[0]}. Rebuild the index.")

    def search(self, model, vector, k, category=None, exclude=None):
        import faiss

        params = None
        if category is not None or exclude is not None:
            allowed = self._rows_in.get(category, np.empty(0, np.int64)) if category is not None \
                else np.arange(len(self._dataset), dtype=np.int64)
            if exclude is not None:
                allowed = allowed[allowed != exclude]
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(-1))
        scores, rows = self._dataset.search(model, query, k=k, params=params)
        return [(int(row), float(score)) for score, row in zip(scores, rows) if row >= 0]

    def vector(self, model, row):
        return np.asarray(self._dataset[row][model], dtype=np.float32)
