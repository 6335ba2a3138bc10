"""Search at scale: the FAISS index the build chooses (retrieval/ann.py) against exact search, at 100k and 1M
vectors drawn like the collection's real embeddings, and uniform ones.

    .venv/bin/python benchmarks/search_scale.py [--sizes 100000,1000000] [--sets gmm:xray-lite0,uniform:256]
                                                [--small-sets gmm:efficientnet-lite0,gmm-raw:xray-lite0]
                                                [--alternatives "IVF4096,Flat"] [--seconds 5] [--index index]

Vector sets (every vector L2-normalised, as the index stores them):
  - gmm:MODEL: a 64-component Gaussian mixture with diagonal covariance (scikit-learn GaussianMixture) fitted to
    MODEL's 2,364 real vectors from the built index, in the PCA basis of those vectors (so the mixture keeps their
    correlations: 90 % of the variance in 57 of 256 directions for xray-lite0, as in the real vectors, 59);
  - gmm-raw:MODEL: the same mixture fitted in the original coordinates (a diagonal covariance there loses the
    correlations: 90 % of the variance needs 142 directions, so neighbours are harder to find than in real data);
  - uniform:DIM: standard normal vectors (the hardest case for any index: no structure at all).
--sets run at every size, --small-sets at the smallest only: HNSW builds slowly where vectors have no structure
(uniform 256-d: 109 s at 100k, about half an hour at 1M on 2 cores) and at 1280-d (1M x 1280-d is also 5 GB);
add `--sets gmm:xray-lite0,uniform:256` for the uniform case at 1M.
Queries are fresh draws from the same distribution, never indexed vectors: 500 tune the search parameter, 1,000
others measure recall@10 against exact search and single-query speed.

Rows per set and size:
  - exact: FAISS IndexFlatIP (the baseline; what the build uses below ann.EXACT_LIMIT rows);
  - build's choice: `ann.choose_index(vectors)` as `build` calls it (efSearch set at build time from the
    collection's own vectors), its build time including that measurement; recall on the held-out queries;
  - the same index with efSearch set by the recall target on the held-out tuning queries;
  - --alternatives (index_factory strings, at the largest size of the first set; default HNSW32, the same graph
    over float32 vectors): nprobe / efSearch by the same target ("IVF4096,Flat" for an inverted file).
Speed is one query at a time on one thread (faiss.omp_set_num_threads(1)) for up to --seconds per row; builds
use every core. Memory: the index as faiss.write_index writes it, and the process's resident set after the
build. The load average is recorded beside every row. Writes results/search_scale.json and .png.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from common import REPO, RESULTS, machine_snapshot, save

K = 10
COMPONENTS = 64
TUNE_QUERIES, EVAL_QUERIES = 500, 2000
TARGET = None  # ann.RECALL_TARGET, read in main() so the benchmark follows the build
NPROBE_STEPS = (8, 16, 32, 64, 128, 256, 512)


def main() -> None:
    global TARGET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--sets", default="gmm:xray-lite0")
    parser.add_argument("--small-sets", default="uniform:256,gmm:efficientnet-lite0,gmm-raw:xray-lite0")
    parser.add_argument("--alternatives", default="HNSW32", help="';'-separated index_factory strings (HNSW ones get "
                        "ann.py's efConstruction)")
    parser.add_argument("--name", default="search_scale", help="results file name (results/NAME.json)")
    parser.add_argument("--seconds", type=float, default=5.0, help="query time budget per row")
    parser.add_argument("--index", default=str(REPO / "index"), help="built index whose real vectors are modelled")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from results/search_scale.json")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / f"{args.name}.json").read_text())["results"], RESULTS / f"{args.name}.png")
        return
    machine_snapshot()
    import faiss

    from retrieval import ann

    TARGET = ann.RECALL_TARGET
    sizes = sorted(int(s) for s in args.sizes.split(","))
    plan = [(name, n) for n in sizes for name in args.sets.split(",") if name]
    plan += [(name, sizes[0]) for name in args.small_sets.split(",") if name]
    alternatives = [a for a in args.alternatives.split(";") if a]
    first = args.sets.split(",")[0]
    began_all = time.perf_counter()
    results, sources = [], {}
    for name, n in plan:
        began = time.perf_counter()
        draw, source = sampler(name, args.index)
        sources[name] = source
        data = draw(n, seed=1)
        tune, evaluate = draw(TUNE_QUERIES, seed=2), draw(EVAL_QUERIES, seed=3)
        truth_tune, truth_eval = exact_neighbours(data, tune, faiss), exact_neighbours(data, evaluate, faiss)
        print(f"\n{name} {n:,} x {data.shape[1]}: data and exact neighbours in {time.perf_counter() - began:.1f} s "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
        context = {"set": name, "n": n, "dim": int(data.shape[1])}
        results.append(measure_exact(data, evaluate, args.seconds, faiss) | context)
        report(results[-1])
        results += measure_build_choice(data, tune, truth_tune, evaluate, truth_eval, args.seconds, faiss, ann,
                                        context)
        if name == first and n == sizes[-1]:
            for factory in alternatives:
                gc.collect()
                results.append(measure_factory(factory, data, tune, truth_tune, evaluate, truth_eval, args.seconds,
                                               faiss, ann) | context)
                report(results[-1])
        del data
        gc.collect()
        write(args.name, results, sources, time.perf_counter() - began_all, faiss, ann, final=False)
    write(args.name, results, sources, time.perf_counter() - began_all, faiss, ann, final=True)


def write(name: str, results: list[dict], sources: dict, total: float, faiss, ann, final: bool) -> None:
    """The table and results/NAME.json (after every set and size, so an interrupted run keeps what it measured)."""
    import contextlib
    import io

    rows = [[r["set"], f"{r['n']:,}", r["dim"], r["method"], r["params"], fmt(r["build_s"], ".1f"),
             fmt(r["index_mb"], ",.0f"), fmt(r["rss_mb"], ",.0f"), r["queries"], f"{r['median_ms']:.3f}",
             f"{r['qps']:,.0f}", f"{r['recall@10']:.3f}", r["load_average"]] for r in results]
    with contextlib.redirect_stdout(io.StringIO()) if not final else contextlib.nullcontext():
        plot(results, RESULTS / f"{name}.png")
        save(name, {"k": K, "recall_target": TARGET, "sets": sources, "seconds": round(total, 1),
                    "query_threads": 1, "build_threads": faiss.omp_get_max_threads(),
                    "ann": {"exact_limit": ann.EXACT_LIMIT, "factory": ann.HNSW_FACTORY,
                            "ef_construction": ann.HNSW_EF_CONSTRUCTION},
                    "complete": final, "results": results},
             ["set", "vectors", "dim", "method", "parameters", "build s", "index MB", "RSS MB", "queries",
              "median ms", "queries/s (1 thread)", "recall@10", "load"], rows)
    if final:
        print(f"whole run: {total / 60:.1f} min")


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(r: dict) -> None:
    print(f"  {r['method']:<42} {r['params']:<24} build {fmt(r['build_s'], '.1f'):>6} s  "
          f"{fmt(r['index_mb'], ',.0f'):>6} MB  {r['qps']:>8,.0f} q/s  recall@10 {r['recall@10']:.3f}  "
          f"load {r['load_average']}", flush=True)


# --- vectors ---------------------------------------------------------------------------------------------------
def sampler(name: str, index: str):
    """(draw(n, seed) -> unit float32 rows, description) for a set name."""
    kind, _, arg = name.partition(":")
    if kind == "uniform":
        dim = int(arg)

        def draw(n, seed):
            rng = np.random.default_rng(seed)
            out = np.empty((n, dim), np.float32)
            for start in range(0, n, 100_000):
                block = rng.standard_normal((min(n, start + 100_000) - start, dim), dtype=np.float32)
                out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
            return out
        return draw, f"uniform: standard normal {dim}-d, L2-normalised"
    if kind not in ("gmm", "gmm-raw"):
        raise SystemExit(f"unknown vector set {name!r}: gmm:MODEL, gmm-raw:MODEL or uniform:DIM")
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from retrieval import SearchEngine

    real = SearchEngine(index).vectors(arg)
    rotation = PCA(random_state=0).fit(real) if kind == "gmm" else None
    fitted = rotation.transform(real) if rotation is not None else real
    mixture = GaussianMixture(COMPONENTS, covariance_type="diag", reg_covar=1e-6, random_state=0).fit(fitted)

    def draw(n, seed):
        mixture.random_state = np.random.RandomState(seed)  # one generator for every block (an int would repeat it)
        out = np.empty((n, real.shape[1]), np.float32)
        for start in range(0, n, 100_000):
            block = mixture.sample(min(n, start + 100_000) - start)[0]
            block = rotation.inverse_transform(block) if rotation is not None else block
            out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out
    basis = "in their PCA basis" if rotation is not None else "in the original coordinates"
    return draw, (f"{COMPONENTS}-component diagonal Gaussian mixture fitted to {len(real):,} real {arg} vectors "
                  f"({real.shape[1]}-d) {basis}, samples L2-normalised; {spectrum(real)} (real) vs "
                  f"{spectrum(draw(len(real), 99))} (sampled)")


def spectrum(vectors: np.ndarray) -> str:
    centred = vectors - vectors.mean(axis=0)
    variance = np.linalg.svd(centred, compute_uv=False) ** 2
    share = np.cumsum(variance) / variance.sum()
    return f"90 % of the variance in {int(np.searchsorted(share, 0.9)) + 1} directions"


def exact_neighbours(data: np.ndarray, queries: np.ndarray, faiss) -> np.ndarray:
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    return index.search(queries, K)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


# --- measurements ----------------------------------------------------------------------------------------------
def timed_queries(index, queries: np.ndarray, budget: float, faiss) -> dict:
    """One query at a time on one thread, for `budget` seconds (at least 20 queries; the held-out queries
    cycle when the budget outlasts them)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.search(queries[:1], K)  # warm-up
        seconds = []
        began = time.perf_counter()
        while len(seconds) < 20 or time.perf_counter() - began < budget:
            q = queries[len(seconds) % len(queries)][None, :]
            start = time.perf_counter()
            index.search(q, K)
            seconds.append(time.perf_counter() - start)
    finally:
        faiss.omp_set_num_threads(threads)
    values = np.asarray(seconds) * 1000
    return {"queries": len(values), "median_ms": round(float(np.median(values)), 4),
            "p95_ms": round(float(np.percentile(values, 95)), 4), "qps": round(float(1000 / values.mean()), 1),
            "load_average": round(os.getloadavg()[0], 2)}


