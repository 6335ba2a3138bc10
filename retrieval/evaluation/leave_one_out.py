"""Leave-one-out judging over an index's stored vectors: every row queries all the others (its near duplicates
taken out), the closed-form random expectation, and what one round of relevance feedback gains."""

from __future__ import annotations

from collections import Counter

import numpy as np

from . import metrics
from .figures import FIGURES, K, KS, LEVELS, figures, round_figure

FEEDBACK_JUDGED = 10  # results a person judges in one round of relevance feedback


def relevant_counts(key: np.ndarray, partners: dict[int, set[int]]) -> np.ndarray:
    """Relevant candidates per query: rows sharing its key, minus itself and its excluded near duplicates."""
    totals = Counter(key.tolist())
    counts = np.asarray([totals[k] - 1 if k else 0 for k in key.tolist()], dtype=np.int64)
    for i, others in partners.items():
        if key[i]:
            counts[i] -= sum(1 for j in others if key[j] == key[i])
    return counts


def judge(ranked: np.ndarray, keys: dict, partners: dict, queries: np.ndarray | None = None) -> dict:
    """{level: figures} of a leave-one-out ranking (`queries`: a mask of the rows judged; default all)."""
    out = {}
    for level in LEVELS:
        key = keys[level]
        relevant = metrics.relevance(key, key, ranked)
        counts = relevant_counts(key, partners)
        chosen = np.ones(len(key), dtype=bool) if queries is None else queries
        out[level] = figures(relevant[chosen], counts[chosen])
    return out


def random_expectation(key: np.ndarray, partners: dict[int, set[int]]) -> dict:
    """What a random ranking of the candidates scores on average (P@k, R@K and hit@K in closed form)."""
    counts = relevant_counts(key, partners)
    candidates = np.asarray([len(key) - 1 - len(partners.get(i, ())) for i in range(len(key))], dtype=np.float64)
    judged = counts > 0
    return random_figures(counts[judged].astype(np.float64), candidates[judged])


def random_text_expectation(targets: np.ndarray, rows: int) -> dict:
    """The same for text queries: (queries, rows) relevance targets, every row a candidate."""
    counts = targets.sum(axis=1).astype(np.float64)
    judged = counts > 0
    return random_figures(counts[judged], np.full(judged.sum(), float(rows)))


def random_figures(relevant: np.ndarray, candidates: np.ndarray) -> dict:
    if not len(relevant):
        return {"queries": 0, **{key: None for key in FIGURES}}
    precision = round_figure(np.mean(relevant / candidates))
    miss = np.ones_like(relevant)
    for i in range(K):  # probability that none of the K drawn candidates is relevant
        miss *= np.clip((candidates - relevant - i) / np.maximum(candidates - i, 1), 0, 1)
    return {"queries": int(len(relevant)), **{f"p@{k}": precision for k in KS}, f"map@{K}": None,
            f"r@{K}": round_figure(np.mean(np.minimum(K, candidates) / candidates)),
            f"hit@{K}": round_figure(np.mean(1 - miss))}


def feedback_gain(vectors: np.ndarray, ranked: np.ndarray, key: np.ndarray, partners: dict[int, set[int]],
                  judged: int = FEEDBACK_JUDGED) -> dict:
    """What one round of relevance feedback gains: every labelled row's top `judged` results are judged by label
    (as a person marking them would), its vector moved by Rocchio (feedback.py) and its neighbours ranked again.

    "p@5" is what the person sees after refining (the judged rows may come back: they are what they marked);
    "residual p@5" leaves the judged rows out of both rankings (the plain one's ranks judged+1..judged+5), the
    usual fair measure, since only rows nobody has looked at yet are new information."""
    from ..feedback import rocchio_rows

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    counts = relevant_counts(key, partners)
    queries = np.flatnonzero((key != "") & (counts > 0) & (ranked[:, judged - 1] >= 0))
    if not len(queries):
        return {"queries": 0}
    seen = ranked[queries, :judged]
    relevant = key[seen] == key[queries][:, None]
    refined = rocchio_rows(vectors, queries, seen, relevant)
    depth = judged + 5
    plain = metrics.rank_leave_one_out(vectors, depth, partners)[queries]
    # the refined query may find its own row and its near duplicates: never returned, as in leave-one-out
    after = metrics.top_k(refined, vectors, depth, self_positions=queries, exclude={
        i: partners.get(row, ()) for i, row in enumerate(queries.tolist())})
    residual = np.full((len(queries), 5), -1)
    for i, ranking in enumerate(after):
        fresh = [r for r in ranking if r >= 0 and r not in set(seen[i])][:5]
        residual[i, :len(fresh)] = fresh

    def precision(rows: np.ndarray) -> float:
        judged_rows = metrics.relevance(key[queries], key, rows)
        return round_figure(np.mean(metrics.precision_at_k(judged_rows, rows.shape[1])))

    plain_p5, after_p5 = precision(plain[:, :5]), precision(after[:, :5])
    plain_residual, after_residual = precision(plain[:, judged:depth]), precision(residual)
    return {"queries": int(len(queries)), "judged": judged, "label_p@5": plain_p5, "refined_label_p@5": after_p5,
            "gain": round_figure(after_p5 - plain_p5), "residual_label_p@5": plain_residual,
            "refined_residual_label_p@5": after_residual,
            "residual_gain": round_figure(after_residual - plain_residual)}


__all__ = ["judge", "relevant_counts", "random_expectation", "random_text_expectation", "feedback_gain",
           "FEEDBACK_JUDGED"]
