"""Retrieval metrics over ranked relevance: precision, recall, hit rate, AP@k and a confusion matrix (NumPy only).

Every function takes `relevant`, the relevance of each query's ranked results, best first: a bool array of
shape (queries, ranks), or (ranks,) for one query. A ranked list shorter than k is padded with False
(a missing result is never relevant). `n_relevant` is how many relevant items each query could have found
in the whole collection; where it is 0 the query cannot be judged and recall/AP are NaN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


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


__all__ = ["precision_at_k", "recall_at_k", "hit_rate_at_k", "average_precision_at_k",
           "mean_average_precision_at_k", "confusion_matrix", "row_normalise"]
