"""Retrieval metrics over ranked relevance (precision, recall, hit rate, AP@k, a confusion matrix) and the one
exact top-k ranking they judge; NumPy only, shared by `evaluate` and the training protocols.

The ranking: `top_k` orders candidates by inner product, best first, ties towards the lower position, exactly as
a flat inner-product FAISS index ranks them. `relevance` turns ranked positions into the bool array below.

Every metric takes `relevant`, the relevance of each query's ranked results, best first: a bool array of
shape (queries, ranks), or (ranks,) for one query. A ranked list shorter than k is padded with False
(a missing result is never relevant). `n_relevant` is how many relevant items each query could have found
in the whole collection; where it is 0 the query cannot be judged and recall/AP are NaN.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_CHUNK = 1024  # queries scored per matrix product (bounds memory: chunk x candidates float32)


def _ranks(relevant, k: int) -> tuple[np.ndarray, bool]:
    """(queries, k) bool, padded or cut to k ranks; and whether the input was a single query."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a whole number >= 1; got {k!r}.")
    array = np.asarray(relevant, dtype=bool)
    single = array.ndim == 1
    array = np.atleast_2d(array)
    if array.ndim != 2:
        raise ValueError(f"relevance must be 1-D or 2-D; got shape {np.shape(relevant)}.")
    if array.shape[1] < k:
        array = np.pad(array, ((0, 0), (0, k - array.shape[1])))
    return array[:, :k], single


def _counts(n_relevant, queries: int) -> np.ndarray:
    counts = np.broadcast_to(np.asarray(n_relevant, dtype=np.float64), (queries,)).copy()
    if (counts < 0).any():
        raise ValueError("n_relevant cannot be negative.")
    return counts