def index_mb(index, faiss) -> float:
    """The index as faiss.write_index writes it (vectors or codes, graph, lists)."""
    with tempfile.NamedTemporaryFile(suffix=".faiss") as handle:
        faiss.write_index(index, handle.name)
        return round(Path(handle.name).stat().st_size / 2**20, 1)


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20)


def measure_exact(data, evaluate, budget, faiss) -> dict:
    began = time.perf_counter()
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    build = time.perf_counter() - began
    speed = timed_queries(index, evaluate, budget, faiss)
    return {"method": "exact (IndexFlatIP)", "params": "Flat", "build_s": round(build, 2),
            "index_mb": index_mb(index, faiss), "rss_mb": rss_mb(), "recall@10": 1.0, **speed}


def tune(index, knob: str, steps, queries, truth, faiss) -> tuple[int, float]:
    """The smallest setting of `knob` whose recall@10 on `queries` reaches TARGET (else the largest)."""
    space = faiss.ParameterSpace()
    reached = 0.0
    for value in steps:
        space.set_index_parameter(index, knob, value)
        reached = recall(index.search(queries, K)[1], truth)
        if reached >= TARGET:
            return value, reached
    return value, reached


def measure_build_choice(data, tune_q, truth_tune, evaluate, truth_eval, budget, faiss, ann, context) -> list[dict]:
    """ann.choose_index as the build calls it, then the same index tuned on held-out queries."""
    before = rss_mb()
    began = time.perf_counter()
    choice = ann.choose_index(data)
    build = time.perf_counter() - began
    size, rss = index_mb(choice.index, faiss), rss_mb()
    out = []
    if choice.recall_at_10 is None:  # exact: nothing to tune
        return out
    chosen = _graph(choice.index, faiss).hnsw.efSearch
    speed = timed_queries(choice.index, evaluate, budget, faiss)
    out.append({"method": "build's choice (ann.py), efSearch set at build", "params": choice.factory,
                "build_s": round(build, 1), "index_mb": size, "rss_mb": rss, "rss_growth_mb": rss - before,
                "build_time_recall": choice.recall_at_10,
                "recall@10": round(recall(choice.index.search(evaluate, K)[1], truth_eval), 4), **speed} | context)
    report(out[-1])
    ef, tuned_recall = tune(choice.index, "efSearch", ann.EF_SEARCH_STEPS, tune_q, truth_tune, faiss)
    speed = timed_queries(choice.index, evaluate, budget, faiss)
    out.append({"method": "same index, efSearch by held-out recall", "params": f"{ann.HNSW_FACTORY},efSearch={ef}",
                "build_s": None, "index_mb": size, "rss_mb": rss, "tuning_recall": round(tuned_recall, 4),
                "build_choice_ef_search": chosen,
                "recall@10": round(recall(choice.index.search(evaluate, K)[1], truth_eval), 4), **speed} | context)
    report(out[-1])
    del choice
    gc.collect()
    return out


