"""Which FAISS index a model's vectors get: exact search while it is fast, HNSW beyond, tuned by recall.

Below EXACT_LIMIT rows a flat inner-product index answers a query in milliseconds (15 ms at 100k x 512-d here,
benchmarks/search_scale.py) and is exact. Above it, HNSW: its efSearch is the smallest that reaches
RECALL_TARGET recall@10 against exact search on a sample of the collection's own vectors, measured at build
time and recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 50_000
RECALL_TARGET = 0.95
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 200
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)
RECALL_SAMPLE = 1000  # queries drawn from the collection's vectors to measure recall
RECALL_K = 10


@dataclass
class AnnChoice:
    index: object  # the faiss index, vectors added
    factory: str  # e.g. "Flat" or "HNSW32,efSearch=64"
    recall_at_10: float | None  # measured against exact search; None for an exact index


def choose_index(vectors: np.ndarray, exact_limit: int | None = None, seed: int = 0) -> AnnChoice:
    """An inner-product index over `vectors` (unit rows), exact or HNSW by size."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, dim = vectors.shape
    if rows <= (EXACT_LIMIT if exact_limit is None else exact_limit):
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return AnnChoice(index, "Flat", None)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    sample = np.random.default_rng(seed).choice(rows, size=min(RECALL_SAMPLE, rows), replace=False)
    queries = vectors[sample]
    k = min(RECALL_K, rows)
    truth = exact.search(queries, k)[1]
    recall = 0.0
    for ef in EF_SEARCH_STEPS:
        index.hnsw.efSearch = max(ef, k)
        found = index.search(queries, k)[1]
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
        if recall >= RECALL_TARGET:
            break
    return AnnChoice(index, f"HNSW{HNSW_M},efSearch={index.hnsw.efSearch}", round(recall, 4))


__all__ = ["AnnChoice", "choose_index", "EXACT_LIMIT", "RECALL_TARGET"]
