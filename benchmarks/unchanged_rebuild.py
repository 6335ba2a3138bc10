"""How long `python -m retrieval build` takes to say "up to date" on an unchanged collection, beside what the
same check cost when it loaded every model to learn its weights' version (the previous way).

    .venv/bin/python benchmarks/unchanged_rebuild.py --index index [--collection DIR] [--repeat 5]

The index must already be built from the collection. Each run is a fresh `python -m retrieval build` process,
so the figure includes interpreter start-up and imports: what a person waits for. The baseline is measured in
the same run: a fresh process that loads each of the index's models, as the check used to.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import COLLECTION, REPO, machine_snapshot, save

LOAD_MODELS = """
import sys, time
sys.path.insert(0, {repo!r})
from retrieval.embedders import get_embedder
from retrieval.layout import IndexFolder
for name in IndexFolder({index!r}).require_current().manifest.models:
    get_embedder(name)
"""


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    return time.perf_counter() - started, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(REPO / "index"))
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    machine_snapshot()  # the load average before the runs
    build = [sys.executable, "-m", "retrieval", "build", "--collection", args.collection, "--index", args.index]
    runs, said = [], ""
    for _ in range(args.repeat):
        seconds, said = timed(build)
        runs.append(seconds)
    if "up to date" not in said:
        raise SystemExit(f"the index was not up to date, so this measured a build: {said[-500:]}")
    baseline = [timed([sys.executable, "-c", LOAD_MODELS.format(repo=str(REPO), index=args.index)])[0]
                for _ in range(max(1, args.repeat // 2))]
    rows = [["unchanged build (no model loaded)", f"{min(runs):.2f}", f"{sorted(runs)[len(runs) // 2]:.2f}"],
            ["baseline: loading the index's models", f"{min(baseline):.2f}",
             f"{sorted(baseline)[len(baseline) // 2]:.2f}"]]
    save("unchanged_rebuild", {"unchanged_build_s": runs, "load_models_s": baseline},
         ["path", "fastest s", "median s"], rows)


if __name__ == "__main__":
    main()
