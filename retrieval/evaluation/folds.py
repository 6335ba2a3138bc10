"""Fold assignments: whole sources to cross-source folds, and stratified (category, label) folds within sources."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from .rows import Item


def _source_table(items: Sequence[Item]) -> tuple[list[str], dict[str, set[str]], dict[str, int]]:
    categories: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for item in items:
        categories[item.source].add(item.category)
        sizes[item.source] += 1
    return sorted(sizes), dict(categories), dict(sizes)


def assign_source_folds(items: Sequence[Item], k: int = 3, seed: int = 0, tries: int = 256) -> dict[str, int]:
    """{source: fold}: every source whole in one fold; each category's sources spread over as many folds as
    possible (min(#sources, k)); folds about the same size. Deterministic given (sources, k, seed).

    k is lowered to the number of sources when there are fewer; fewer than 2 sources is an error.
    """
    sources, categories, sizes = _source_table(items)
    if len(sources) < 2:
        raise ValueError(f"cross-source folds need at least 2 sources; the collection has {len(sources)}.")
    k = max(2, min(int(k), len(sources)))
    sources_per_category: dict[str, int] = defaultdict(int)
    for source in sources:
        for category in categories[source]:
            sources_per_category[category] += 1
    total = sum(sizes.values())
    rng = np.random.default_rng(seed)
    best, best_score = None, None
    for attempt in range(tries):
        # large sources first, ties and the whole order randomised per attempt (attempt 0: pure size order)
        noise = rng.random(len(sources)) if attempt else np.zeros(len(sources))
        order = sorted(range(len(sources)), key=lambda i: (-sizes[sources[i]] * (1 + 0.5 * noise[i]), sources[i]))
        fold_rows = [0] * k
        fold_categories: list[dict[str, int]] = [defaultdict(int) for _ in range(k)]
        assignment: dict[str, int] = {}
        for i in order:
            source = sources[i]
            costs = []
            for fold in range(k):
                clash = sum(fold_categories[fold][c] for c in categories[source])
                costs.append((clash, fold_rows[fold], fold))
            fold = min(costs)[2]
            assignment[source] = fold
            fold_rows[fold] += sizes[source]
            for c in categories[source]:
                fold_categories[fold][c] += 1
        spread_shortfall = sum(min(n, k) - sum(1 for f in range(k) if fold_categories[f][c] > 0)
                               for c, n in sources_per_category.items())
        empty = sum(1 for rows in fold_rows if rows == 0)
        imbalance = (max(fold_rows) - min(fold_rows)) / max(1, total)
        score = (empty, spread_shortfall, round(imbalance, 6))
        if best_score is None or score < best_score:
            best, best_score = assignment, score
    return {source: best[source] for source in sources}


def source_fold_of_rows(items: Sequence[Item], assignment: dict[str, int]) -> np.ndarray:
    """(n,) fold number of each row, from its source."""
    return np.asarray([assignment[item.source] for item in items], dtype=np.int64)


def folds_of_sources(items: Sequence[Item], fold_sources: dict) -> np.ndarray | None:
    """(n,) fold of each row from a recorded assignment {fold: [source, ...]} (a training card's outer folds), or
    None when the assignment does not place every row's source in exactly one fold."""
    assignment: dict[str, int] = {}
    try:
        for fold, sources in fold_sources.items():
            for source in sources:
                if source in assignment:
                    return None
                assignment[str(source)] = int(fold)
    except (AttributeError, TypeError, ValueError):
        return None
    if any(item.source not in assignment for item in items):
        return None
    return source_fold_of_rows(items, assignment)


def stratified_folds(items: Sequence[Item], k: int = 5, seed: int = 0) -> np.ndarray:
    """(n,) fold of each row: rows of each (category, label) stratum dealt round-robin after a seeded shuffle."""
    k = max(2, min(int(k), len(items)))
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[(item.category, item.label)].append(index)
    folds = np.zeros(len(items), dtype=np.int64)
    offset = 0
    for key in sorted(strata):
        members = np.asarray(strata[key])
        members = members[rng.permutation(len(members))]
        folds[members] = (np.arange(len(members)) + offset) % k
        offset = (offset + len(members)) % k  # small strata do not all land in fold 0
    return folds
