"""A model's vectors read out of a Dataset, past `datasets`'s slow paths.

Its own module because how to read a vector column cheaply is knowledge of `datasets` and Arrow, not of any
one caller: the index generation reads whole columns (to build FAISS, maps, the novelty scorer), the engine
and both vector stores read a few rows (the hybrid's feedback, "more like this"). Indexing a Dataset decodes
every column of the rows, images included; `select_columns` deep-copies the FAISS indexes attached to it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def column_vectors(dataset, model: str) -> np.ndarray:
    """The model's whole vector column, (rows, dim) float32 in row order."""
    column = dataset.with_format("numpy", columns=[model])[model]
    return np.ascontiguousarray(np.asarray(column, dtype=np.float32))


def row_vectors(dataset, model: str, rows: Sequence[int]) -> np.ndarray:
    """The model's vectors of a few rows, (len(rows), dim) float32 in the order given."""
    rows = [int(row) for row in rows]
    if dataset._indices is not None:  # a selection of another dataset: its row numbers are not the table's
        return np.asarray(dataset[rows][model], dtype=np.float32)
    # straight from each row's chunk of the Arrow column: indexing the dataset decodes every column of the rows
    # (6.8 ms for 10 rows of TF-IDF), select_columns deep-copies the attached FAISS indexes (0.23 s), with_format
    # costs ~0.25 s, and the column's `take` joins all its chunks first (6.2 ms; this: 0.13 ms)
    column = dataset.data.column(model)
    starts = np.cumsum([0] + [len(chunk) for chunk in column.chunks])
    if rows and not 0 <= min(rows) <= max(rows) < starts[-1]:
        raise IndexError(f"Rows {rows} are outside the {int(starts[-1])} rows of {model!r}.")
    chunks = np.searchsorted(starts, rows, side="right") - 1
    pieces = [column.chunk(int(c)).slice(int(row - starts[c]), 1).flatten().to_numpy(zero_copy_only=False)
              for row, c in zip(rows, chunks)]
    if not pieces:
        return np.zeros((0, vector_dim(dataset, model)), np.float32)
    return np.stack(pieces).astype(np.float32, copy=False)


def vector_dim(dataset, model: str) -> int:
    """The length of the model's vectors: from the column's type when it is fixed, else from the first row."""
    dim = getattr(dataset.features[model], "length", -1)
    return int(dim) if dim and dim > 0 else row_vectors(dataset, model, [0]).shape[1]


__all__ = ["column_vectors", "row_vectors", "vector_dim"]
