"""The figures every evaluation reports (P@1, P@5, P@10, mAP@10, R@10, hit@10) at two relevance levels,
and how one block of them is computed from ranked relevance."""

from __future__ import annotations

import numpy as np

from ..evaluation_summary import ANATOMY, CATEGORY, FIGURES, K, KS, LABEL, LEVELS  # declared with the summary
from . import metrics


def figures(relevant: np.ndarray, n_relevant: np.ndarray) -> dict:
    """P@k, mAP@K, R@K, hit@K over the queries that have at least one relevant candidate."""
    relevant = np.asarray(relevant, dtype=bool).reshape(len(n_relevant), -1)
    n_relevant = np.asarray(n_relevant)
    judged = n_relevant > 0
    result = {"queries": int(judged.sum()), "unjudged": int((~judged).sum())}
    if not judged.any():
        return {**result, **{key: None for key in FIGURES}}
    relevant, n_relevant = relevant[judged], n_relevant[judged]
    for k in KS:
        result[f"p@{k}"] = round_figure(np.mean(metrics.precision_at_k(relevant, k)))
    result[f"map@{K}"] = round_figure(metrics.mean_average_precision_at_k(relevant, n_relevant, K))
    result[f"r@{K}"] = round_figure(np.mean(metrics.recall_at_k(relevant, n_relevant, K)))
    result[f"hit@{K}"] = round_figure(np.mean(metrics.hit_rate_at_k(relevant, K)))
    return result


def round_figure(value) -> float:
    """Figures are stored with four decimals."""
    return round(float(value), 4)


__all__ = ["KS", "K", "FIGURES", "ANATOMY", "CATEGORY", "LABEL", "LEVELS", "figures", "round_figure"]
