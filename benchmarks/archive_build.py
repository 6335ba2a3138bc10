"""Build a synthesised DICOM archive of >= 20,000 files: files/s, peak memory at two sizes, the cost of a kill -9
at ~50 % and its resume, and that an archive gaining 500 files embeds 500.

    .venv/bin/python benchmarks/archive_build.py [--files 20000] [--small 5000] [--models xray-lite0,tfidf]
                                                 [--work /tmp/xray-archive-bench] [--keep]

The archive is written by dicom_archive.py under --work (outside the repo; ~70 KB a file) from the collection's
images. Reader: a folder of DICOM files without metadata.csv is an archive (`archive.read_archive`: metadata from
a whitelist of tags, salted ids); broken and non-image objects are left out and counted per reason in the build
report (`skipped_objects`). Models: xray-lite0 (the image model the app
searches with by default) and tfidf, to keep a 20,000-file run within ~15 minutes on 2 shared cores; pass
--models to add efficientnet-lite0 or minilm.

Every build runs in its own process (`build_index`, progress off); its peak RSS is sampled every 0.2 s with
psutil, in full and without the file-backed pages (RSS - shared: the memory-mapped Arrow files of the new
generation count in RSS once read, as reclaimable page cache, and grow with the archive's bytes on disk).
Phases: (1) a clean build of a --small archive and (2) of the --files archive: files/s and peak RSS at both
sizes; (3) the same archive into a fresh index, killed (SIGKILL) once the checkpoints hold half the images, then
resumed: killed + resumed time against the clean build, and the resumed index compared with the clean one
(every vector, top 10 of 50 sampled images); (4) 500 files added, the clean index rebuilt: vectors embedded.
Writes results/archive_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import COLLECTION, REPO, machine_snapshot, save
from dicom_archive import synthesise
from retrieval.checkpoints import CHECKPOINT_EVERY

ADDED = 500
SAMPLE_QUERIES = 50
BUILD = """
import json, sys
sys.path.insert(0, {repo!r})
from retrieval.index import build_index
report = build_index({root!r}, {index!r}, models={models!r}, skip_invalid=True, progress=False, log=lambda m: None)
print("REPORT " + json.dumps(report.to_dict()))
"""


def run_build(root: Path, index: Path, models: list[str], kill_when=None) -> dict:
    """One build in its own process: wall seconds, peak RSS (MB, sampled), its report; or killed by SIGKILL
    as soon as `kill_when()` holds."""
    import psutil

    import resource

    script = BUILD.format(repo=str(REPO), root=str(root), index=str(index), models=models)
    began = time.perf_counter()
    children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak, anonymous, killed = 0, 0, False
    while process.poll() is None:
        try:
            memory = watched.memory_info()
            peak = max(peak, memory.rss)
            anonymous = max(anonymous, memory.rss - memory.shared)  # without the memory-mapped Arrow files
        except psutil.NoSuchProcess:
            break
        if kill_when is not None and kill_when():
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    output = process.communicate()[0]
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children_cpu.ru_utime - children_cpu.ru_stime
    result = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_mb": round(peak / 2**20),
              "peak_anonymous_mb": round(anonymous / 2**20), "killed": killed,
              "load_average_after": [round(x, 1) for x in os.getloadavg()]}
    if not killed:
        if process.returncode != 0:
            raise SystemExit(f"the build failed ({process.returncode}):\n{output[-3000:]}")
        result["report"] = json.loads(next(line for line in output.splitlines() if line.startswith("REPORT "))[7:])
    print(f"  build {'killed' if killed else 'done'} in {seconds:.0f} s, peak RSS {result['peak_rss_mb']} MB",
          flush=True)
    return result


def checkpointed(index: Path, model: str) -> int:
    """Vectors held in `model`'s checkpoints (counted from the parts as the next build would read them)."""
    from retrieval.checkpoints import Checkpoints
    from retrieval.embedders import embedder_spec, model_version
    from retrieval.layout import IndexFolder

    return len(Checkpoints(IndexFolder(index), model, model_version(model), embedder_spec(model).dim,
                           log=lambda *_: None).load())


def parts(index: Path, model: str) -> int:
    from retrieval.embedders import model_version
    from retrieval.layout import IndexFolder

    return len(IndexFolder(index).checkpoint_parts(model, model_version(model)))