def _out(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def precision_at_k(relevant, k: int):
    """Share of the top k results that are relevant (a missing result counts as not relevant)."""
    top, single = _ranks(relevant, k)
    return _out(top.sum(axis=1) / k, single)


def recall_at_k(relevant, n_relevant, k: int):
    """Share of all relevant items found in the top k (at most k / n_relevant). NaN when n_relevant is 0."""
    top, single = _ranks(relevant, k)
    counts = _counts(n_relevant, len(top))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(counts > 0, top.sum(axis=1) / counts, np.nan)
    return _out(values, single)


def hit_rate_at_k(relevant, k: int):
    """1.0 when at least one of the top k results is relevant, else 0.0 (the 'Recall@k' of metric learning)."""
    top, single = _ranks(relevant, k)
    return _out(top.any(axis=1).astype(np.float64), single)


def average_precision_at_k(relevant, n_relevant, k: int):
    """AP@k = sum over relevant ranks i <= k of precision@i, divided by min(k, n_relevant).

    1.0 means the first min(k, n_relevant) results are all relevant. NaN when n_relevant is 0.
    """
    top, single = _ranks(relevant, k)
    counts = _counts(n_relevant, len(top))
    hits = top.astype(np.float64)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(counts > 0, (precision_at_rank * hits).sum(axis=1) / np.minimum(counts, k), np.nan)
    return _out(values, single)


def mean_average_precision_at_k(relevant, n_relevant, k: int) -> float:
    """Mean of AP@k over the queries that can be judged (n_relevant > 0); NaN when there are none."""
    values = np.atleast_1d(average_precision_at_k(relevant, n_relevant, k))
    judged = values[~np.isnan(values)]
    return float(judged.mean()) if judged.size else float("nan")


def top_k(queries: np.ndarray, index: np.ndarray, k: int, *, self_positions: np.ndarray | None = None,
          exclude: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """(queries, k) positions in `index` of each query's k best inner products, best first; ties go to the
    lower position. `self_positions[i]`: query i's own position in `index`, never returned (-1: not in it).
    `exclude[i]`: more positions never returned for query i. Positions with no candidate left hold -1."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    index = np.ascontiguousarray(index, dtype=np.float32)
    width = min(k, len(index))
    ranked = np.full((len(queries), k), -1, dtype=np.int64)
    masked_rows, masked_positions = _masked(len(queries), self_positions, exclude)
    for start in range(0, len(queries), _CHUNK):
        stop = min(len(queries), start + _CHUNK)
        scores = queries[start:stop] @ index.T
        here = (masked_rows >= start) & (masked_rows < stop)
        scores[masked_rows[here] - start, masked_positions[here]] = -np.inf
        if width:
            ranked[start:stop, :width] = _best(scores, width)
    return ranked


def rank_leave_one_out(vectors: np.ndarray, k: int, exclude: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """(rows, k) row numbers of each row's k nearest OTHER rows by inner product (`top_k` of the rows against
    themselves). `exclude[i]` are rows never returned for query i; -1 where no candidate is left."""
    return top_k(vectors, vectors, k, self_positions=np.arange(len(vectors)), exclude=exclude)


def _masked(queries: int, self_positions, exclude) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, positions) of every score that must never be returned."""
    rows, positions = [], []
    if self_positions is not None:
        own = np.asarray(self_positions, dtype=np.int64)
        rows.append(np.flatnonzero(own >= 0))
        positions.append(own[own >= 0])
    for row, others in (exclude or {}).items():
        if 0 <= row < queries and len(others):
            others = np.fromiter(others, dtype=np.int64)
            rows.append(np.full(len(others), row, dtype=np.int64))
            positions.append(others)
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(positions)


def _best(scores: np.ndarray, width: int) -> np.ndarray:
    """(rows, width) columns of each row's `width` highest scores, best first, ties towards the lower column;
    -1 for a -inf (masked) score."""
    n = scores.shape[1]
    if width < n:
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        top_scores = np.take_along_axis(scores, top, axis=1)
        # A tie at the cut: argpartition keeps an arbitrary few of the tied columns; such rows keep the lowest.
        crowded = np.flatnonzero((scores >= top_scores.min(axis=1, keepdims=True)).sum(axis=1) > width)
        for row in crowded:
            top[row] = np.argsort(-scores[row], kind="stable")[:width]
            top_scores[row] = scores[row, top[row]]
    else:
        top = np.tile(np.arange(n), (len(scores), 1))
        top_scores = scores
    order = np.lexsort((top, -top_scores), axis=1)
    top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    return np.where(np.isfinite(top_scores), top, -1)


def relevance(query_keys: np.ndarray, candidate_keys: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """(queries, k) bool: ranked[i, j] is a result (>= 0) whose key equals query i's key ('' is never relevant).
    `ranked` holds positions in `candidate_keys`."""
    query_keys = np.asarray(query_keys, dtype=object)
    found = np.where(ranked >= 0, np.asarray(candidate_keys, dtype=object)[np.maximum(ranked, 0)], "")
    return (ranked >= 0) & (found == query_keys[:, None]) & (query_keys[:, None] != "")


def confusion_matrix(true: Sequence, predicted: Sequence, labels: Sequence) -> np.ndarray:
    """counts[i, j] = how often an item of class labels[i] was predicted (or retrieved) as labels[j].

    Pairs whose true or predicted class is not in `labels` are left out.
    """
    true, predicted = np.asarray(true), np.asarray(predicted)
    if true.shape != predicted.shape:
        raise ValueError(f"true and predicted differ in shape: {true.shape} vs {predicted.shape}.")
    position = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(position), len(position)), dtype=np.int64)
    for t, p in zip(true.ravel().tolist(), predicted.ravel().tolist()):
        if t in position and p in position:
            counts[position[t], position[p]] += 1
    return counts


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows that sum to 0 stay 0), e.g. a confusion matrix as shares."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


__all__ = ["top_k", "rank_leave_one_out", "relevance", "precision_at_k", "recall_at_k", "hit_rate_at_k", "average_precision_at_k",
           "mean_average_precision_at_k", "confusion_matrix", "row_normalise"]
