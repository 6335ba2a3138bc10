"""Resume a 20,000-file DICOM-archive build that was killed with SIGKILL part-way, then grow the archive by 500
files: what the resume embeds, what it costs, its memory, and whether its vectors are the ones a clean read gives.

    .venv/bin/python benchmarks/archive_resume.py --killed KILLED.json [--work /tmp/xray-archive-bench]
                                                  [--models xray-lite0,tfidf] [--sample 200]

It continues archive_build.py's work folder: `archive/` (written by dicom_archive.py) and `index-clean/`, whose
clean build was killed (kill -9) while it ran; KILLED.json holds what was measured of the killed process just
before the kill (wall and CPU seconds, memory). Phases: (1) the same build again: it resumes from the
checkpoints (files/s, peak RSS, vectors embedded vs checkpointed); (2) a sample of the archive's files read and
embedded again one by one, outside any build, their vectors compared with the index's (by the file's sha256) and
their top 10 searched with both; (3) 500 files added: the rebuild's vectors embedded. Writes
results/archive_resume.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from archive_build import ADDED, checkpointed, run_build
from common import COLLECTION, machine_snapshot, save
from dicom_archive import synthesise


def sample_check(archive: Path, index: Path, model: str, sample: int) -> dict:
    """Read and embed `sample` random files of the archive on their own; compare with the index."""
    from retrieval.embedders import get_embedder
    from retrieval.image_pass import read_one
    from retrieval.layout import IndexFolder
    from retrieval.search import SearchEngine

    generation = IndexFolder(index).require_current()
    dataset = generation.load_dataset()
    row_of = {sha: row for row, sha in enumerate(dataset["image_sha256"])}
    stored = generation.vectors(model, dataset)
    embedder = get_embedder(model)
    engine = SearchEngine(index)
    files = sorted(path for path in archive.rglob("*") if path.is_file())
    checked = {"files": 0, "unreadable": 0, "not_in_index": 0, "identical": 0, "max_abs_difference": 0.0,
               "min_cosine": 1.0, "same_top10": 0}
    for path in random.Random(0).sample(files, sample):
        read = read_one(SimpleNamespace(file_name=path.name, path=path, image_bytes=None), (embedder.decode_side,))
        checked["files"] += 1
        if read.problem is not None:
            checked["unreadable"] += 1
            continue
        row = row_of.get(read.facts.sha256)
        if row is None:
            checked["not_in_index"] += 1
            continue
        vector = embedder.embed_images([read.pictures[embedder.decode_side]])[0]
        difference = float(np.abs(vector - stored[row]).max())
        checked["identical"] += difference == 0.0
        checked["max_abs_difference"] = max(checked["max_abs_difference"], difference)
        checked["min_cosine"] = min(checked["min_cosine"], float(vector @ stored[row]))
        fresh = [row for row, _ in engine.store.search(model, vector, 10)]
        kept = [row for row, _ in engine.store.search(model, stored[row], 10)]
        checked["same_top10"] += fresh == kept
    checked["compared"] = checked["files"] - checked["unreadable"] - checked["not_in_index"]
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killed", required=True, help="JSON measured of the killed build just before the kill")
    parser.add_argument("--work", default="/tmp/xray-archive-bench")
    parser.add_argument("--models", default="xray-lite0,tfidf")
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    machine_snapshot()
    work, models = Path(args.work), [name.strip() for name in args.models.split(",")]
    archive, index, model = work / "archive", work / "index-clean", models[0]
    files = sum(1 for path in archive.rglob("*") if path.is_file())
    killed = json.loads(Path(args.killed).read_text())
    held = checkpointed(index, model)
    payload = {"models": models, "files": files, "killed": {**killed, "checkpointed_vectors": held}}
    header = ["phase", "files", "seconds", "CPU s", "files/s", "peak RSS MB", "of which anonymous MB", "embedded",
              "notes"]
    rows = [["killed (kill -9)", files, killed["wall_seconds"], killed["cpu_seconds"], "-", killed["rss_mb"],
             killed["anon_mb"], held, "vectors in the checkpoints at the kill"]]
    print(f"resuming: {held} vectors checkpointed", flush=True)
    resumed = run_build(archive, index, models)
    entry = resumed["report"]["models"][model]
    payload["resumed"] = {**{k: v for k, v in resumed.items() if k != "report"}, "rows": resumed["report"]["rows"],
                          "image_model": entry, "skipped_objects": resumed["report"].get("skipped_objects")}
    rows.append(["resumed", files, resumed["seconds"], resumed["cpu_seconds"],
                 round(files / resumed["seconds"], 1), resumed["peak_rss_mb"], resumed["peak_anonymous_mb"],
                 entry["embedded"], f"{entry['resumed']} taken from the checkpoints"])
    save("archive_resume", payload, header, rows)
    print("sample check", flush=True)
    payload["sample_check"] = sample_check(archive, index, model, args.sample)
    save("archive_resume", payload, header, rows)
    print(f"{ADDED} files added", flush=True)
    added = synthesise(archive, ADDED, COLLECTION, start=files, seed=2)
    grown = run_build(archive, index, models)
    entry = grown["report"]["models"][model]
    payload["added"] = {"written": added, "embedded": entry["embedded"], "reused": entry["reused"],
                        **{k: v for k, v in grown.items() if k != "report"}}
    rows.append([f"+{ADDED} files", files + ADDED, grown["seconds"], grown["cpu_seconds"],
                 round((files + ADDED) / grown["seconds"], 1), grown["peak_rss_mb"], grown["peak_anonymous_mb"],
                 entry["embedded"], f"{added['images']} new images"])
    save("archive_resume", payload, header, rows)
    print(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
