"""Hybrid text query latency: with and without the letter-n-gram TF-IDF component, with MiniLM encoded once per
query (xray-lite0's text head reading the minilm component's vectors) or once per component, as before, with
and without pseudo-relevance feedback (the fusion's first pass alone: hybrid.py), and with MiniLM's query expanded
(shipped: a second MiniLM pass when expansion adds words) or as typed, and the shipped hybrid with the speed-ups
of 2026-12-07 switched off (TF-IDF searched in FAISS rather than as a sparse matrix, MiniLM's weights cast to bf16
by autocast on every call rather than once, the feedback rows read with Arrow's take), and the shipped hybrid with
MiniLM's transformer run eagerly rather than as its TorchScript trace (builtin.MeanPooledEncoder, 2026-12-07 02:40).

    .venv/bin/python benchmarks/hybrid_latency.py --index DIR [--queries 360]

The variants run interleaved on one loaded engine, each query text through every variant in turn (the order
rotating), so each variant sees the same load on a shared machine: wall-clock median and 95th percentile per
query, and this process's CPU time per query. The index needs tfidf, tfidf-chars, minilm and xray-lite0.
Writes results/hybrid_latency.json.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

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
    variants["hybrid shipped, before the 12-07 speed-ups (TF-IDF in FAISS, autocast casting MiniLM's weights per "
             "call, feedback rows by Arrow's take)"] = (fitted, shared, "before")
    variants["hybrid shipped, MiniLM's transformer run eagerly (before its trace)"] = (fitted, shared, "eager")
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

    fusion, encode, *off = variant
    engine.policy.fusion, engine.encoder.text_per_model = (lambda: fusion), encode  # this variant's hybrid
    with _speed_ups_off(engine, off == ["before"]), _eager_minilm(off == ["eager"]):
        engine.search_text(text, model=HYBRID, k=k)


@contextmanager
def _eager_minilm(eager: bool):
    """While `eager`: the registered MiniLM encoder runs its transformer eagerly (as where tracing fails)."""
    from retrieval.embedders import get_embedder

    if not eager:
        yield
        return
    encoder = get_embedder("minilm")._model
    kept = encoder._trace
    encoder._trace = (encoder._model, encoder._bf16, None)
    try:
        yield
    finally:
        encoder._trace = kept


_BEFORE: dict = {}  # what the speed-ups replaced, made once: MiniLM's encoder with fp32 weights


@contextmanager
def _speed_ups_off(engine, off: bool):
    """While `off`: TF-IDF searched in FAISS, MiniLM run under autocast over its fp32 weights, the feedback rows'
    vectors read with the Arrow column's take (the code before 2026-12-07 00:47 UTC)."""
    if not off:
        yield
        return
    from retrieval import layout
    from retrieval.embedders import get_embedder
    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_location

    minilm = get_embedder("minilm")
    if "encoder" not in _BEFORE:
        _BEFORE["encoder"] = MeanPooledEncoder(_minilm_location()[0], "cpu", minilm._model._max_length, bf16=False)
        _BEFORE["encoder"]._bf16 = minilm._model._bf16  # autocast as before, casting the fp32 weights per call
        _BEFORE["encoder"]._trace = (_BEFORE["encoder"]._model, minilm._model._bf16, None)  # and eagerly
    store, kept_encoder, kept_rows = engine.store, minilm._model, layout.row_vectors
    kept_sparse = dict(store._sparse)
    store._sparse = {name: None for name in ("tfidf", "tfidf-chars")}
    minilm._model, layout.row_vectors = _BEFORE["encoder"], _taken_rows
    try:
        yield
    finally:
        store._sparse, minilm._model, layout.row_vectors = kept_sparse, kept_encoder, kept_rows


def _taken_rows(dataset, model, rows):
    """vector_columns.row_vectors before: the Arrow column's take, which joins every chunk first."""
    taken = dataset.data.column(model).take([int(r) for r in rows]).combine_chunks()
    return taken.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(rows), -1)


if __name__ == "__main__":
    main()