def _graph(index, faiss):
    """The HNSW index inside an IDMap wrapper (or the index itself)."""
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def measure_factory(factory, data, tune_q, truth_tune, evaluate, truth_eval, budget, faiss, ann) -> dict:
    """An index_factory alternative, its search knob (nprobe or efSearch) set by the recall target."""
    before = rss_mb()
    began = time.perf_counter()
    index = faiss.index_factory(data.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("HNSW"):
        index.hnsw.efConstruction = ann.HNSW_EF_CONSTRUCTION
    if not index.is_trained:
        index.train(data[np.random.default_rng(0).choice(len(data), min(len(data), 200_000), replace=False)])
    index.add(data)
    build = time.perf_counter() - began
    size, rss = index_mb(index, faiss), rss_mb()
    knob, steps = ("nprobe", NPROBE_STEPS) if "IVF" in factory else ("efSearch", ann.EF_SEARCH_STEPS)
    value, tuned_recall = tune(index, knob, steps, tune_q, truth_tune, faiss)
    speed = timed_queries(index, evaluate, budget, faiss)
    result = {"method": "alternative, by held-out recall", "params": f"{factory},{knob}={value}",
              "build_s": round(build, 1), "index_mb": size, "rss_mb": rss, "rss_growth_mb": rss - before,
              "tuning_recall": round(tuned_recall, 4),
              "recall@10": round(recall(index.search(evaluate, K)[1], truth_eval), 4), **speed}
    del index
    return result


def plot(results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in results:
        marker = "s" if r["method"].startswith("exact") else ("o" if "held-out" in r["method"] else "^")
        ax.scatter(r["recall@10"], r["qps"], marker=marker, s=40 if r["n"] < 1_000_000 else 90)
        ax.annotate(f"{r['set']} {r['n'] // 1000:,}k\n{r['params']}", (r["recall@10"], r["qps"]), fontsize=6,
                    xytext=(4, 2), textcoords="offset points")
    ax.axvline(TARGET or 0.95, color="grey", linestyle=":")
    ax.axhline(2000, color="grey", linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 against exact search (held-out queries)")
    ax.set_ylabel("queries/s, one thread, one query at a time")
    ax.set_title("Search at scale: squares exact, triangles the build's choice, circles tuned on held-out queries")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
