"""Database-side augmentation (DBA) and alpha-weighted query expansion (alpha-QE) over an index of training rows,
as settings a nested selection chooses among. EXPERIMENT (benchmarks/neighbour_expansion.py): not shipped.

Why: both are the standard training-free re-rankers of image retrieval (Radenovic, Tolias & Chum 2018, "Fine-tuning
CNN image retrieval with no human annotation", section 4). DBA replaces each index vector by the weighted mean of its
`db` nearest index vectors (itself first); alpha-QE adds to a query its `q` nearest (augmented) index vectors. Each
neighbour weighs its cosine ** alpha (negative cosines count 0). A query from a hospital the collection lacks is
pulled toward the collection's own rows, which might be what a new source needs, or might amplify a wrong first
neighbour: only the nested folds can say which, so (db, q, alpha) are settings the inner folds choose.

`expanded_fitter` wraps any selection fitter: for each (variant, setting) it returns, besides the plain vectors, a
`variant-nx` answer per grid point, computed from the fitter's vectors and the training rows alone (the index).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from .selection import with_twins

SUFFIX = "-nx"
DATABASE = (0, 3, 5, 8, 12, 20)  # neighbours of an index row averaged into it (0: none; itself included)
QUERY = (0, 1, 2, 3)  # index neighbours added to a query
ALPHA = (0.0, 1.0, 3.0)  # weight = cosine ** alpha (0: a plain mean)
GRID = tuple((db, q, a) for db in DATABASE for a in ALPHA for q in QUERY if db or q or a == ALPHA[0])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest(sims: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosines clipped at 0) of each row's `n` highest similarities, highest first."""
    n = min(n, sims.shape[1])
    part = np.argpartition(-sims, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, 1)
    return top, np.clip(np.take_along_axis(sims, top, 1), 0.0, None)


def _weighted(vectors: np.ndarray, top: np.ndarray, cosines: np.ndarray, alpha: float) -> np.ndarray:
    return ((cosines ** alpha)[:, :, None] * vectors[top]).sum(axis=1)


def setting(db: int, q: int, alpha: float) -> str:
    return f"db{db}q{q}a{alpha:g}"


def expand(vectors: np.ndarray, index_rows: np.ndarray, grid: Iterable[tuple] = GRID) -> dict[str, np.ndarray]:
    """{setting: (n, d) unit vectors}: the `index_rows` database-augmented, every other row query-expanded against
    them. Only `index_rows` are ever read as neighbours."""
    by_pair: dict[tuple, list[int]] = defaultdict(list)  # (db, alpha) -> query sizes: one augmentation each
    for db, q, alpha in grid:
        by_pair[(db, alpha)].append(q)
    index = vectors[index_rows]
    queries = np.setdiff1d(np.arange(len(vectors)), index_rows)
    db_top, db_cos = _nearest(index @ index.T, max([db for db, _ in by_pair] + [1]))
    out = {}
    for (db, alpha), sizes in by_pair.items():
        augmented = _unit(_weighted(index, db_top[:, :db], db_cos[:, :db], alpha)) if db > 1 else index
        q_top, q_cos = _nearest(vectors[queries] @ augmented.T, max(sizes + [1]))
        for q in sizes:
            result = vectors.copy()
            result[index_rows] = augmented
            if q:  # the query itself weighs 1 (its cosine with itself), as in alpha-QE
                result[queries] = _unit(vectors[queries] + _weighted(augmented, q_top[:, :q], q_cos[:, :q], alpha))
            out[setting(db, q, alpha)] = result
    return out


def expanded_fitter(fit, grid: Iterable[tuple] = GRID):
    """A selection fitter that answers for `fit`'s keys and, per key and grid point, (variant + SUFFIX,
    'setting/db..q..a..'): the same vectors expanded over the training rows it was given."""
    grid = tuple(grid)
    return with_twins(fit, SUFFIX, lambda vectors, rows: expand(vectors, rows, grid))
