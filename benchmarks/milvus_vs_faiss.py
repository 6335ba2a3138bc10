"""Milvus Lite against FAISS at 100k synthetic 512-d unit vectors: insert rate, queries/s and recall@10.

    .venv/bin/python benchmarks/milvus_vs_faiss.py [--n 100000] [--seconds 20] [--indexes FLAT,HNSW]

Vectors are clustered like embeddings (1,024 random unit centres plus Gaussian noise, L2-normalised, as in
search_scale.py); queries are fresh points from the same distribution. FAISS is measured in this process
(exact IndexFlatIP, the app's default, and HNSW for reference); Milvus through `retrieval.milvus_store`, as the
app uses it: `MilvusStore.sync` streams a Dataset into a Milvus Lite file in batches of 1,000 (id lookup,
upsert, flush, index build), then `search` answers one query per call over gRPC. "Re-sync" is the same sync
run again with nothing to write. Queries run one at a time for up to --seconds per method (at least 5, at
most 500); recall@10 is against exact FAISS flat over the same queries. Writes results/milvus_vs_faiss.json.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine_snapshot, save, stats_ms

DIM = 512
K = 10
CENTRES = 1024
MAX_QUERIES = 500
HNSW = {"M": 16, "efConstruction": 200, "ef": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="query time budget per method")
    parser.add_argument("--indexes", default="FLAT,HNSW", help="Milvus index types to measure")
    args = parser.parse_args()
    machine_snapshot()
    import faiss

    data, queries = synthetic(args.n, MAX_QUERIES, seed=args.n)
    truth = exact(data, queries)
    results = [run_faiss("FLAT", data, queries, truth, args.seconds, faiss),
               run_faiss("HNSW", data, queries, truth, args.seconds, faiss)]
    dataset = as_dataset(data)
    for index in args.indexes.split(","):
        gc.collect()
        results.append(run_milvus(index.strip().upper(), dataset, queries, truth, args.seconds))
    rows = [[r["store"], r["index"], r["params"], f"{r['insert_s']:.1f}", f"{r['rows_per_s']:,.0f}",
             f"{r['resync_s']:.1f}" if r["resync_s"] is not None else "-", r["queries"],
             f"{r['median_ms']:.2f}", f"{r['qps']:.1f}", f"{r['recall@10']:.3f}"] for r in results]
    save("milvus_vs_faiss", {"n": args.n, "dim": DIM, "k": K,
                             "data": f"{CENTRES} clustered unit centres + noise, L2-normalised",
                             "faiss_threads": faiss.omp_get_max_threads(), "results": results},
         ["store", "index", "parameters", "insert s", "rows/s", "re-sync s", "queries", "median ms", "queries/s",
          "recall@10"], rows)


def synthetic(n: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n + queries unit vectors around CENTRES random unit centres (cosine to the centre about 0.7)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = centres[rng.integers(0, CENTRES, n + queries)]
    out += rng.standard_normal(out.shape, dtype=np.float32) / np.sqrt(DIM)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[:n], np.ascontiguousarray(out[n:])


def exact(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(data)
    return index.search(queries, K)[1]


def as_dataset(data: np.ndarray):
    """A Dataset shaped like an index's: id, the filterable metadata and one float32 vector column."""
    import datasets
    import pyarrow as pa

    n = len(data)
    table = pa.table({
        "id": [f"synthetic/{i:07d}" for i in range(n)],
        "category": [("chest", "knee", "hand", "spine", "dental", "fracture")[i % 6] for i in range(n)],
        "label": [""] * n,
        "source": ["synthetic"] * n,
        "vectors": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM),
    })
    return datasets.Dataset(table)


def timed_queries(search, queries: np.ndarray, seconds: float) -> tuple[list[float], list[list[int]], float]:
    """(seconds per query, rows per query, warm-up seconds): the last query runs first, untimed, because Milvus
    Lite loads segments and indexes on first use; then the others one at a time within the budget."""
    began = time.perf_counter()
    search(queries[-1])
    first = time.perf_counter() - began
    times, found = [], []
    budget = time.perf_counter() + seconds
    for query in queries[:-1]:
        began = time.perf_counter()
        found.append(search(query))
        times.append(time.perf_counter() - began)
        if len(times) >= 5 and time.perf_counter() > budget:
            break
    return times, found, first


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(rows) & set(truth[i].tolist())) / K for i, rows in enumerate(found)]))


def run_faiss(kind: str, data, queries, truth, seconds: float, faiss) -> dict:
    if kind == "FLAT":
        index, params = faiss.IndexFlatIP(DIM), "exact"
    else:
        index = faiss.IndexHNSWFlat(DIM, HNSW["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = HNSW["efConstruction"], HNSW["ef"]
        params = f"M={HNSW['M']} efConstruction={HNSW['efConstruction']} ef={HNSW['ef']}"
    began = time.perf_counter()
    index.add(data)
    insert = time.perf_counter() - began
    times, found, first = timed_queries(lambda q: index.search(q[None, :], K)[1][0].tolist(), queries, seconds)
    result = {"store": "faiss (in process)", "index": kind, "params": params, "insert_s": insert,
              "rows_per_s": len(data) / insert, "resync_s": None, "first_query_ms": round(first * 1000, 1),
              **stats_ms(times), "recall@10": recall(found, truth)}
    print("  ".join(f"{key}={value}" for key, value in result.items()))
    return result


def run_milvus(kind: str, dataset, queries, truth, seconds: float) -> dict:
    from retrieval.milvus_store import INDEXES, MilvusStore

    folder = Path(tempfile.mkdtemp(prefix="milvus-bench-"))
    try:
        with MilvusStore(folder / "bench.db", index=kind) as store:
            began = time.perf_counter()
            store.sync(dataset, ["vectors"], "bench")
            insert = time.perf_counter() - began
            began = time.perf_counter()
            again = store.sync(dataset, ["vectors"], "bench")["vectors"]
            resync = time.perf_counter() - began
            assert again.upserted == 0 and store.count("vectors") == len(dataset)
            times, found, first = timed_queries(lambda q: [row for row, _ in store.search("vectors", q, K)],
                                                queries, seconds)
        build, search = INDEXES[kind]
        params = " ".join(f"{k}={v}" for k, v in {**build, **search}.items()) or "exact"
        result = {"store": "milvus lite (gRPC)", "index": kind, "params": params, "insert_s": insert,
                  "rows_per_s": len(dataset) / insert, "resync_s": resync, "first_query_ms": round(first * 1000, 1),
                  **stats_ms(times),
                  "recall@10": recall(found, truth)}
        print("  ".join(f"{key}={value}" for key, value in result.items()))
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
