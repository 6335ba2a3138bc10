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
import re
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .collection import metadata_fingerprint  # noqa: F401  (re-exported: what a published manifest states)
from .errors import RetrievalError
from .hub import is_hub_location, resolve_index
from .layout import IndexFolder, IndexGeneration, Manifest

REPO = Path(__file__).resolve().parents[1]  # the checkout whose app is published
SPACE_CODE = ("app.py", "retrieval", "ui", "requirements.txt")  # what a Space needs to run the app
LFS_PATTERNS = ("*.arrow", "*.faiss", "*.npy")  # plus every other file over LFS_THRESHOLD, by its path
LFS_THRESHOLD = 10 * 2**20  # the Hub refuses plain git files over 10 MB
REPORT_FILE = "PUBLISH.json"  # what was kept and left out; also marks a folder this command may replace
SHORT_DESCRIPTION = "Find similar radiographs by text or by example image."

# --- licences --------------------------------------------------------------------------------------------
OPEN, NONCOMMERCIAL, UNKNOWN = "open", "noncommercial", "unknown"
POLICIES: dict[str, frozenset[str]] = {
    "open": frozenset({OPEN}),
    "noncommercial": frozenset({OPEN, NONCOMMERCIAL}),
    "all": frozenset({OPEN, NONCOMMERCIAL, UNKNOWN}),
}
POLICY_MEANING = {
    "open": "CC0, public domain, CC-BY and CC-BY-SA (any version), MIT/Apache/BSD-style licences",
    "noncommercial": "the open licences plus CC-BY-NC(-SA/-ND) and research-only or non-commercial terms",
    "all": "every image, including those whose licence is unknown or unstated (check each source's terms "
           "before publishing)",
}
_NONCOMMERCIAL = re.compile(r"(^|[^a-z])(nc|non-?commercial|research|academic|education(al)?)([^a-z]|$)")
_NO_DERIVATIVES = re.compile(r"(^|[^a-z])nd([^a-z]|$)")
_OPEN = re.compile(r"(^|[^a-z])(cc0|cc-zero|public-?domain|pddl|cc-by(-sa)?|creative-commons-attribution"
                   r"(-share-?alike)?|mit|apache|bsd|isc|unlicense|odc-by|odbl|cdla-permissive)([^a-z]|$)")
_UNKNOWN_WORDS = re.compile(r"^(|unknown|none|n/?a|other|unspecified|not-stated|proprietary|custom)$")


def licence_class(licence: str | None) -> str:
    """"open", "noncommercial" or "unknown" for a licence as a source states it ("CC-BY-4.0",
    "CC BY-NC-SA 4.0", "Apache-2.0", "research only", "unknown", "" ...). The most restrictive reading wins:
    any non-commercial or research-only term makes it non-commercial; no-derivatives without NC, and anything
    not recognised, is unknown."""
    text = re.sub(r"[\s_]+", "-", str(licence or "").strip().lower())
    text = text.replace("ccby", "cc-by")
    if _UNKNOWN_WORDS.match(text):
        return UNKNOWN
    if _NONCOMMERCIAL.search(text):
        return NONCOMMERCIAL
    if _NO_DERIVATIVES.search(text):
        return UNKNOWN
    if _OPEN.search(text):
        return OPEN
    return UNKNOWN


def allowed(licence: str | None, policy: str) -> bool:
    return licence_class(licence) in _policy(policy)


def _policy(policy: str) -> frozenset[str]:
    try:
        return POLICIES[policy]
    except KeyError:
        raise RetrievalError(f"Unknown licence policy {policy!r}; choose from {list(POLICIES)}.") from None


# --- trained models and their training cards -------------------------------------------------------------
def card_licences(card: dict | None, source_licences: dict[str, set[str]] | None = None) -> dict[str, int]:
    """Licence -> training rows, from a training card's "licenses" (dict or list) or "sources" (a dict or list
    of entries), at its top level or under "data". A source entry without a licence takes the licences its
    rows have in `source_licences` (the index's own rows), else counts as "unknown". {} when the card names
    neither licences nor sources."""
    found: Counter = Counter()
    if not isinstance(card, dict):
        return {}
    for block in (card, card.get("data")):
        if isinstance(block, dict):
            _add_licences(found, block.get("licenses", block.get("licences")))
            _add_sources(found, block.get("sources"), source_licences or {})
    return dict(found)


