"""Evaluation protocols (cross-source folds, in-source out-of-fold, in-sample leave-one-out, text on pixels):
the referee that decides which model ships. Each takes vectors (or a per-fold embedding function), not a model,
and judges with the same ranking and P@k as `evaluate` (metrics.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import metrics
from .figures import ANATOMY, CATEGORY, LABEL, LEVELS
from .folds import assign_source_folds, source_fold_of_rows
from .queries import TextQuery
from .rows import Item

K_PRECISION = 5
K_MAP = 10

# embed(train_rows) -> (n, dim) unit vectors of EVERY row, from a model fitted on train_rows only
FoldEmbedder = Callable[[np.ndarray], np.ndarray]


def _keys(items: Sequence[Item]) -> dict[str, np.ndarray]:
    """What a query's relevant rows share, per level: LEVELS, and the body part where the rows name one
    (reported, never chosen on: figures.ANATOMY)."""
    keys = {CATEGORY: np.asarray([i.category for i in items], dtype=object),
            LABEL: np.asarray([i.key for i in items], dtype=object)}
    if any(i.body_part for i in items):
        keys[ANATOMY] = np.asarray([i.body_part for i in items], dtype=object)
    return keys


def _judge(relevant: np.ndarray, n_relevant: np.ndarray) -> dict:
    """Per-query P@5 and AP@10 arrays (NaN where the query has no relevant row to find)."""
    judged = n_relevant > 0
    p5 = metrics.precision_at_k(relevant, K_PRECISION)
    ap = metrics.average_precision_at_k(relevant, n_relevant, K_MAP)
    return {"p@5": np.where(judged, p5, np.nan), "map@10": np.where(judged, ap, np.nan)}


@dataclass
class QueryResults:
    """Per-query figures of one protocol run (NaN = no relevant row to find, excluded from the means)."""

    rows: np.ndarray  # row numbers of the queries
    per_level: dict  # level -> {"p@5": array, "map@10": array, "top": (q, k) row numbers}

    def summary(self, items: Sequence[Item]) -> dict:
        out = {}
        cats = np.asarray([items[r].category for r in self.rows], dtype=object)
        srcs = np.asarray([items[r].source for r in self.rows], dtype=object)
        for level, figures in self.per_level.items():
            p5, ap = figures["p@5"], figures["map@10"]
            judged = ~np.isnan(p5)
            block = {"p@5": _mean(p5), "map@10": _mean(ap), "queries": int(judged.sum()),
                     "excluded_no_relevant": int((~judged).sum())}
            per_source = {s: _group(p5, ap, srcs == s) for s in sorted(set(srcs))}
            judged_sources = [v["p@5"] for v in per_source.values() if v["p@5"] is not None]
            block["p@5_mean_over_sources"] = round(float(np.mean(judged_sources)), 4) if judged_sources else None
            block["per_category"] = {c: _group(p5, ap, cats == c) for c in sorted(set(cats))}
            judged_categories = [v["p@5"] for v in block["per_category"].values() if v["p@5"] is not None]
            block["p@5_mean_over_categories"] = (round(float(np.mean(judged_categories)), 4)
                                                if judged_categories else None)
            block["per_source"] = per_source
            out[level] = block
        return out


def _mean(values: np.ndarray):
    values = values[~np.isnan(values)]
    return round(float(values.mean()), 4) if values.size else None


def _group(p5: np.ndarray, ap: np.ndarray, mask: np.ndarray) -> dict:
    judged = mask & ~np.isnan(p5)
    return {"p@5": _mean(p5[mask]), "map@10": _mean(ap[mask]), "queries": int(judged.sum()),
            "excluded_no_relevant": int((mask & np.isnan(p5)).sum())}


def _search(items: Sequence[Item], vectors: np.ndarray, query_rows: np.ndarray, index_rows: np.ndarray,
            exclude_self: bool, per_level: dict, keys: dict) -> None:
    """Rank `index_rows` for each query and judge every level; anatomy ranks only the rows that name a body
    part (an unnamed row is neither right nor wrong about anatomy)."""
    ranked = _rank(vectors, query_rows, index_rows, exclude_self)
    for level, key in keys.items():
        if level == ANATOMY:
            named = index_rows[key[index_rows] != ""]
            _judge_level(query_rows, named, _rank(vectors, query_rows, named, exclude_self), exclude_self, per_level,
                         level, key)
        else:
            _judge_level(query_rows, index_rows, ranked, exclude_self, per_level, level, key)


def _rank(vectors: np.ndarray, query_rows: np.ndarray, index_rows: np.ndarray, exclude_self: bool) -> np.ndarray:
    """(queries, K_MAP) row numbers of each query's nearest `index_rows` (-1 where fewer), itself left out."""
    position = {int(r): p for p, r in enumerate(index_rows)}
    self_pos = np.asarray([position.get(int(r), -1) for r in query_rows]) if exclude_self else None
    ranked_pos = metrics.top_k(vectors[query_rows], vectors[index_rows], K_MAP, self_positions=self_pos)
    return np.where(ranked_pos >= 0, index_rows[np.maximum(ranked_pos, 0)], -1)


