"""Filtered search beside unfiltered on the real collection, and FAISS against Milvus Lite under the same filters.

    .venv/bin/python benchmarks/filters.py [--index DIR] [--repeat 3]     # ~3-4 min with the build

The collection's index is built once into a temporary folder (tfidf, minilm, xray-lite0), unless --index names
one already built. Queries are library calls, as the app makes them: every text query of
retrieval/queries/text_queries.json with minilm, and "more like this" from 40 rows spread over
the collection with xray-lite0 (its stored vectors: no image decoding is timed). Each runs under each filter of
a set read from the index itself (none; one category; a common and a rare view; a licence; a source with a view;
two values of one field with a second field), k=10, min_score=-1 (so every filter returns min(k, rows that
pass)), after one untimed pass. The same queries then run through a Milvus Lite file synced from the index
(FLAT, exact): the share of identical top-10 lists (same ids, same order), and the share identical up to the
order of exact score ties. Writes results/filters.json.

tfidf is left out of the timed queries: a keyword query that shares no word with the rows a filter passes ties
all of them at score 0, and keeping ties whole makes Milvus Lite fetch every passing row, doubling its limit
each round (seconds per query there; FAISS answers the same in milliseconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import COLLECTION, REPO, machine_snapshot, save, stats_ms

K = 10
TIE = 1e-5
MODELS = ["tfidf", "minilm", "xray-lite0"]


def filter_set(catalogue) -> dict[str, dict]:
    """Named filters over the index's own fields and values (most and least common among the rows)."""
    counts = catalogue.field_counts(catalogue.ids)
    common = lambda field, i=0: list(counts[field])[i]  # noqa: E731
    rare_view = min((v for v, n in counts["view"].items() if n > K), key=counts["view"].get)
    pairs = Counter((catalogue.value(row, "source"), catalogue.value(row, "view")) for row in range(len(catalogue)))
    source, source_view = next(pair for pair, _ in pairs.most_common() if all(pair))
    return {"none": {}, "category": {"category": common("category")}, "view (common)": {"view": common("view")},
            "view (rare)": {"view": rare_view}, "licence": {"license": common("license")},
            "source + view": {"source": source, "view": source_view},
            "2 views + licence": {"view": [common("view"), common("view", 1)], "license": common("license")}}


def queries(engine) -> list[tuple[str, object]]:
    texts = [q["text"] for q in json.loads((REPO / "retrieval/queries/text_queries.json").read_text())["queries"]]
    ids = engine.catalogue.ids[::max(1, len(engine) // 40)][:40]
    return ([(f"text/{model}", lambda e, f, t=text, m=model: e.search_text(t, model=m, k=K, filters=f, min_score=-1))
             for model in ("minilm",) for text in texts]
            + [("similar/xray-lite0", lambda e, f, i=i: e.similar(i, model="xray-lite0", k=K, filters=f, min_score=-1))
               for i in ids])


def same_up_to_ties(a, b) -> bool:
    if len(a) != len(b) or any(abs(x.score - y.score) > TIE for x, y in zip(a, b)):
        return False
    groups, start = [], 0
    for i in range(1, len(a) + 1):  # runs of equal scores; the last may be cut by k
        if i == len(a) or abs(a[i].score - a[start].score) > TIE:
            groups.append((start, i))
            start = i
    return all({h.id for h in a[s:e]} == {h.id for h in b[s:e]} for s, e in groups[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="an index of the collection already built (default: build one in a "
                                        "temporary folder)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the queries per filter")
    args = parser.parse_args()
    machine_snapshot()
    from retrieval import SearchEngine, build_index
    from retrieval.milvus_store import milvus_store

    folder = Path(tempfile.mkdtemp(prefix="filters-bench-"))
    try:
        index, build_s = args.index, None
        if index is None:
            began = time.perf_counter()
            index = folder / "index"
            build_index(COLLECTION, index, models=MODELS, progress=True)
            build_s = round(time.perf_counter() - began, 1)
        faiss_engine = SearchEngine(index)
        began = time.perf_counter()
        milvus_engine = SearchEngine(index, vector_store=milvus_store(folder / "filters.db"))
        sync_s = round(time.perf_counter() - began, 1)
        filters, calls = filter_set(faiss_engine.catalogue), queries(faiss_engine)
        results, rows = [], []
        for name, chosen in filters.items():
            passing = faiss_engine.catalogue.filters.allowed(
                {f: (v,) if isinstance(v, str) else tuple(v) for f, v in chosen.items()})
            passing = len(faiss_engine) if passing is None else int(passing.size)
            for kind in dict.fromkeys(kind for kind, _ in calls):
                mine = [call for k, call in calls if k == kind]
                timing = {}
                for store, engine in (("faiss", faiss_engine), ("milvus", milvus_engine)):
                    answers = [call(engine, chosen) for call in mine]  # untimed pass (warms caches)
                    seconds = []
                    for _ in range(args.repeat if store == "faiss" else 1):
                        for call in mine:
                            began = time.perf_counter()
                            call(engine, chosen)
                            seconds.append(time.perf_counter() - began)
                    timing[store] = (stats_ms(seconds), answers)
                faiss_answers, milvus_answers = timing["faiss"][1], timing["milvus"][1]
                identical = np.mean([[h.id for h in a] == [h.id for h in b]
                                     for a, b in zip(faiss_answers, milvus_answers)])
                tied = np.mean([same_up_to_ties(a, b) for a, b in zip(faiss_answers, milvus_answers)])
                full = np.mean([len(a) == K for a in faiss_answers])  # every filter here passes more than k rows
                result = {"filter": name, "filters": chosen, "rows_passing": passing, "query": kind,
                          "faiss": timing["faiss"][0], "milvus": timing["milvus"][0],
                          "identical_top10": round(float(identical), 3),
                          "identical_up_to_ties": round(float(tied), 3), "returned_k_share": round(float(full), 3)}
                results.append(result)
                rows.append([name, passing, kind, f"{result['faiss']['median_ms']:.2f}",
                             f"{result['faiss']['p95_ms']:.2f}", f"{result['milvus']['median_ms']:.2f}",
                             f"{identical:.3f}", f"{tied:.3f}"])
                print("  ".join(map(str, rows[-1])), flush=True)
        milvus_engine.store.close()
        agreement = {"identical_top10": round(float(np.mean([r["identical_top10"] for r in results
                                                             if r["filter"] != "none"])), 3),
                     "identical_up_to_ties": round(float(np.mean([r["identical_up_to_ties"] for r in results
                                                                  if r["filter"] != "none"])), 3)}
        save("filters", {"rows": len(faiss_engine), "k": K, "models": MODELS, "build_s": build_s,
                         "milvus_sync_s": sync_s, "repeat": args.repeat,
                         "agreement_over_filtered_queries": agreement, "results": results},
             ["filter", "rows passing", "query", "faiss median ms", "faiss p95 ms", "milvus median ms",
              "identical top-10", "identical up to ties"], rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
