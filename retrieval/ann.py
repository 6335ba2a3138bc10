"""Which FAISS index a model's vectors get: exact search while it is fast, HNSW beyond, tuned by recall.

Below EXACT_LIMIT rows a flat inner-product index is exact and still answers in milliseconds. Above it, HNSW:
its efSearch is the smallest of EF_SEARCH_STEPS that reaches RECALL_TARGET recall@10 against exact search,
measured at build time on RECALL_SAMPLE of the collection's own vectors held out of the graph until then, and
recorded in the manifest. benchmarks/search_scale.py measures the choice at 100k and 1M against fresh queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 50_000
RECALL_TARGET = 0.95
HNSW_M = 32  # graph degree
# Vectors stored as float16: the same top 10 as float32 (0.999 of them at 1M), 60 % of the index memory, and
# 1.4-1.6x the queries/s at 1M (half the bytes fetched per visited node). Not IVF or a refine stage: the app's
# filtered search passes plain SearchParameters with an ID selector, which only flat and HNSW indexes accept.
HNSW_FACTORY = f"HNSW{HNSW_M},SQfp16"
HNSW_EF_CONSTRUCTION = 100  # 1M x 256-d: built in 5 min on 2 cores, recall 0.957 at efSearch 112 (search_scale.py)
EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512, 768, 1024)
RECALL_SAMPLE = 1000  # rows held out of the graph until efSearch is tuned on them
RECALL_K = 10


@dataclass
class AnnChoice:
    index: object  # the faiss index, vectors added
    factory: str  # e.g. "Flat" or "HNSW32,efSearch=64"
    recall_at_10: float | None  # measured against exact search; None for an exact index


def choose_index(vectors: np.ndarray, exact_limit: int | None = None, seed: int = 0) -> AnnChoice:
    """An inner-product index over `vectors` (unit rows; index ids are row positions), exact or HNSW by size."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, dim = vectors.shape
    if rows <= (EXACT_LIMIT if exact_limit is None else exact_limit) or rows < 2:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return AnnChoice(index, "Flat", None)
    # Queries that are in the graph land on themselves and find their neighbours through their own links, so
    # recall measured with them is optimistic (0.91 held out where they said 0.95, benchmarks/search_scale.py).
    # The sampled rows are therefore added after the tuning: held-out queries from the collection itself.
    held_out = np.sort(np.random.default_rng(seed).choice(rows, size=min(RECALL_SAMPLE, rows // 2), replace=False))
    kept = np.setdiff1d(np.arange(rows), held_out)
    graph = faiss.index_factory(dim, HNSW_FACTORY, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index = faiss.IndexIDMap(graph)  # ids are row positions whatever the order rows join the graph in
    base = vectors[kept]
    index.add_with_ids(base, kept)
    k = min(RECALL_K, len(kept))
    truth = kept[faiss.knn(vectors[held_out], base, k, metric=faiss.METRIC_INNER_PRODUCT)[1]]  # exact
    del base
    recall = 0.0
    for ef in EF_SEARCH_STEPS:
        graph.hnsw.efSearch = max(ef, k)
        found = index.search(vectors[held_out], k)[1]
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found.tolist(), truth.tolist())]))
        if recall >= RECALL_TARGET:
            break
    index.add_with_ids(vectors[held_out], held_out)
    return AnnChoice(index, f"{HNSW_FACTORY},efSearch={graph.hnsw.efSearch}", round(recall, 4))


__all__ = ["AnnChoice", "choose_index", "EXACT_LIMIT", "RECALL_TARGET"]
