"""The app's API and page against the framework's floor: a no-op endpoint beside /search_text, gradio_client with
and without downloading the result images, and a real browser from Enter to the results on screen.

    .venv/bin/python benchmarks/api_latency.py [--index index] [--queries 100] [--browser-queries 20] [--no-browser]

The app is `app.build_demo` over the index plus one extra endpoint, `/noop` (returns a constant; added here, the
app has none), served by `app.launch` in a child process on a free localhost port, so client and server do not
share an interpreter. Measured, each after 5 untimed warm-ups, with the models already loaded:
  - /noop and /search_text (k = 10, tfidf, the default min_score) with `Client(url, download_files=False)`: the
    round trip of a search against the round trip of doing nothing through the same queue (target <= 1.3x);
  - /search_text k = 10 with the default Client, which downloads every result image one by one (target p50
    <= 250 ms), and k = 1; gradio_client opens a new httpx client per file (`httpx.stream`), so each download
    builds a fresh SSL context and loads the CA bundle (~35 ms here, even for http://localhost). Two ways around
    it from the caller's side, measured: the same Client given one shared `ssl.SSLContext` as `ssl_verify`
    (certificates still verified), and `download_files=False` with the 10 URLs fetched by one httpx.Client;
  - one result image fetched alone over HTTP (what each download costs);
  - in this process, where a search's server time goes: the app's handler (`Handlers.search_text`: the search
    and the cached thumbnails) and Gradio's postprocessing of a 10-image gallery, the way the app returned it
    before (PIL images, format "jpeg": each one encoded and hashed per query) and the way it does now (the stored
    JPEG thumbnails as files written once);
  - Chromium driven by Playwright (--no-sandbox --disable-gpu): type a query, press Enter, time until the result
    gallery shows every new image loaded (target <= 500 ms); queries alternate categories so each result set
    differs from the one before.
Writes results/api_latency.json.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, call_times, free_port, machine_snapshot, save, stats_ms, stop

WARM_UP = 5
CHROMIUM = Path(os.environ.get("XRAY_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-quic", "--no-first-run", "--disable-sync"]
QUERIES = ["knee osteoarthritis", "chest x-ray pneumonia", "dental panoramic", "hand radiograph of a child",
           "spine scoliosis", "wrist fracture", "covid-19 pneumonia", "knee fracture", "lung nodule",
           "severe knee osteoarthritis kl-4"]
BROWSER_QUERIES = ["knee osteoarthritis", "chest x-ray pneumonia", "dental panoramic", "spine scoliosis",
                   "hand radiograph of a child"]  # consecutive ones share no result


def serve(index: str, port: int) -> None:
    """Child process: the app plus /noop, until killed."""
    import gradio as gr

    import app
    from retrieval import SearchEngine

    engine = SearchEngine(index)
    demo = app.build_demo(engine)
    with demo:
        gr.api(lambda: "ok", api_name="noop")  # the floor: the queue and the protocol, no work
    app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    if hasattr(engine, "warm_up"):
        engine.warm_up(background=False)
    print("READY", flush=True)
    demo.block_thread()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(REPO / "index"))
    parser.add_argument("--queries", type=int, default=100, help="timed calls per client row")
    parser.add_argument("--browser-queries", type=int, default=20)
    parser.add_argument("--model", default="tfidf", help="text model of the searches")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # child process: serve on this port
    args = parser.parse_args()
    if args.serve:
        serve(args.index, args.serve)
        return
    machine_snapshot()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tempfile.gettempdir()) / "xray-api-latency-app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, __file__, "--index", args.index, "--serve", str(port)],
                                   cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    results, rows = {}, []
    try:
        _wait_ready(log_path, process)
        results.update(client_rows(url, args))
        results["postprocess"] = server_breakdown(args.index, args.model)
        if not args.no_browser:
            results["browser"] = browser_rows(url, args.browser_queries)
    finally:
        stop(process)
    floor = results["noop"]["median_ms"]
    labels = {"noop": "/noop, download_files=False (the floor)",
              "search_json": "/search_text k=10, download_files=False",
              "search_download": "/search_text k=10, default Client (downloads 10 images)",
              "search_k1_download": "/search_text k=1, default Client (downloads 1 image)",
              "search_download_shared_ssl": "/search_text k=10, Client(ssl_verify=one SSLContext), downloads 10",
              "search_json_then_fetch": "/search_text k=10, download_files=False + 10 GETs on one httpx.Client",
              "image_fetch": "GET one result image (localhost)"}
    for key, label in labels.items():
        r = results[key]
        rows.append([label, r["queries"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}",
                     f"{r['median_ms'] / floor:.2f}x", r["load_average"]])
    for key, r in results["postprocess"].items():
        rows.append([f"in process: {key}", r["queries"], f"{r['median_ms']:.1f}",
                     f"{r['p95_ms']:.1f}", "", r["load_average"]])
    if "browser" in results:
        for key, r in results["browser"].items():
            if isinstance(r, dict):
                rows.append([f"browser: Enter to {key}", r["queries"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}",
                             f"{r['median_ms'] / floor:.2f}x", r["load_average"]])
    results["search_over_noop"] = round(results["search_json"]["median_ms"] / floor, 2)
    save("api_latency", {"index": args.index, "model": args.model, "targets": {
        "search_over_noop": 1.3, "search_download_p50_ms": 250, "browser_ms": 500}, "results": results,
        "note": "gradio_client downloads each file with httpx.stream: a new client, SSL context and CA bundle load "
                "per file"},
         ["call", "queries", "median ms", "p95 ms", "vs /noop", "load"], rows)


def _wait_ready(log_path: Path, process, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited ({process.returncode}); its log: {log_path}")
        if "READY" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise SystemExit(f"the app did not start within {seconds} s; its log: {log_path}")


def _timed(run, count: int) -> dict:
    items = [QUERIES[i % len(QUERIES)] for i in range(count + WARM_UP)]
    return {**stats_ms(call_times(run, items, WARM_UP)), "load_average": round(os.getloadavg()[0], 2)}


def client_rows(url: str, args) -> dict:
    import httpx
    from gradio_client import Client

    downloads = tempfile.mkdtemp(prefix="xray-api-latency-")
    plain = Client(url, verbose=False, download_files=False)
    full = Client(url, verbose=False, download_files=downloads)
    out = {}

    def search(client, k):
        return lambda query: client.predict(query, args.model, k, api_name="/search_text")  # query, model, k

    out["noop"] = _timed(lambda _: plain.predict(api_name="/noop"), args.queries)
    print(f"/noop: {out['noop']['median_ms']} ms", flush=True)
    out["search_json"] = _timed(search(plain, 10), args.queries)
    print(f"/search_text k=10, no downloads: {out['search_json']['median_ms']} ms", flush=True)
    out["search_download"] = _timed(search(full, 10), args.queries)
    print(f"/search_text k=10, downloads: {out['search_download']['median_ms']} ms", flush=True)
    out["search_k1_download"] = _timed(search(full, 1), args.queries)
    shared = Client(url, verbose=False, download_files=downloads, ssl_verify=ssl.create_default_context())
    out["search_download_shared_ssl"] = _timed(search(shared, 10), args.queries)
    print(f"/search_text k=10, downloads, shared SSL context: {out['search_download_shared_ssl']['median_ms']} ms",
          flush=True)
    with httpx.Client() as http:
        def fetch_all(query):
            for item in plain.predict(query, args.model, 10, api_name="/search_text")[0]:
                http.get(item["image"]["url"]).raise_for_status()
        out["search_json_then_fetch"] = _timed(fetch_all, args.queries)
    gallery = plain.predict("knee osteoarthritis", args.model, 10, api_name="/search_text")[0]
    image_url = gallery[0]["image"]["url"]
    with httpx.Client() as http:
        out["image_fetch"] = _timed(lambda _: http.get(image_url).raise_for_status(), args.queries)
    out["image_bytes"] = [len(httpx.get(item["image"]["url"]).content) for item in gallery]
    print(f"one image GET: {out['image_fetch']['median_ms']} ms; sizes {out['image_bytes']}", flush=True)
    return out


def server_breakdown(index: str, model: str, repeats: int = 50) -> dict:
    """Where a search's server time goes: the handler (search and thumbnails), then Gradio's postprocessing of a
    10-image gallery as PIL images (encoded to JPEG and hashed on every query: the app before) and as the stored
    thumbnails written to files once and passed as paths (the app now)."""
    import gradio as gr

    import app
    from retrieval import SearchEngine

    engine = SearchEngine(index)
    handlers = app.Handlers(engine)
    out = {"handler Handlers.search_text k=10": _timed(lambda query: handlers.search_text(query, model, 10),
                                                       repeats)}
    catalogue = engine.catalogue
    ids = catalogue.ids[:: max(1, len(catalogue) // 10)][:10]
    images = [catalogue.thumbnail(item) for item in ids]
    for image in images:
        image.load()  # the app caches decoded thumbnails
    folder = Path(tempfile.mkdtemp(prefix="xray-thumbnails-"))
    paths = []
    for item, image in zip(ids, images):
        path = folder / f"{len(paths)}.jpg"
        path.write_bytes(catalogue.thumbnail_jpeg(item))  # the stored bytes, as the app serves them
        paths.append(str(path))
    for label, value, component in (
            ("gallery postprocess, 10 PIL images, format=jpeg (the app before)", images, gr.Gallery(format="jpeg")),
            ("gallery postprocess, 10 thumbnail files written once (the app now)", paths, gr.Gallery())):
        captions = [(item, f"#{i}") for i, item in enumerate(value)]
        component.postprocess(captions)  # warm-up
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            component.postprocess(captions)
            seconds.append(time.perf_counter() - began)
        out[label] = {**stats_ms(seconds), "load_average": round(os.getloadavg()[0], 2)}
        print(f"postprocess {label}: {out[label]['median_ms']} ms", flush=True)
    return out


def browser_rows(url: str, count: int) -> dict:
    if not CHROMIUM.is_file():
        return {"skipped": f"no browser at {CHROMIUM}"}
    from playwright.sync_api import sync_playwright

    loaded = """([selector, before]) => {
        const images = [...document.querySelectorAll(selector)];
        const sources = images.map(i => i.currentSrc || i.src).join('|');
        return images.length > 0 && sources !== before && images.every(i => i.complete && i.naturalWidth > 0);
    }"""
    first = """([selector, before]) => {
        const images = [...document.querySelectorAll(selector)];
        return images.length > 0 && images.map(i => i.currentSrc || i.src).join('|') !== before;
    }"""
    selector = "#text-results img"
    shown, complete = [], []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS,
            viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#text-query textarea")
        box = "#text-query textarea"
        for i in range(count + 2):  # two warm-ups
            query = BROWSER_QUERIES[i % len(BROWSER_QUERIES)]
            before = page.evaluate("(s) => [...document.querySelectorAll(s)].map(i => i.currentSrc || i.src)"
                                   ".join('|')", selector)
            page.fill(box, query)
            began = time.perf_counter()
            page.press(box, "Enter")
            page.wait_for_function(first, arg=[selector, before], polling=5)
            visible = time.perf_counter() - began
            page.wait_for_function(loaded, arg=[selector, before], polling=5)
            done = time.perf_counter() - began
            if i >= 2:
                shown.append(visible)
                complete.append(done)
        context.close()
    load = round(os.getloadavg()[0], 2)
    return {"first image element": {**stats_ms(shown), "load_average": load},
            "every image loaded": {**stats_ms(complete), "load_average": load}}


if __name__ == "__main__":
    main()
