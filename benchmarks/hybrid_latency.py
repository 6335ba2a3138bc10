"""Hybrid text query latency: with and without the letter-n-gram TF-IDF component, with MiniLM encoded once per
query (xray-lite0's text head reading the minilm component's vectors) or once per component, as before, with
and without pseudo-relevance feedback (the fusion's first pass alone: hybrid.py), and with MiniLM's query expanded
(shipped: a second MiniLM pass when expansion adds words) or as typed.

    .venv/bin/python benchmarks/hybrid_latency.py --index DIR [--queries 360]

The variants run interleaved on one loaded engine, each query text through every variant in turn (the order
rotating), so each variant sees the same load on a shared machine: wall-clock median and 95th percentile per
query, and this process's CPU time per query. The index needs tfidf, tfidf-chars, minilm and xray-lite0.
Writes results/hybrid_latency.json.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from common import machine_snapshot, save, stats_ms

WARM_UP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", type=int, default=360, help="timed queries per variant")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    machine_snapshot()

    from retrieval.evaluation.queries import load_queries
    from retrieval.search import SearchEngine

    texts = [q.text for q in load_queries()[1]]
    engine = SearchEngine(args.index)
    fitted, shared = engine.policy.fusion(), engine.encoder.text_per_model
    without_chars = fitted.restricted([name for name in fitted.components if name != "tfidf-chars"])
    separate = lambda models, text, expanded=(): {  # noqa: E731 (before: MiniLM encoded per component)
        m: engine.encoder.texts(m, [engine.encoder.expanded_text(m, text) if m in expanded else text]) for m in models}
    variants = {  # name -> (fusion, how the components' vectors are made)
        "hybrid without tfidf-chars, MiniLM encoded per component (before)": (without_chars, separate),
        "hybrid with tfidf-chars, MiniLM encoded per component": (fitted, separate),
        "hybrid with tfidf-chars, MiniLM encoded once": (fitted.first_pass or fitted, shared),
        "hybrid with tfidf-chars, MiniLM encoded once, + feedback, MiniLM's query as typed (before)": (
            replace(fitted, expanded=tuple(n for n in fitted.expanded if n != "minilm")), shared),
        "hybrid with tfidf-chars, MiniLM encoded once, + feedback (shipped)": (fitted, shared),
    }
    if fitted.first_pass is None:
        del variants["hybrid with tfidf-chars, MiniLM encoded once, + feedback (shipped)"]
        del variants["hybrid with tfidf-chars, MiniLM encoded once, + feedback, MiniLM's query as typed (before)"]
    if "tfidf-chars" not in fitted.components:
        raise SystemExit(f"{args.index}: its fusion has no tfidf-chars component ({fitted.components}); "
                         "build it with tfidf-chars and run `python -m retrieval evaluate` first.")
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    names = list(variants)
    for text in texts[:WARM_UP]:
        for name in names:
            _search(engine, variants[name], text, args.k)
    for i in range(args.queries):  # each query through every variant in turn, the order rotating: paired
        text = texts[i % len(texts)]
        for name in names[i % len(names):] + names[:i % len(names)]:
            began, began_cpu = time.perf_counter(), time.process_time()
            _search(engine, variants[name], text, args.k)
            wall[name].append(time.perf_counter() - began)
            cpu[name].append(time.process_time() - began_cpu)
    results, rows = [], []
    for name in variants:
        stats = stats_ms(wall[name])
        stats["cpu_ms_per_query"] = round(1000 * sum(cpu[name]) / len(cpu[name]), 2)
        results.append({"variant": name, **stats})
        rows.append([name, stats["queries"], f"{stats['median_ms']:.1f}", f"{stats['p95_ms']:.1f}",
                     f"{stats['cpu_ms_per_query']:.1f}"])
    save("hybrid_latency", {"index": str(args.index), "k": args.k, "results": results},
         ["variant", "queries", "median ms", "p95 ms", "CPU ms/query"], rows)


def _search(engine, variant, text: str, k: int) -> None:
    from retrieval.hybrid import HYBRID

    fusion, encode = variant
    engine.policy.fusion, engine.encoder.text_per_model = (lambda: fusion), encode  # this variant's hybrid
    engine.search_text(text, model=HYBRID, k=k)


if __name__ == "__main__":
    main()