def compare(first: Path, second: Path, models: list[str]) -> dict:
    """Are two indexes of one archive the same: ids, every vector, the top 10 of sampled images?"""
    from retrieval.layout import IndexFolder
    from retrieval.search import SearchEngine

    one, two = IndexFolder(first).require_current(), IndexFolder(second).require_current()
    data_one, data_two = one.load_dataset(), two.load_dataset()
    out = {"same_ids": data_one["id"] == data_two["id"]}
    engines = SearchEngine(first), SearchEngine(second)
    ids = data_one["id"][:: max(1, len(data_one) // SAMPLE_QUERIES)][:SAMPLE_QUERIES]
    for model in models:
        a, b = one.vectors(model, data_one), two.vectors(model, data_two)
        out[model] = {"identical_vectors": bool(np.array_equal(a, b)),
                      "max_abs_difference": float(np.abs(a - b).max())}
        if one.manifest.models[model].indexes == "image":
            same = sum([hit.id for hit in engines[0].similar(item, model=model, k=10)]
                       == [hit.id for hit in engines[1].similar(item, model=model, k=10)] for item in ids)
            out[model]["identical_top10"] = f"{same}/{len(ids)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--models", default="xray-lite0,tfidf")
    parser.add_argument("--work", default="/tmp/xray-archive-bench")
    parser.add_argument("--keep", action="store_true", help="keep the archives and indexes")
    args = parser.parse_args()
    machine_snapshot()
    models = [name.strip() for name in args.models.split(",")]
    image_model = models[0]  # the first model is the one whose embedding is checkpointed and counted
    if image_model in ("tfidf", "minilm"):
        parser.error("--models must start with an image model (e.g. xray-lite0,tfidf)")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    payload = {"reader": "archive.read_archive (tag whitelist, salted ids; left-out objects counted per reason)",
               "models": models,
               "files": args.files, "small_files": args.small}
    rows: list[list] = []
    header = ["phase", "files", "seconds", "CPU s", "files/s", "peak RSS MB", "of which anonymous MB", "embedded", "notes"]

    def record(phase: str, files: int, run: dict, notes: str = "") -> None:
        entry = run.get("report", {}).get("models", {}).get(image_model, {})
        rows.append([phase, files, run["seconds"], run["cpu_seconds"], round(files / run["seconds"], 1), run["peak_rss_mb"],
                     run["peak_anonymous_mb"], entry.get("embedded", "-"), notes])
        payload.setdefault("runs", {})[phase] = {**{k: v for k, v in run.items() if k != "report"}, "files": files,
                                                 "image_model": entry, "rows": run.get("report", {}).get("rows"),
                                                 "skipped_rows": len(run.get("report", {}).get("skipped_rows", {}))}
        save("archive_build", payload, header, rows)

    began = time.perf_counter()
    payload["small_archive"] = synthesise(work / "small", args.small, COLLECTION, seed=1)
    payload["archive"] = synthesise(work / "archive", args.files, COLLECTION)
    payload["synthesis_seconds"] = round(time.perf_counter() - began, 1)
    print(f"synthesised {args.small} + {args.files} files in {payload['synthesis_seconds']} s: "
          f"{payload['archive']}", flush=True)

    print("1. clean build, small archive", flush=True)
    record("clean, small", args.small, run_build(work / "small", work / "index-small", models))
    print("2. clean build, full archive", flush=True)
    clean = run_build(work / "archive", work / "index-clean", models)
    record("clean", args.files, clean)

    print("3. killed at ~50 %, then resumed", flush=True)
    valid = payload["archive"]["images"]
    resumed_index = work / "index-resumed"
    half = -(-valid // 2 // CHECKPOINT_EVERY)  # parts holding half the images
    killed = run_build(work / "archive", resumed_index, models, kill_when=lambda: parts(resumed_index, image_model)
                       >= half)
    held = checkpointed(resumed_index, image_model)
    record("killed", args.files, killed, f"{held} vectors checkpointed ({held / valid:.0%})")
    resumed = run_build(work / "archive", resumed_index, models)
    overhead = (killed["seconds"] + resumed["seconds"]) / clean["seconds"] - 1
    record("resumed", args.files, resumed, f"killed + resumed = {overhead:+.0%} vs clean")
    payload["resume"] = {"checkpointed_at_kill": held, "valid_images": valid,
                         "killed_plus_resumed_seconds": round(killed["seconds"] + resumed["seconds"], 1),
                         "clean_seconds": clean["seconds"], "overhead": round(overhead, 3),
                         "embedded_by_resume": resumed["report"]["models"][image_model]["embedded"],
                         "same_as_clean": compare(work / "index-clean", resumed_index, models)}
    save("archive_build", payload, header, rows)
    if not args.keep:
        shutil.rmtree(resumed_index, ignore_errors=True)

    print(f"4. {ADDED} files added", flush=True)
    added = synthesise(work / "archive", ADDED, COLLECTION, start=args.files, seed=2)
    grown = run_build(work / "archive", work / "index-clean", models)
    payload["added"] = {"written": added, "embedded": grown["report"]["models"][image_model]["embedded"],
                        "reused": grown["report"]["models"][image_model]["reused"]}
    record(f"+{ADDED} files", args.files + ADDED, grown, f"{added['images']} new images")
    print(json.dumps({k: payload[k] for k in ("resume", "added")}, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
