"""Cold start: seconds from `python app.py --index DIR` to the first answered text and image queries.

    .venv/bin/python benchmarks/cold_start.py --index index [--repeat 3]

Each run starts a fresh app process on a free port and polls it with gradio_client until /search_text answers
(the default model, k = 5), then sends one /search_image (a collection image, the default image model). Two kinds of
start alternate: a *first start* (an empty trace cache: MiniLM loads through transformers, is traced and its trace
saved) and a *restart* (the trace the first start saved: torch and tokenizers only; embedders/saved_traces.py).
The baseline, in the same run: a fresh Python process that only imports gradio (what any Gradio app pays before
its first line). Writes results/cold_start.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import COLLECTION, REPO, free_port, machine_snapshot, save, stop


def one_start(index: str, image: str, trace_cache: Path) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    log = Path(tempfile.gettempdir()) / "xray-cold-start.log"
    began = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--index", index, "--port", str(port)],
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                        "XRAY_TRACE_CACHE": str(trace_cache)})
    try:
        client = None
        while client is None:
            if process.poll() is not None or time.perf_counter() - began > 300:
                raise SystemExit(f"the app did not start; its log: {log}")
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
            except Exception:
                time.sleep(0.2)
        up = time.perf_counter() - began
        client.predict("knee radiograph", api_name="/search_text")
        text = time.perf_counter() - began
        client.predict(handle_file(image), api_name="/search_image")
        image_done = time.perf_counter() - began
        return {"page_up_s": round(up, 2), "first_text_s": round(text, 2), "first_image_s": round(image_done, 2)}
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(REPO / "index"))
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    machine_snapshot()
    image = str(next(Path(args.collection).glob("knee/*.jpg")))
    scratch = Path(tempfile.mkdtemp(prefix="xray-cold-start-"))
    one_start(args.index, image, scratch / "kept")  # saves the trace every restart reads
    runs = []
    for i in range(args.repeat):  # alternating, so both kinds see the same machine
        runs.append({"start": "first start", **one_start(args.index, image, scratch / f"empty-{i}")})
        runs.append({"start": "restart", **one_start(args.index, image, scratch / "kept")})
    shutil.rmtree(scratch, ignore_errors=True)
    imports = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gradio"], check=True, capture_output=True)
        imports.append(time.perf_counter() - began)
    rows = [[f"{r['start']} {i // 2 + 1}", r["page_up_s"], r["first_text_s"], r["first_image_s"]]
            for i, r in enumerate(runs)]
    rows.append(["baseline: `import gradio` alone", f"{min(imports):.2f}", "", ""])
    save("cold_start", {"runs": runs, "import_gradio_s": [round(s, 2) for s in imports]},
         ["run", "page up s", "first text answer s", "first image answer s"], rows)


if __name__ == "__main__":
    main()
