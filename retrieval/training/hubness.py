"""Hub penalty (cross-domain similarity local scaling, CSLS) over an index of training rows, as settings a nested
selection chooses among. EXPERIMENT (benchmarks/neighbour_expansion.py --method csls): not shipped.

Why: in a space where one source's films are near-copies of each other, those rows are "hubs": close to many
queries whatever the query shows, so a film from a hospital the index lacks finds the tightest source rather than
its content. CSLS (Conneau, Lample, Ranzato, Denoyer & Jegou 2018, "Word translation without parallel data", ICLR)
scores a pair by 2 cos(q, x) - r(q) - r(x), r being a vector's mean cosine to its K nearest neighbours on the other
side. r(q) is the same for every row a query ranks, so the ranking is cos(q, x) - weight * r(x) with weight 1/2; here
r(x) is the row's mean cosine to its K nearest other index rows (the queries are not known in advance), and K and the
weight are settings the inner folds choose, like the epochs.

The penalty rides in one extra column: an index row becomes [x, -weight * r(x)], every other row [q, 1], so an inner
product ranks by the penalised score and the protocol's search is unchanged.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .selection import with_twins

SUFFIX = "-hub"
NEIGHBOURS = (5, 10, 20, 40)  # K: index rows whose mean cosine is a row's crowding
WEIGHT = (0.0, 0.25, 0.5, 0.75, 1.0)  # 0: the plain ranking; 0.5: CSLS as published
GRID = tuple((k, w) for w in WEIGHT for k in (NEIGHBOURS if w else NEIGHBOURS[:1]))


def setting(k: int, weight: float) -> str:
    return f"k{k}w{weight:g}"


def crowding(index: np.ndarray, k: int) -> np.ndarray:
    """(n,) each index row's mean cosine to its `k` nearest other index rows (all of them when fewer)."""
    sims = index @ index.T
    np.fill_diagonal(sims, -np.inf)
    k = max(1, min(k, len(index) - 1))
    return np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1) if len(index) > 1 else np.zeros(len(index))


def penalised(vectors: np.ndarray, index_rows: np.ndarray, grid: Iterable[tuple] = GRID) -> dict[str, np.ndarray]:
    """{setting: (n, d + 1) vectors}: `index_rows` carry -weight * crowding in the extra column, every other row 1.
    Only `index_rows` are ever read to measure crowding."""
    index = vectors[index_rows]
    crowd = {k: crowding(index, k) for k in sorted({k for k, _ in grid})}
    out = {}
    for k, weight in grid:
        column = np.ones((len(vectors), 1), vectors.dtype)
        column[index_rows, 0] = -weight * crowd[k]
        out[setting(k, weight)] = np.hstack([vectors, column])
    return out


def penalised_fitter(fit, grid: Iterable[tuple] = GRID):
    """A selection fitter that answers for `fit`'s keys and, per key and grid point, (variant + SUFFIX,
    'setting/k..w..'): the same vectors, their index rows penalised by their crowding among the training rows."""
    grid = tuple(grid)
    return with_twins(fit, SUFFIX, lambda vectors, rows: penalised(vectors, rows, grid))


__all__ = ["GRID", "SUFFIX", "crowding", "penalised", "penalised_fitter", "setting"]
