"""Index build time and peak memory for 25 %, 50 % and 100 % of the collection.

    .venv/bin/python benchmarks/build_scaling.py [--collection DIR] [--fractions 0.25,0.5,1] [--models a,b,c]

Each fraction is a stratified sample (the same share of every category, fixed seed) linked into a temporary
folder, built from scratch into a temporary index by `python -m retrieval build` in its own process, so its
peak resident memory (ru_maxrss from wait4) and wall time belong to that build alone: validation, reading,
embedding with every model, FAISS indexes. Each share is built --repeat times (default 2) and the fastest
wall time is reported (on a shared machine the slower runs measure the other jobs); the peak memory is the
largest of the runs. Writes results/build_scaling.json and .png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import COLLECTION, REPO, RESULTS, machine_snapshot, save

FIELDS = ["file_name", "category", "label", "view", "caption", "source", "source_url", "license"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--models", default="tfidf,minilm,efficientnet-lite0")
    parser.add_argument("--repeat", type=int, default=2, help="builds per share; the fastest one is reported "
                                                             "(the machine is shared, so slower runs measure others)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary collections and indexes")
    args = parser.parse_args()
    machine_snapshot()

    source = Path(args.collection).resolve()
    with (source / "metadata.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    work = Path(tempfile.mkdtemp(prefix="build-scaling-"))
    results, rows = [], []
    try:
        for fraction in (float(f) for f in args.fractions.split(",")):
            collection = sample(source, records, fraction, work / f"collection-{fraction:g}")
            runs = []
            for attempt in range(args.repeat):
                runs.append(build(collection, work / f"index-{fraction:g}-{attempt}", args.models))
                print(f"{fraction:.0%} run {attempt + 1}: {runs[-1]['seconds']:.0f} s", flush=True)
            result = {**min(runs, key=lambda r: r["seconds"]), "fraction": fraction,
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": runs}
            results.append(result)
            models = ", ".join(f"{name} {m['seconds']:.0f}" for name, m in result["model_seconds"].items())
            rows.append([f"{fraction:.0%}", result["rows"], f"{result['seconds']:.0f}", f"{result['cpu_seconds']:.0f}",
                         f"{result['seconds'] / result['rows'] * 1000:.0f}", models,
                         f"{result['peak_rss_mb']:.0f}", f"{result['index_mb']:.0f}"])
            print("  ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    plot(results, RESULTS / "build_scaling.png")
    save("build_scaling", {"collection": str(source), "models": args.models.split(","), "results": results},
         ["share", "rows", "build s", "CPU s", "ms/row", "seconds per model", "peak RSS MB", "index MB"], rows)


def sample(source: Path, records: list[dict], fraction: float, target: Path) -> Path:
    """The same share of every category (seeded), as symlinks to the collection's files and a metadata.csv."""
    rng = np.random.default_rng(0)
    by_category: dict[str, list[dict]] = {}
    for record in records:
        by_category.setdefault(record["category"], []).append(record)
    keep = []
    for category in sorted(by_category):
        members = by_category[category]
        chosen = sorted(rng.permutation(len(members))[:math.ceil(fraction * len(members))])
        keep += [members[i] for i in chosen]
    for record in keep:
        link = target / record["file_name"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source / record["file_name"])
    with (target / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
    return target


def build(collection: Path, index: Path, models: str) -> dict:
    out, err = index.parent / f"{index.name}.out", index.parent / f"{index.name}.err"
    command = [sys.executable, "-m", "retrieval", "build", "--collection", str(collection), "--index", str(index),
               "--models", models, "--json"]
    load = [round(x, 2) for x in os.getloadavg()]
    began = time.perf_counter()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"build failed ({process.returncode}):\n{err.read_text()[-3000:]}")
    report = json.loads(out.read_text())
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(index, ignore_errors=True)
    return {"load_average_at_start": load, "rows": report["rows"], "seconds": round(seconds, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "index_mb": round(size / 2**20, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "model_seconds": {name: {"seconds": round(m["seconds"], 1), "embedded": m["embedded"]}
                              for name, m in report["models"].items()}}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r["rows"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(rows, [r["seconds"] for r in results], marker="o", label="total")
    for name in results[0]["model_seconds"]:
        axes[0].plot(rows, [r["model_seconds"][name]["seconds"] for r in results], marker=".", linestyle="--",
                     label=name)
    axes[0].set_ylabel("seconds")
    axes[0].legend(fontsize=8)
    axes[1].plot(rows, [r["peak_rss_mb"] for r in results], marker="o", color="tab:red")
    axes[1].set_ylabel("peak resident memory (MB)")
    axes[1].set_ylim(bottom=0)
    for ax, title in zip(axes, ("build time", "peak memory")):
        ax.set_xlabel("images in the collection")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
