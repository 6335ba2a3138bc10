"""Relevance feedback: move a query vector toward results marked relevant and away from those marked not (Rocchio).

    refined = ALPHA * query + BETA * mean(relevant) - GAMMA * mean(irrelevant), then scaled to unit length.

The weights are the textbook ones (Manning, Raghavan & Schütze, "Introduction to Information Retrieval", 9.1.1):
positive feedback counts far more than negative, because the rows marked "not relevant" are usually unlike each
other, so their mean is a weak direction. Every vector is of unit length, so the three terms are comparable.
`SearchEngine.refine` serves it; `evaluate` measures what one round of it gains.
"""

from __future__ import annotations

import numpy as np

from .embedders.base import l2_normalise

ALPHA, BETA, GAMMA = 1.0, 0.75, 0.15


def rocchio(query: np.ndarray, relevant: np.ndarray, irrelevant: np.ndarray) -> np.ndarray:
    """(1, dim) unit vector: the query moved by the (n, dim) relevant and (m, dim) irrelevant vectors (either may
    be empty)."""
    moved = ALPHA * np.asarray(query, dtype=np.float32).reshape(1, -1)
    if len(relevant):
        moved = moved + BETA * np.asarray(relevant, dtype=np.float32).mean(axis=0, keepdims=True)
    if len(irrelevant):
        moved = moved - GAMMA * np.asarray(irrelevant, dtype=np.float32).mean(axis=0, keepdims=True)
    return l2_normalise(moved)


def rocchio_rows(vectors: np.ndarray, queries: np.ndarray, judged: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Many rounds at once, for evaluation: query row `queries[i]` moved by its `judged[i]` rows (a row of
    row numbers), `relevant[i]` saying which of those were relevant. Returns (len(queries), dim) unit rows."""
    vectors = np.asarray(vectors, dtype=np.float32)
    judged_vectors = vectors[judged]  # (q, j, dim)
    relevant = relevant.astype(np.float32)[:, :, None]
    n_relevant, n_irrelevant = relevant.sum(axis=1), (1 - relevant).sum(axis=1)
    mean_relevant = (judged_vectors * relevant).sum(axis=1) / np.maximum(n_relevant, 1)
    mean_irrelevant = (judged_vectors * (1 - relevant)).sum(axis=1) / np.maximum(n_irrelevant, 1)
    return l2_normalise(ALPHA * vectors[queries] + BETA * mean_relevant - GAMMA * mean_irrelevant)


__all__ = ["ALPHA", "BETA", "GAMMA", "rocchio", "rocchio_rows"]
