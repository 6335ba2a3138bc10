"""What every benchmark script shares: the machine description, timing statistics, the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
COLLECTION = REPO.parent / "shared" / "xray-collection"
sys.path.insert(0, str(REPO))  # scripts run as `python benchmarks/NAME.py` from anywhere

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Benchmarks measure and swap MiniLM's transformers module (embedding_throughput, hybrid_latency, ...): it loads through
# transformers, never from a saved trace; cold_start.py names a trace cache for each app it starts.
os.environ.setdefault("XRAY_TRACE_CACHE", "off")


def machine() -> dict:
    """Where and when a figure was measured: CPU, cores, memory, load, library versions."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for module in ("numpy", "faiss", "sklearn", "torch", "datasets", "gradio_client"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            pass
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu, "logical_cores": psutil.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False), "gpu": "none (CPU only)",
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "versions": versions}


def stats_ms(seconds: list[float]) -> dict:
    """Median, 95th percentile and mean of per-query times, in milliseconds, and queries per second."""
    import numpy as np

    values = np.asarray(seconds, dtype=np.float64) * 1000
    return {"queries": int(len(values)), "median_ms": round(float(np.median(values)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2), "mean_ms": round(float(values.mean()), 2),
            "qps": round(float(1000 / values.mean()), 1)}


def call_times(run, items, warm_up: int) -> list[float]:
    """Seconds of each `run(item)` after the first `warm_up` items, which are run untimed."""
    for item in items[:warm_up]:
        run(item)
    seconds = []
    for item in items[warm_up:]:
        began = time.perf_counter()
        run(item)
        seconds.append(time.perf_counter() - began)
    return seconds


def free_port() -> int:
    """A localhost port nobody listens on, for an app the benchmark starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process, timeout: float = 30) -> None:
    """Terminate a process the benchmark started, killing it if it does not exit in time."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def table(header: list[str], rows: list[list]) -> str:
    from retrieval.tables import format_table

    return format_table(header, rows)


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def interval(block: dict) -> str:
    """A bootstrap gain block ({'gain', 'ci95'}) as '+0.012 [-0.003, +0.027]'."""
    return f"{block['gain']:+.3f} [{block['ci95'][0]:+.3f}, {block['ci95'][1]:+.3f}]"


def save(name: str, payload: dict, header: list[str], rows: list[list]) -> Path:
    """Print the table (plain and Markdown) and write benchmarks/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_snapshot(), **payload,
               "table": {"header": header, "rows": rows}}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print()
    print(table(header, rows))
    print()
    print(markdown(header, rows))
    print(f"\nWrote {path.relative_to(REPO)} ({payload['machine']['date']}, {payload['machine']['cpu']}, "
          f"{payload['machine']['logical_cores']} cores)")
    return path


_SNAPSHOT: dict = {}


def machine_snapshot() -> dict:
    """The machine as seen when the script started (call early: the load average is taken then)."""
    if not _SNAPSHOT:
        _SNAPSHOT.update(machine())
    return {**_SNAPSHOT, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
