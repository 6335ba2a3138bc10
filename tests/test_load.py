"""Load: ≥200 mixed text and image queries from ≥10 concurrent gradio_client clients against the app on
localhost — zero errors, and every answer equals the one the same query gets alone. Bounded in count and time."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from conftest import served_app  # noqa: E402

# slow for its own sake too: 216 queries under load (left out of the quick run: pytest -m "not slow")
pytestmark = pytest.mark.slow

CLIENTS = 12
QUERIES_PER_CLIENT = 18  # 216 in all
CALL_TIMEOUT = 180  # seconds for one answer under load
TEXTS = ["knee", "chest x-ray", "dental panoramic", "wrist fracture", "pneumonia", "scoliosis", "hand bone age",
         "kl-3 knee osteoarthritis", "covid-19", "lateral spine"]


def answer(client: Client, kind: str, query) -> list[tuple[str, float]]:
    if kind == "text":
        job = client.submit(query, api_name="/search_text")
    else:
        job = client.submit(handle_file(str(query)), api_name="/search_image")
    records = job.result(timeout=CALL_TIMEOUT)[1]
    return [(record["id"], round(record["score"], 4)) for record in records]


def test_concurrent_clients_get_the_answers_they_get_alone(subset_index, real_subset, tmp_path):
    import psutil

    with served_app(subset_index) as (engine, url):
        images = [real_subset / engine.catalogue.record(item)["file_name"] for item in engine.catalogue.ids[::24]][:5]
        queries = [("text", text) for text in TEXTS] + [("image", path) for path in images]
        process = psutil.Process(os.getpid())
        peak = {"rss": process.memory_info().rss}
        stop = threading.Event()

        def watch_memory():
            while not stop.wait(0.2):
                peak["rss"] = max(peak["rss"], process.memory_info().rss)

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        try:
            solo_client = Client(url, verbose=False, download_files=str(tmp_path / "solo"))
            alone = {(kind, str(query)): answer(solo_client, kind, query) for kind, query in queries}
            assert all(alone.values())

            def run_client(seed: int):
                client = Client(url, verbose=False, download_files=str(tmp_path / f"c{seed}"))
                plan = random.Random(seed).choices(queries, k=QUERIES_PER_CLIENT)
                outcomes = []
                for kind, query in plan:
                    try:
                        outcomes.append(((kind, str(query)), answer(client, kind, query), None))
                    except Exception as error:  # counted, then asserted to be none
                        outcomes.append(((kind, str(query)), None, repr(error)))
                return outcomes

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                results = [item for batch in pool.map(run_client, range(CLIENTS)) for item in batch]
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
    errors = [error for _, _, error in results if error]
    assert len(results) >= 200
    assert errors == [], errors[:3]
    mismatches = [key for key, got, _ in results if got != alone[key]]
    assert mismatches == []
    print(f"\nload: {len(results)} queries from {CLIENTS} clients in {elapsed:.1f} s = "
          f"{len(results) / elapsed:.1f} queries/s; peak RSS of the app process {peak['rss'] / 2**20:.0f} MiB")
