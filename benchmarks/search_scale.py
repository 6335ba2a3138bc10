"""Search at scale: 10k, 100k and 1M synthetic unit vectors (512-d), FAISS flat / HNSW / IVF-PQ / IVF-SQ8 against
the classic approaches (scikit-learn `cosine_similarity` over the whole matrix, a NumPy matrix product).

    .venv/bin/python benchmarks/search_scale.py [--sizes 10000,100000,1000000] [--seconds 10]

Methods: FAISS flat inner product; HNSW (M=32, efConstruction=40) searched with efSearch 64 and 256; IVF-PQ
(sqrt(n) lists, 64 one-byte codes per vector) and IVF-SQ8 (sqrt(n) lists, 8 bits per dimension), each searched
with nprobe 16 and 64; scikit-learn cosine_similarity + full sort; NumPy matrix product + argpartition.
Vectors are clustered like embeddings (1,024 random unit centres plus Gaussian noise, then L2-normalised);
queries are fresh points from the same distribution. Queries run one at a time, as a search engine serves
them, for up to --seconds per method and size (at least 5, at most 200 queries). Recall@10 is measured
against exact search (FAISS flat, batched, over 200 queries). Memory is the size of the FAISS index as
written by `faiss.write_index` (vectors or codes, graph, lists); numpy and scikit-learn build nothing,
their "index" is the float32 matrix itself. Writes results/search_scale.json and .png.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np
import psutil

from common import RESULTS, machine_snapshot, save

DIM = 512
K = 10
CENTRES = 1024
TRUTH_QUERIES = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seconds", type=float, default=10.0, help="query time budget per method and size")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from results/search_scale.json")
    parser.add_argument("--methods", default="numpy,sklearn,faiss-flat,faiss-hnsw,faiss-ivfpq,faiss-ivfsq8")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / "search_scale.json").read_text())["results"], RESULTS / "search_scale.png")
        return
    machine_snapshot()
    import faiss

    methods = args.methods.split(",")
    results, rows = [], []
    for n in (int(s) for s in args.sizes.split(",")):
        began = time.perf_counter()
        data, queries = synthetic(n, TRUTH_QUERIES, seed=n)
        truth = exact_neighbours(data, queries)
        print(f"\n{n:,} vectors: data and exact neighbours in {time.perf_counter() - began:.1f} s")
        for method in methods:
            gc.collect()
            for result in run(method, data, queries, truth, args.seconds, faiss):
                result["n"] = n
                results.append(result)
                rows.append([f"{n:,}", method, result["params"], f"{result['build_s']:.1f}",
                             f"{result['memory_mb']:.0f}", result["queries"], f"{result['median_ms']:.2f}",
                             f"{result['qps']:.1f}", f"{result['recall@10']:.3f}"])
                print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
        del data, queries
    plot(results, RESULTS / "search_scale.png")
    save("search_scale", {"dim": DIM, "k": K, "data": f"{CENTRES} clustered unit centres + noise, L2-normalised",
                          "faiss_threads": faiss.omp_get_max_threads(), "results": results},
         ["vectors", "method", "parameters", "build s", "memory MB", "queries", "median ms", "queries/s",
          "recall@10"], rows)


def synthetic(n: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n + queries unit vectors around CENTRES random unit centres (cosine to the centre about 0.7)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n + queries, DIM), dtype=np.float32)
    for start in range(0, n + queries, 100_000):
        stop = min(n + queries, start + 100_000)
        block = centres[rng.integers(0, CENTRES, stop - start)]
        block += rng.standard_normal((stop - start, DIM), dtype=np.float32) / np.sqrt(DIM)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out[:n], np.ascontiguousarray(out[n:])


def exact_neighbours(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(data)
    return index.search(queries, K)[1]


def _serialised_mb(index, faiss) -> float:
    """Size of the index as FAISS writes it: what it holds in memory (vectors or codes, graph, lists)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".faiss") as handle:
        faiss.write_index(index, handle.name)
        return Path(handle.name).stat().st_size / 2**20