def _add_licences(found: Counter, licences) -> None:
    if isinstance(licences, dict):
        for name, rows in licences.items():
            found[str(name)] += rows if isinstance(rows, int) else 0
    elif isinstance(licences, list):
        for name in licences:
            found[str(name)] += 0


def _add_sources(found: Counter, sources, source_licences: dict[str, set[str]]) -> None:
    if isinstance(sources, dict):
        entries = [(name, entry) for name, entry in sources.items()]
    elif isinstance(sources, list):
        entries = [(entry.get("source", entry.get("name")) if isinstance(entry, dict) else None, entry)
                   for entry in sources]
    else:
        return
    for name, entry in entries:
        if isinstance(entry, str):  # {source: licence}
            found[entry] += 0
            continue
        entry = entry if isinstance(entry, dict) else {}
        rows = entry.get("rows", entry.get("images", 0))
        rows = rows if isinstance(rows, int) else 0
        nested = entry.get("licenses", entry.get("licences"))
        licence = entry.get("license", entry.get("licence"))
        if isinstance(nested, (dict, list)):
            _add_licences(found, nested)
        elif licence is not None:
            found[str(licence)] += rows
        else:  # the card names the source only: its rows in the index say how it is licensed
            known = sorted(source_licences.get(str(name), set())) or [UNKNOWN]
            for value in known:
                found[value] += rows if len(known) == 1 else 0


@dataclass
class ModelDecision:
    name: str
    ships: bool
    why: str
    licences: dict[str, int] = field(default_factory=dict)


def model_decision(name: str, card: dict | None, policy: str, include_research: bool = False,
                   source_licences: dict[str, set[str]] | None = None) -> ModelDecision:
    """A trained model is a derivative of its training images: it ships only when every licence its card
    lists is within the policy (a card without licences counts as unknown), or with --include-research-models."""
    licences = card_licences(card, source_licences)
    classes = {licence_class(licence) for licence in licences} or {UNKNOWN}
    outside = sorted(licence for licence in licences if not allowed(licence, policy))
    if classes <= _policy(policy):
        return ModelDecision(name, True, f"trained only on images the {policy!r} policy allows "
                                         f"({', '.join(sorted(licences)) or 'no licences listed'})", licences)
    reason = (f"trained on images outside the {policy!r} policy ({', '.join(outside)})" if outside else
              "its training card does not say what its training images are licensed under")
    if include_research:
        return ModelDecision(name, True, f"{reason}; included by --include-research-models", licences)
    return ModelDecision(name, False, f"left out: {reason}", licences)


def asset_models(repo: Path = REPO) -> dict[str, dict | None]:
    """Model folders under assets/models/ and their training cards (None when a folder has none)."""
    from .embedders.model_folder import ModelFolder

    return {folder.name: folder.read_card() for folder in ModelFolder.in_assets(repo)}


def trained_models(repo: Path, index_models: list[str]) -> dict[str, dict | None]:
    """Every trained model the Space would carry or use: the model folders under assets/models/, and models of
    the index whose registry entry has a training card (a model trained here, e.g. xray-lite0)."""
    from .embedders import embedder_spec
    from .errors import UnknownEmbedder

    cards = asset_models(repo)
    for name in index_models:
        if name in cards:
            continue
        try:
            spec = embedder_spec(name)
        except UnknownEmbedder:
            continue
        if spec.card is not None:
            try:
                cards[name] = spec.card()
            except Exception:  # an unreadable card says nothing about licences: treated as unknown
                cards[name] = None
    return cards


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
    _policy(licenses)
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
        sources = _source_table(generation)
        sources_md = _sources_file(collection, manifest.collection)
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


def gradio_pin(requirements: Path) -> str:
    """The version `gradio==X` pins in requirements.txt (the Space's sdk_version must be the same)."""
    for line in requirements.read_text().splitlines():
        match = re.match(r"^\s*gradio\s*==\s*([\w.\-+]+)", line)
        if match:
            return match.group(1)
    raise RetrievalError(f"{requirements} does not pin gradio (gradio==X.Y.Z); the Space's sdk_version needs it.")


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


