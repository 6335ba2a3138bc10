"""Publish a built index as a complete Hugging Face Space (or as a Hub dataset), keeping only the images whose
licence the chosen policy allows.

    python -m retrieval publish --index index --out space/ [--licenses open|noncommercial|all] [--push owner/name]

A Space folder holds the app (app.py, retrieval/, ui/, requirements.txt, assets/), a README with the Spaces
front matter and the attribution of every source it shows, `.gitattributes` routing large binaries to Git LFS,
and `index/`: a new generation holding only the kept rows, re-fingerprinted, its FAISS files rebuilt and its
collection-fitted models (TF-IDF) refitted on the kept rows only. `--as-dataset` writes the index folder alone
with a dataset card, for `XRAY_INDEX=hf://datasets/owner/name`. Neither kind of folder contains a symlink:
the generation is named in a CURRENT file (see `IndexFolder.publish_portable`).

The output is written beside `--out` and renamed into place when complete.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import RetrievalError
from .hub import is_hub_location, resolve_index
from .layout import IndexFolder, IndexGeneration
from .manifest import Manifest
from .licences import ModelDecision, allowed, model_decision, policy_classes, trained_models
from .space_cards import dataset_card, source_table, sources_file, space_readme

REPO = Path(__file__).resolve().parents[1]  # the checkout whose app is published
SPACE_CODE = ("app.py", "retrieval", "ui", "requirements.txt")  # what a Space needs to run the app
LFS_PATTERNS = ("*.arrow", "*.faiss", "*.npy")  # plus every other file over LFS_THRESHOLD, by its path
LFS_THRESHOLD = 10 * 2**20  # the Hub refuses plain git files over 10 MB
REPORT_FILE = "PUBLISH.json"  # what was kept and left out; also marks a folder this command may replace

# --- what was kept --------------------------------------------------------------------------------------
@dataclass
class PublishReport:
    out: str
    kind: str  # "space" or "dataset"
    policy: str
    rows: int
    excluded_rows: int
    kept: dict[str, dict[str, int]]  # source -> licence -> rows
    excluded: dict[str, dict[str, int]]  # source -> licence -> rows
    models: list[str]  # models of the published index
    model_decisions: list[ModelDecision]
    fingerprint: str
    generation: str
    bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"Published {self.rows} images ({self.policy!r} policy) to {self.out} as a {self.kind}; "
                 f"left out {self.excluded_rows}."]
        for source, licences in sorted(self.excluded.items()):
            for licence, count in sorted(licences.items()):
                lines.append(f"  excluded {count:5d}  {licence or '(none)'}  {source}")
        for decision in self.model_decisions:
            lines.append(f"  model {decision.name}: {'ships' if decision.ships else 'left out'} — {decision.why}")
        lines += [f"WARNING: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def publish(index_dir: str | Path, out: str | Path, licenses: str = "open", title: str = "X-Ray Search",
            as_dataset: bool = False, include_research_models: bool = False, collection: str | Path | None = None,
            repo: Path = REPO, log=print) -> PublishReport:
    """Write a Space folder (or, `as_dataset`, a Hub dataset folder) at `out` from the index at `index_dir`
    (a folder, or `hf://datasets/OWNER/NAME[@REVISION]` as the app takes it), keeping only the rows the
    `licenses` policy allows. Returns what was kept and left out."""
    started = time.perf_counter()
    policy_classes(licenses)  # an unknown policy is refused before anything is read
    index_root = resolve_index(index_dir)
    source = IndexFolder(index_root).require_current()
    manifest = source.manifest
    out = Path(out).expanduser().resolve()
    if not is_hub_location(index_dir):
        _check_target(out, Path(index_root).expanduser().resolve())
    source_licences = _source_licences(source)
    decisions = [model_decision(name, card, licenses, include_research_models, source_licences)
                 for name, card in trained_models(repo, list(manifest.models)).items()]
    dropped = {d.name for d in decisions if not d.ships}
    models = [name for name in manifest.models if name not in dropped]
    if not models:
        raise RetrievalError(f"No model of the index can be published ({sorted(dropped)} left out by the policy).")
    warnings = []
    if licenses == "all":
        warnings.append("the 'all' policy publishes images whose licence is unknown, non-commercial or "
                        "research-only: check every source's terms before making this public.")
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        index_root = temporary if as_dataset else temporary / "index"
        generation, kept, excluded = _quietly(_write_generation, source, manifest, IndexFolder(index_root),
                                              licenses, models, log)
        report = PublishReport(str(out), "dataset" if as_dataset else "space", licenses, generation.manifest.rows,
                               sum(sum(v.values()) for v in excluded.values()), kept, excluded, models, decisions,
                               generation.manifest.fingerprint, generation.name, warnings=warnings)
        sources = source_table(generation)
        sources_md = sources_file(collection, manifest.collection, repo)
        if as_dataset:
            (temporary / "README.md").write_text(dataset_card(report, sources, sources_md, title))
        else:
            _copy_code(repo, temporary, dropped)
            (temporary / "README.md").write_text(space_readme(report, sources, sources_md, title, repo))
        (temporary / ".gitattributes").write_text(gitattributes(temporary))
        report.bytes = folder_bytes(temporary)
        report.seconds = round(time.perf_counter() - started, 2)
        (temporary / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
        _swap_into_place(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    log(report.summary())
    return report


def _quietly(function, *args):
    """Run without datasets' progress bars (saving, flattening: instant here, noise in the report)."""
    import datasets

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return function(*args)
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _source_licences(generation: IndexGeneration) -> dict[str, set[str]]:
    """Source -> the licences its rows carry in the index (read from the Arrow columns, no images decoded)."""
    dataset = generation.load_dataset().select_columns(["source", "license"])
    found: dict[str, set[str]] = defaultdict(set)
    for name, licence in zip(dataset["source"], dataset["license"]):
        found[name or ""].add(licence or "")
    return dict(found)