def run(method: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, budget: float,
        faiss) -> list[dict]:
    """Build (timed, memory measured) then, per search setting, single queries within the budget."""
    from sklearn.metrics.pairwise import cosine_similarity

    n = len(data)
    began = time.perf_counter()
    if method == "numpy":
        def search(q):
            scores = data @ q
            top = np.argpartition(-scores, K)[:K]
            return top[np.argsort(-scores[top])]
        variants, memory = {"exact": None}, data.nbytes / 2**20
    elif method == "sklearn":
        def search(q):  # what the classic scripts did: similarities to every row, then a full sort
            return np.argsort(-cosine_similarity(q[None, :], data)[0])[:K]
        variants, memory = {"exact": None}, data.nbytes / 2**20
    else:
        index, variants = _faiss_index(method, n, data, faiss)

        def search(q):
            return index.search(q[None, :], K)[1][0]
    build = time.perf_counter() - began
    if method not in ("numpy", "sklearn"):
        memory = _serialised_mb(index, faiss)
    results = []
    for params, apply in variants.items():
        if apply is not None:
            apply()
        found, seconds = [], []
        began = time.perf_counter()
        for q in queries:
            if len(seconds) >= 5 and time.perf_counter() - began > budget:
                break
            start = time.perf_counter()
            found.append(search(q))
            seconds.append(time.perf_counter() - start)
        recall = np.mean([len(set(map(int, f)) & set(map(int, t))) / K for f, t in zip(found, truth)])
        values = np.asarray(seconds) * 1000
        results.append({
            "method": method, "params": params, "build_s": round(build, 3), "memory_mb": round(memory, 1),
            "process_rss_mb": round(psutil.Process().memory_info().rss / 2**20), "queries": len(seconds),
            "median_ms": round(float(np.median(values)), 3), "p95_ms": round(float(np.percentile(values, 95)), 3),
            "qps": round(float(1000 / values.mean()), 1), "recall@10": round(float(recall), 4)})
    return results


def _faiss_index(method: str, n: int, data: np.ndarray, faiss):
    """The built index and its search settings {label: apply} (built once, searched with each setting)."""
    if method == "faiss-flat":
        index = faiss.IndexFlatIP(DIM)
        index.add(data)
        return index, {"exact": None}
    if method == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(data)
        return index, {f"M=32 efC=40 efS={ef}": (lambda ef=ef: setattr(index.hnsw, "efSearch", ef))
                       for ef in (64, 256)}
    nlist = max(16, int(round(np.sqrt(n))))  # ~1,000 lists at 1M keeps k-means training to seconds
    quantizer = faiss.IndexFlatIP(DIM)
    if method == "faiss-ivfpq":
        index = faiss.IndexIVFPQ(quantizer, DIM, nlist, 64, 8, faiss.METRIC_INNER_PRODUCT)
        codes = "PQ64x8"
    elif method == "faiss-ivfsq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        codes = "SQ8"
    else:
        raise SystemExit(f"unknown method {method!r}")
    sample = data[np.random.default_rng(0).choice(n, min(n, max(40 * nlist, 20_000)), replace=False)]
    index.train(sample)
    index.add(data)
    return index, {f"nlist={nlist} {codes} nprobe={probes}": (lambda probes=probes: setattr(index, "nprobe", probes))
                   for probes in (16, 64)}


def plot(results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def name(r):
        setting = r["params"].split()[-1] if r["params"] != "exact" else ""
        return f"{r['method']} {setting}".strip()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    built = set()
    for method in dict.fromkeys(name(r) for r in results):
        mine = [r for r in results if name(r) == method]
        n = [r["n"] for r in mine]
        line, = axes[0].plot(n, [r["qps"] for r in mine], marker="o", label=method)
        if mine[0]["method"] not in ("numpy", "sklearn") and mine[0]["method"] not in built:
            built.add(mine[0]["method"])  # one build per index, whatever the search setting
            axes[1].plot(n, [r["build_s"] for r in mine], marker="o", color=line.get_color())
        axes[2].plot(n, [r["recall@10"] for r in mine], marker="o", color=line.get_color())
    titles = ("single queries per second", "build seconds (numpy, sklearn: none)", "recall@10 vs exact")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_xlabel("vectors (512-d)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].set_ylim(0, 1.05)
    fig.legend(loc="center right", fontsize=8)
    fig.suptitle("Search at scale on this machine (one query at a time)")
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