def _source_table(generation: IndexGeneration) -> dict[str, dict]:
    """Per kept source: images, link and licences (with counts), from the published rows themselves."""
    dataset = generation.load_dataset()
    table: dict[str, dict] = {}
    for name, url, licence in zip(dataset["source"], dataset["source_url"], dataset["license"]):
        entry = table.setdefault(name or "(unnamed source)", {"images": 0, "urls": [], "licenses": Counter()})
        entry["images"] += 1
        if url and url not in entry["urls"]:
            entry["urls"].append(url)
        entry["licenses"][licence or "(none)"] += 1
    return dict(sorted(table.items()))


def _sources_file(collection: str | Path | None, name: str) -> Path | None:
    """The collection's SOURCES.md: in `collection` when given, else found from the manifest's collection name
    (a folder of that name here, or beside the checkout in ../shared/)."""
    candidates = [Path(collection).expanduser()] if collection else [
        Path(name).expanduser(), Path.cwd().parent / "shared" / name, REPO.parent / "shared" / name]
    for folder in candidates:
        if (folder / "SOURCES.md").is_file():
            return folder / "SOURCES.md"
    return None


def source_sections(sources_md: Path | None, sources: dict[str, dict]) -> list[str]:
    """The `###` sections of SOURCES.md that describe a kept source (they name one of its links)."""
    if sources_md is None:
        return []
    urls = {url.rstrip("/") for entry in sources.values() for url in entry["urls"]}
    sections = [section.strip() for section in re.split(r"(?m)^(?=#{2,3} )", sources_md.read_text())
                if section.startswith("### ")]
    chosen = [section for section in sections if any(url in section for url in urls)]
    # a section that defers to a chosen one ("Same repo ... as `fracatlas` above") describes a kept source too
    names = {re.sub(r"^(\d+\.\s*)?", "", section[4:].split("\n", 1)[0]).split(" (")[0].strip() for section in chosen}
    return [section for section in sections
            if section in chosen or any(f"as `{name}`" in section for name in names if name)]


def _sources_markdown(report: PublishReport, sources: dict[str, dict], sources_md: Path | None) -> str:
    lines = ["| Source | Images | Licence | Link |", "|---|---:|---|---|"]
    for name, entry in sources.items():
        licences = ", ".join(f"{licence} ({count})" if len(entry["licenses"]) > 1 else licence
                             for licence, count in sorted(entry["licenses"].items()))
        links = " ".join(f"<{url}>" for url in entry["urls"])
        lines.append(f"| {_cell(name)} | {entry['images']} | {_cell(licences)} | {links} |")
    sections = source_sections(sources_md, sources)
    if sections:
        lines += ["", "What the collection's `SOURCES.md` says about these sources (rows of other licences "
                      "in a source were left out as counted above):", ""]
        lines += [re.sub(r"(?m)^### ", "#### ", section) + "\n" for section in sections]
    elif sources_md is None:
        lines += ["", "(The collection's SOURCES.md was not found; the table lists each source, link and licence "
                      "as the rows state them.)"]
    return "\n".join(lines)


def _excluded_markdown(report: PublishReport) -> str:
    if not report.excluded:
        return "No image of the index was left out."
    lines = [f"{report.excluded_rows} images of the index were left out by the {report.policy!r} policy:", "",
             "| Source | Licence | Images left out |", "|---|---|---:|"]
    for source, licences in report.excluded.items():
        for licence, count in licences.items():
            lines.append(f"| {_cell(source)} | {_cell(licence or '(none)')} | {count} |")
    return "\n".join(lines)


def _models_markdown(report: PublishReport) -> str:
    lines = [f"Models in the index: {', '.join(f'`{m}`' for m in report.models)}."]
    for decision in report.model_decisions:
        lines.append(f"- `{decision.name}` (trained model, a derivative of its training images): "
                     f"{'included' if decision.ships else 'not included'} — {decision.why}.")
    if not report.model_decisions:
        lines.append("No trained model: the image and text models are pretrained elsewhere, and TF-IDF is "
                     "fitted on the published rows' metadata only.")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _yaml_string(text: str) -> str:
    return json.dumps(str(text), ensure_ascii=False)  # a JSON string is a valid YAML scalar