def _judge_level(query_rows: np.ndarray, index_rows: np.ndarray, ranked: np.ndarray, exclude_self: bool,
                 per_level: dict, level: str, key: np.ndarray) -> None:
    counts = defaultdict(int)
    for value in key[index_rows].tolist():
        counts[value] += 1
    n_rel = np.asarray([counts[k] if k else 0 for k in key[query_rows].tolist()], dtype=np.float64)
    if exclude_self:  # the query itself is in the index when it is searchable: not a row to find
        searchable = set(index_rows.tolist())
        n_rel -= np.asarray([1.0 if (int(r) in searchable and k) else 0.0 for r, k in zip(query_rows, key[query_rows])])
    judged = _judge(metrics.relevance(key[query_rows], key, ranked), n_rel)
    target = per_level.setdefault(level, {"p@5": [], "map@10": [], "top": []})
    target["p@5"].append(judged["p@5"])
    target["map@10"].append(judged["map@10"])
    target["top"].append(ranked)


def _finish(rows: list[np.ndarray], per_level: dict) -> QueryResults:
    order = np.concatenate(rows)
    return QueryResults(order, {level: {name: np.concatenate(parts) for name, parts in figures.items()}
                                for level, figures in per_level.items()})


# --- protocols ------------------------------------------------------------------------------------------------
def cross_source_folds(items: Sequence[Item], k: int = 3, seed: int = 0) -> np.ndarray:
    """(n,) cross-source fold of each row (whole sources per fold; see folds.assign_source_folds)."""
    return source_fold_of_rows(items, assign_source_folds(items, k, seed))


def cross_source(items: Sequence[Item], embed: FoldEmbedder, folds: np.ndarray) -> QueryResults:
    """Each held-out fold's rows query an index of the OTHER folds' rows, with vectors from a model fitted on
    the other folds only. Queries with no relevant row in that index are excluded from the means (counted)."""
    return _out_of_fold(items, embed, folds, whole_collection=False)


def in_source_out_of_fold(items: Sequence[Item], embed: FoldEmbedder, folds: np.ndarray) -> QueryResults:
    """Stratified folds: held-out rows (vectors from a model fitted on the other folds) query the whole
    collection minus themselves."""
    return _out_of_fold(items, embed, folds, whole_collection=True)


def _out_of_fold(items: Sequence[Item], embed: FoldEmbedder, folds: np.ndarray,
                 whole_collection: bool) -> QueryResults:
    """For each fold: fit on the others, then its rows query the other folds' rows (or every row but
    themselves)."""
    keys = _keys(items)
    per_level: dict = {}
    rows = []
    everything = np.arange(len(items))
    for fold in sorted(set(folds.tolist())):
        train = np.nonzero(folds != fold)[0]
        held = np.nonzero(folds == fold)[0]
        vectors = embed(train)
        _search(items, vectors, held, everything if whole_collection else train, whole_collection, per_level, keys)
        rows.append(held)
    return _finish(rows, per_level)


