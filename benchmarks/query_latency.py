"""End-to-end query latency (median, 95th percentile) for text and image queries, per model: through the
library, and through the running app with gradio_client.

    .venv/bin/python benchmarks/query_latency.py --index DIR [--queries 200] [--url http://127.0.0.1:7860/]
                                                 [--no-app] [--only text|image] [--collection DIR]

Text queries cycle through retrieval/queries/text_queries.json; image queries are collection files (spread over
every category) passed as paths, so decoding is included. Where an image query is embedded by two models (the
ranking one and the "no close match" judge's), each query is timed both ways in turn, the order alternating:
the passes side by side (what the engine does) and one after the other in the calling thread (what it did
before), the process's CPU time beside. Without --url the app is started as a subprocess
(`python app.py --index DIR`) on a free localhost port and stopped afterwards; if app.py is missing or does
not come up, that part is skipped with a message. Five warm-up queries per model are not timed.
Writes results/query_latency.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import COLLECTION, REPO, call_times, free_port, machine_snapshot, save, stats_ms, stop

WARM_UP = 5
APP_START_SECONDS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(REPO / "index"))
    parser.add_argument("--collection", default=str(COLLECTION), help="where the image queries come from")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per model and query type")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--url", help="a running app to query (default: start app.py on a free port)")
    parser.add_argument("--no-app", action="store_true", help="only the library")
    parser.add_argument("--only", choices=["text", "image"], help="only text or only image queries")
    args = parser.parse_args()
    machine_snapshot()

    from retrieval.evaluation.queries import load_queries
    from retrieval.search import SearchEngine

    texts = [q.text for q in load_queries()[1]]
    texts = (texts * (1 + (args.queries + WARM_UP) // len(texts)))[:args.queries + WARM_UP]
    images = _image_files(Path(args.collection), args.queries + WARM_UP)
    engine = SearchEngine(args.index)
    plans = [("text", name, texts) for name in engine.policy.models_for("text")]
    plans += [("image", name, images) for name in engine.policy.models_for("image")]
    plans = [plan for plan in plans if args.only in (None, plan[0])]

    results, rows = [], []
    for modality, name, items in plans:
        if modality == "image" and len(engine._judge_models(name) + [name]) > 1:
            results += _both_ways(engine, name, items, args.k)
            continue
        search = engine.search_text if modality == "text" else engine.search_image
        seconds = call_times(lambda item: search(item, model=name, k=args.k), items, WARM_UP)
        results.append({"path": "library", "query": modality, "model": name, **stats_ms(seconds)})
        print(f"library {modality:5s} {name}: median {results[-1]['median_ms']} ms")
    del engine

    app_note = None
    if not args.no_app:
        app_note = _through_app(args, plans, results)
    for r in results:
        rows.append([r["path"], r["query"], r["model"], r["queries"], f"{r['median_ms']:.1f}",
                     f"{r['p95_ms']:.1f}", f"{r['qps']:.1f}", r.get("cpu_median_ms", "")])
    save("query_latency", {"index": str(args.index), "k": args.k, "results": results, "app": app_note},
         ["path", "query", "model", "queries", "median ms", "p95 ms", "queries/s", "CPU median ms"], rows)


def _both_ways(engine, name: str, items: list[str], k: int) -> list[dict]:
    """An image query embedded by two models, timed with the passes side by side and in a row, in turn."""
    ways = {"library": True, "library (passes in a row)": False}
    seconds, cpu = {way: [] for way in ways}, {way: [] for way in ways}
    for i, item in enumerate(items):
        for way in (list(ways) if i % 2 else list(ways)[::-1]):
            engine.encoder.concurrent = ways[way]
            began, began_cpu = time.perf_counter(), time.process_time()
            engine.search_image(item, model=name, k=k)
            if i >= WARM_UP:
                seconds[way].append(time.perf_counter() - began)
                cpu[way].append(time.process_time() - began_cpu)
    engine.encoder.concurrent = True
    results = []
    for way in ways:
        results.append({"path": way, "query": "image", "model": name, **stats_ms(seconds[way]),
                        "cpu_median_ms": round(1000 * float(np.median(cpu[way])), 2)})
        print(f"{way} image {name}: median {results[-1]['median_ms']} ms (CPU {results[-1]['cpu_median_ms']} ms)")
    return results


def _image_files(collection: Path, count: int) -> list[str]:
    from retrieval.collection import local_rows

    rows = local_rows(collection)
    step = max(1, len(rows) // count)
    return [str(row.path) for row in rows[::step]][:count]


def _through_app(args, plans, results) -> str:
    """Query the app over HTTP with gradio_client; returns what was measured or why it was skipped."""
    from gradio_client import Client, handle_file

    process, log_path = None, None
    url = args.url
    if url is None:
        app = REPO / "app.py"
        if not app.is_file():
            print("app.py is not there yet: skipping the app measurements.")
            return "skipped: app.py missing"
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log_path = Path(tempfile.gettempdir()) / "xray-query-latency-app.log"  # outside the repository
        with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen([sys.executable, str(app), "--index", str(args.index), "--host",
                                        "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=log,
                                       stderr=subprocess.STDOUT,
                                       env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        client = _connect(Client, url, process)
        if client is None:
            return "skipped: the app did not answer" + (f" (its log: {log_path})" if log_path else "")
        for modality, name, items in plans:
            endpoint = f"/search_{modality}"
            query, model, k = _parameters(client, endpoint)[:3]  # the rest keep the app's defaults

            def run(item, endpoint=endpoint, query=query, model=model, k=k, name=name, modality=modality):
                value = item if modality == "text" else handle_file(item)
                return client.predict(**{query: value, model: name, k: args.k}, api_name=endpoint)

            seconds = call_times(run, items, WARM_UP)
            results.append({"path": "app (gradio_client)", "query": modality, "model": name, **stats_ms(seconds)})
            print(f"app     {modality:5s} {name}: median {results[-1]['median_ms']} ms")
        return f"measured at {url}" + (" (started by this script)" if process else "")
    finally:
        if process is not None:
            stop(process)


def _parameters(client, endpoint: str) -> list[str]:
    """The endpoint's parameter names in order (query or image, model, k, category, min_score)."""
    api = client.view_api(print_info=False, return_format="dict")
    return [p["parameter_name"] for p in api["named_endpoints"][endpoint]["parameters"]]


def _connect(Client, url: str, process):
    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            print(f"the app exited with code {process.returncode}: skipping the app measurements.")
            return None
        try:
            return Client(url, verbose=False)
        except Exception:
            time.sleep(2)
    print(f"the app did not answer at {url} within {APP_START_SECONDS} s: skipping the app measurements.")
    return None


if __name__ == "__main__":
    main()