def space_readme(report: PublishReport, sources: dict[str, dict], sources_md: Path | None, title: str,
                 repo: Path = REPO) -> str:
    front = ["---", f"title: {_yaml_string(title)}", "emoji: 🩻", "colorFrom: indigo", "colorTo: gray",
             "sdk: gradio", f"sdk_version: {gradio_pin(repo / 'requirements.txt')}", "app_file: app.py",
             'python_version: "3.11"', *_licence_front_matter(report),
             f"short_description: {_yaml_string(SHORT_DESCRIPTION)}", "---", ""]
    warning = "".join(f"> **Warning:** {w}\n\n" for w in report.warnings)
    body = f"""# {title}

{warning}Search {report.rows} real radiographs by text or by example image; click a result for more like it.

> **Research and education only. Not a diagnostic device.** It finds similar images; it never diagnoses.

Every result shows its source and licence (gallery caption and details panel). The images keep their sources'
licences; the code is MIT.

## What this Space holds

Images published under the **{report.policy}** licence policy: {POLICY_MEANING[report.policy]}.

{_models_markdown(report)}

{_excluded_markdown(report)}

## Image licences and attribution

{_sources_markdown(report, sources, sources_md)}

## How this Space was made

`python -m retrieval publish --index index --out SPACE_DIR --licenses {report.policy}` in the X-Ray Search
repository: a prebuilt index of the kept images (`index/`, named by
`index/CURRENT`), so the Space serves at once. From Python: `gradio_client.Client("owner/space-name")`, endpoints
`/search_text`, `/search_image`, `/similar`, `/models`.
"""
    return "\n".join(front) + "\n" + body


def _licence_front_matter(report: PublishReport) -> list[str]:
    licences = {licence for entry in report.kept.values() for licence in entry}
    single = {"cc-by-4.0": "cc-by-4.0", "cc0-1.0": "cc0-1.0", "cc-by-sa-4.0": "cc-by-sa-4.0"}
    if len(licences) == 1 and next(iter(licences)).lower() in single:
        return [f"license: {single[next(iter(licences)).lower()]}"]
    return ["license: other", "license_name: mixed", "license_link: README.md"]


def dataset_card(report: PublishReport, sources: dict[str, dict], sources_md: Path | None, title: str) -> str:
    citations = [line.split("Citation:", 1)[1].strip() for section in source_sections(sources_md, sources)
                 for line in section.splitlines() if "Citation:" in line]
    citation = "\n".join(f"- {c}" for c in citations) if citations else (
        "Cite each source as its own page asks (links above).")
    front = ["---", *_licence_front_matter(report), f"pretty_name: {_yaml_string(title + ' index')}",
             "tags:", "  - medical", "  - x-ray", "  - radiograph", "  - image-retrieval", "configs:",
             "  - config_name: default", "    data_files:", "      - split: train",
             f"        path: generations/{report.generation}/dataset/*.arrow", "---", ""]
    warning = "".join(f"> **Warning:** {w}\n\n" for w in report.warnings)
    body = f"""# {title} — prebuilt index

{warning}A prebuilt X-Ray Search index of {report.rows} radiographs (licence policy **{report.policy}**:
{POLICY_MEANING[report.policy]}), with one vector column per model and their FAISS files. Research and education
only; not a diagnostic device.

Serve it: `XRAY_INDEX=hf://datasets/OWNER/NAME python app.py` (or `--index hf://datasets/OWNER/NAME`); it is
downloaded once into the Hugging Face cache and loaded like a local index folder.

## Layout

- `CURRENT`: the name of the generation to serve (Hub repositories keep no symlinks)
- `generations/{report.generation}/manifest.json`: rows, fingerprint, models
- `generations/{report.generation}/dataset/`: the Dataset (`datasets.load_from_disk`): metadata, image, vectors
- `generations/{report.generation}/faiss/<model>.faiss`: exact inner-product index per model
- `generations/{report.generation}/models/<model>/`: fitted state (TF-IDF, fitted on these rows only)

{_models_markdown(report)}

{_excluded_markdown(report)}

## Licences and attribution

{_sources_markdown(report, sources, sources_md)}

## Citation

{citation}
"""
    return "\n".join(front) + "\n" + body


# --- the Hub --------------------------------------------------------------------------------------------
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


__all__ = ["publish", "PublishReport", "licence_class", "allowed", "POLICIES", "POLICY_MEANING", "card_licences",
           "model_decision", "ModelDecision", "asset_models", "trained_models", "gitattributes", "lfs_covered",
           "gradio_pin", "metadata_fingerprint", "upload_arguments", "push", "source_sections"]