def search_rows(items: Sequence[Item], vectors: np.ndarray, query_rows: np.ndarray,
                index_rows: np.ndarray) -> QueryResults:
    """`query_rows` query an index of `index_rows` (disjoint) with the given vectors: one held-out fold of a
    cross-source run, for callers that choose the folds themselves (training/selection.py)."""
    per_level: dict = {}
    _search(items, vectors, np.asarray(query_rows), np.asarray(index_rows), False, per_level, _keys(items))
    return _finish([np.asarray(query_rows)], per_level)


def concat(results: Sequence[QueryResults]) -> QueryResults:
    """Per-query results of several folds as one run."""
    return QueryResults(np.concatenate([r.rows for r in results]),
                        {level: {name: np.concatenate([r.per_level[level][name] for r in results])
                                 for name in results[0].per_level[level]} for level in results[0].per_level})


def in_sample_leave_one_out(items: Sequence[Item], vectors: np.ndarray) -> QueryResults:
    """In-sample (optimistic): one model fitted on every row; each row queries all the others."""
    keys = _keys(items)
    per_level: dict = {}
    everything = np.arange(len(items))
    _search(items, vectors, everything, everything, True, per_level, keys)
    return _finish([everything], per_level)


def no_relevant_report(items: Sequence[Item], folds: np.ndarray) -> dict:
    """Which held-out sources have no possible relevant row in the other folds, per level (counts of rows)."""
    keys = _keys(items)
    out = {}
    for level in LEVELS:
        key = keys[level]
        missing: dict[str, int] = defaultdict(int)
        for fold in sorted(set(folds.tolist())):
            present = set(key[folds != fold].tolist())
            for r in np.nonzero(folds == fold)[0]:
                if not key[r] or key[r] not in present:
                    missing[f"fold {fold} · {items[r].source} · {items[r].category}"] += 1
        out[level] = dict(sorted(missing.items()))
    return out


# --- text on pixels -------------------------------------------------------------------------------------------
def text_on_pixels(items: Sequence[Item], image_vectors: np.ndarray, text_vectors: np.ndarray,
                   queries: Sequence[TextQuery], candidates: np.ndarray | None = None) -> dict:
    """Text queries (embedded by the text head) searched against IMAGE vectors only (captions never read).
    category P@5 over every query; label P@5 over the queries that name labels. `candidates`: the rows that
    may be returned (default all); queries with no relevant candidate are excluded and counted."""
    rows = np.arange(len(items)) if candidates is None else np.asarray(candidates)
    cats = np.asarray([items[r].category for r in rows], dtype=object)
    labels = np.asarray([items[r].label for r in rows], dtype=object)
    ranked = metrics.top_k(text_vectors, image_vectors[rows], K_MAP)
    result = {}
    for level in LEVELS:
        p5, ap, per_query = [], [], []
        for q, query in enumerate(queries):
            if level != CATEGORY and not query.labels:
                continue
            target = query.relevant(cats, labels, level)
            if not target.any():
                continue
            hits = np.where(ranked[q] >= 0, target[np.maximum(ranked[q], 0)], False)
            p = metrics.precision_at_k(hits, K_PRECISION)
            ap.append(metrics.average_precision_at_k(hits, target.sum(), K_MAP))
            p5.append(p)
            per_query.append({"text": query.text, "p@5": round(p, 2),
                              "top5": [items[rows[i]].id for i in ranked[q][:K_PRECISION] if i >= 0]})
        result[level] = {"p@5": round(float(np.mean(p5)), 4) if p5 else None,
                         "map@10": round(float(np.mean(ap)), 4) if ap else None,
                         "queries": len(p5), "per_query": per_query}
    return result
