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


# --- nested cross-source benchmarks (the training card's protocol: ensemble_centred.py, lora_tail.py) ----------
TRAINING_CARD = REPO / "assets" / "models" / "xray-lite0" / "training_card.json"


def figure_cell(row: dict, level: str) -> str:
    """A variant's outer P@5 at one level as 'mean over sources / pooled' ('–' where not measured)."""
    block = row.get(level) or {}
    if block.get("mean_over_sources") is None:
        return "–"
    return f"{block['mean_over_sources']:.3f} / {block['pooled']:.3f}"


def gain_cell(block: dict | None) -> str:
    """A bootstrap gain at one level (mean over sources) as '+0.012 [-0.003, +0.027]' ('–' where none)."""
    if not block or "mean_over_sources" not in block:
        return "–"
    return interval(block["mean_over_sources"])


def add_anatomy_gains(items, nested, table: dict, names, seed: int = 0) -> None:
    """The card's gains are category and label; add anatomy (body_part) the same way, in place."""
    from retrieval.evaluation.figures import ANATOMY
    from retrieval.training import selection

    for name in names:
        table[name]["gain_over_frozen"][ANATOMY] = selection.bootstrap_gain(selection.per_source_gain(
            items, nested.outer[name], nested.outer["reference"], ANATOMY), seed=seed)


def variant_rows(table: dict, order, levels) -> list[list]:
    """One table row per variant: its outer figures per level, its gains over frozen (category, label, anatomy,
    when `levels` has them) and the settings chosen per outer fold (or the picks of 'selected')."""
    rows = []
    for name in order:
        row = table[name]
        gains = row.get("gain_over_frozen", {})
        chosen = row.get("settings_chosen") or row.get("picked") or ["–"]
        rows.append([name if name != "reference" else "frozen efficientnet-lite0 (reference)",
                     *(figure_cell(row, level) for level in levels), *(gain_cell(gains.get(level)) for level in levels),
                     ", ".join("/".join(c) if isinstance(c, list) else str(c) for c in chosen)])
    return rows


def variant_header(levels) -> list[str]:
    """The header of `variant_rows`."""
    return ["variant (outer whole-source folds)", *(f"{level} P@5 (mean over sources / pooled)" for level in levels),
            *(f"{'anatomy' if level == 'body_part' else level} gain [95 % CI]" for level in levels),
            "settings chosen per outer fold"]


def nested_protocol(card: dict, nested, seed: int, outer_folds: int, inner_folds: int, candidates, same_data: bool,
                    **more) -> dict:
    """The protocol block of a nested benchmark's JSON: folds, criterion, bootstrap, candidates, card checks."""
    from retrieval.training import selection

    fold_sources, same_folds = same_folds_as_card(card, nested)
    return {"seed": seed, "outer_folds": outer_folds, "inner_folds": inner_folds,
            "criterion": "selection.score: category + label P@5, each a mean over held-out sources",
            "bootstrap": {"reps": selection.BOOTSTRAP_REPS, "seed": seed, "over": "outer held-out sources"},
            "candidates": list(candidates), "fold_sources": fold_sources,
            "same_data_as_card": same_data, "same_outer_folds_as_card": same_folds, **more}


def same_folds_as_card(card: dict, nested) -> tuple[dict, bool]:
    """({outer fold: held-out sources} of this run, whether the card's outer folds hold the same sources)."""
    fold_sources = {str(c["fold"]): c["held_out_sources"] for c in nested.choices}
    return fold_sources, card.get("evaluation", {}).get("cross_source", {}).get("fold_sources") == fold_sources


def json_plain(value):
    """json.dumps default for numpy scalars, sets and tuples."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (set, tuple)):
        return sorted(value) if isinstance(value, set) else list(value)
    raise TypeError(type(value))