def _check_target(out: Path, index_dir: Path) -> None:
    if out == index_dir or index_dir.is_relative_to(out) or out.is_relative_to(index_dir):
        raise RetrievalError(f"--out {out} must be outside the index folder {index_dir}.")
    if out.is_relative_to(REPO) and any(out == REPO / name or (REPO / name) in out.parents for name in SPACE_CODE):
        raise RetrievalError(f"--out {out} is inside the code it would copy.")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_FILE).is_file())):
        raise RetrievalError(f"{out} exists and is not a folder this command wrote (no {REPORT_FILE}); "
                             f"choose a new or empty folder.")


def _swap_into_place(temporary: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(temporary, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_generation(source: IndexGeneration, manifest: Manifest, folder: IndexFolder, policy: str,
                      models: list[str], log) -> tuple[IndexGeneration, dict, dict]:
    """A new generation in `folder` holding only the allowed rows and `models`, written by the build's writer:
    vectors reused, collection-fitted models (TF-IDF) refitted on the kept rows, maps projected again where
    rows were left out; checked and named in CURRENT."""
    from .writer import Column, GenerationWriter

    dataset = source.load_dataset()
    keep, kept, excluded = [], defaultdict(Counter), defaultdict(Counter)
    for position, (name, licence) in enumerate(zip(dataset["source"], dataset["license"])):
        if allowed(licence, policy):
            keep.append(position)
            kept[name or ""][licence or ""] += 1
        else:
            excluded[name or ""][licence or ""] += 1
    if not keep:
        raise RetrievalError(f"No image of the index is allowed by the {policy!r} policy; nothing to publish.")
    # in memory: selecting and flattening on disk would write cache files into the source index's folder
    rows = dataset.select(keep, keep_in_memory=True).flatten_indices(keep_in_memory=True)
    columns = {}
    for name in models:
        entry = replace(manifest.models[name], rows=len(keep), embedded=0, reused=len(keep), seconds=0.0)
        if entry.corpus_digest is not None:  # fitted on the collection: nothing of the excluded rows' text ships
            from .embedders import embedder_spec

            columns[name] = Column(entry, to_fit=embedder_spec(name).factory())
        else:
            columns[name] = Column(entry, vectors=source.vectors(name, rows))
    rows = rows.remove_columns([name for name in manifest.models if name in rows.column_names])
    with GenerationWriter(folder, previous=source, portable=True) as writer:
        written = writer.write(rows, columns, replace(manifest, quick_fingerprint=None, skipped_rows={}))
    refitted = [name for name, entry in written.models.items() if entry.embedded]
    log(f"Index: {written.rows} of {len(dataset)} rows, models {', '.join(models)}"
        + (f" (refitted on the kept rows: {', '.join(refitted)})" if refitted else ""))
    return writer.generation, _plain(kept), _plain(excluded)


def _plain(counts: dict[str, Counter]) -> dict[str, dict[str, int]]:
    return {source: dict(sorted(licences.items())) for source, licences in sorted(counts.items())}


# --- the Space's files ----------------------------------------------------------------------------------
def _copy_code(repo: Path, target: Path, dropped_models: set[str]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in SPACE_CODE:
        path = repo / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, target / name)
        else:
            raise RetrievalError(f"{path} is missing: the Space needs it.")
    from .embedders.model_folder import ASSET_MODELS

    assets, models = repo / ASSET_MODELS.parent, repo / ASSET_MODELS
    if assets.is_dir():

        def skip(folder, names):
            left_out = set(names) & dropped_models if Path(folder) == models else set()
            return left_out | set(ignore(folder, names))

        shutil.copytree(assets, target / "assets", ignore=skip)


def gitattributes(folder: Path) -> str:
    """Git LFS for the index's binaries and for every other file over 10 MB, named by its path."""
    lines = [f"{pattern} filter=lfs diff=lfs merge=lfs -text" for pattern in LFS_PATTERNS]
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and path.stat().st_size > LFS_THRESHOLD and not lfs_covered(relative, LFS_PATTERNS):
            lines.append(f"{relative.replace(' ', '[[:space:]]')} filter=lfs diff=lfs merge=lfs -text")
    return "\n".join(lines) + "\n"


def lfs_covered(relative: str, patterns) -> bool:
    """Whether a .gitattributes pattern matches a path (patterns without '/' match the file name anywhere)."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name if "/" not in pattern else relative, pattern.replace("[[:space:]]", " "))
               for pattern in patterns)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def upload_arguments(folder: str | Path, repo_id: str, as_dataset: bool) -> dict:
    """What `HfApi().upload_folder` gets for a published folder."""
    return {"folder_path": str(folder), "repo_id": repo_id, "repo_type": "dataset" if as_dataset else "space",
            "commit_message": "Publish X-Ray Search " + ("index" if as_dataset else "Space")}


def push(folder: str | Path, repo_id: str, as_dataset: bool = False, api=None):
    """Create the repository if needed and upload the folder (needs a token: `hf auth login` or HF_TOKEN)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    arguments = upload_arguments(folder, repo_id, as_dataset)
    api.create_repo(repo_id, repo_type=arguments["repo_type"], exist_ok=True,
                    **({} if as_dataset else {"space_sdk": "gradio"}))
    return api.upload_folder(**arguments)


__all__ = ["publish", "PublishReport", "gitattributes", "lfs_covered", "upload_arguments", "push"]
