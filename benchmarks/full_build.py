"""A full build of the whole collection from scratch with the default offline models, against the 45 s target.

    .venv/bin/python benchmarks/full_build.py [--collection DIR] [--models tfidf,minilm,efficientnet-lite0,xray-lite0]
                                              [--repeat 1]

`python -m retrieval build --collection DIR --index TMP --models ... --json` in its own process into an empty
temporary folder (removed afterwards): validation (every image decoded and hashed), reading, thumbnails,
embedding with every model, the FAISS indexes. Wall time, CPU time and peak resident memory (wait4) of that
process, and each model's seconds from the build's own report, with the load average before and after. The
baselines printed beside it: this build before the folded backbone, bf16 and the shared decode (2026-12-03,
250 s), and the 2026-11-22 build of the then 1,950-image collection with three models (113 s, build_scaling.py).
Writes results/full_build.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from build_scaling import build
from common import COLLECTION, machine_snapshot, save

TARGET_SECONDS = 45
BEFORE = [  # earlier runs of this build, for the table (figures as measured then)
    {"seconds": 250, "rows": 2364, "models": "tfidf,minilm,efficientnet-lite0,xray-lite0",
     "label": "before the folded backbone and bf16 (4 models)",
     "per_model": "tfidf 2, minilm 34, efficientnet-lite0 89, xray-lite0 92",
     "source": "this script, 2026-12-03 14:10 UTC, load 0.4 / 1.7"},
    {"seconds": 113, "rows": 1950, "models": "tfidf,minilm,efficientnet-lite0", "label": "before (3 models)",
     "per_model": "", "source": "build_scaling.py, 2026-11-22, load 1-2"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--models", default="tfidf,minilm,efficientnet-lite0,xray-lite0")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    machine_snapshot()
    work = Path(tempfile.mkdtemp(prefix="full-build-"))
    runs = []
    try:
        for attempt in range(args.repeat):
            run = build(Path(args.collection).resolve(), work / f"index-{attempt}", args.models)
            run["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            runs.append(run)
            print(f"run {attempt + 1}: {run['seconds']:.1f} s (target {TARGET_SECONDS} s), load "
                  f"{run['load_average_at_start']} -> {run['load_average_at_end']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for run in runs:
        models = ", ".join(f"{name} {m['seconds']:.0f}" for name, m in run["model_seconds"].items())
        rows.append([run["rows"], f"{run['seconds']:.1f}", TARGET_SECONDS,
                     "met" if run["seconds"] <= TARGET_SECONDS else "not met", f"{run['cpu_seconds']:.0f}",
                     models, f"{run['peak_rss_mb']:,.0f}", f"{run['index_mb']:.0f}",
                     f"{run['load_average_at_start'][0]} / {run['load_average_at_end'][0]}"])
    rows += [[before["rows"], before["seconds"], TARGET_SECONDS, before["label"], "", before["per_model"], "", "",
              before["source"]] for before in BEFORE]
    save("full_build", {"collection": str(Path(args.collection).resolve()), "models": args.models.split(","),
                        "target_seconds": TARGET_SECONDS, "before": BEFORE, "runs": runs},
         ["rows", "build s", "target s", "", "CPU s", "seconds per model", "peak RSS MB", "index MB",
          "load start / end"], rows)


if __name__ == "__main__":
    main()
