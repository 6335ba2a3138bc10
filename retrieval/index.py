"""Build an index: collection -> validated rows -> Dataset -> one vector column + FAISS index per model.

Only stale vectors are embedded: vectors are cached by content (image hash or metadata text) and model
version, so an unchanged collection embeds nothing and one new image embeds one image.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from . import store
from .collection import METADATA_FILE, collection_rows, encode_for_storage, is_local, scan_files
from .embedders import IMAGE, availability, embedder_spec, get_embedder, list_embedders
from .errors import CollectionError, EmbedderUnavailable, RetrievalError
from .images import load_image

DEFAULT_MODELS = ("tfidf", "minilm", "efficientnet-lite0")
RESERVED_COLUMNS = {"id", "file_name", "category", "label", "view", "caption", "source", "source_url",
                    "license", "text", "image_sha256", "image"}


@dataclass
class ModelBuild:
    dim: int
    embedded: int  # vectors computed in this build
    reused: int  # vectors taken from the previous build
    seconds: float
    corpus_digest: str | None = None  # for models fitted on the collection: what they were fitted on


@dataclass
class BuildReport:
    index_dir: str
    generation: str
    rows: int
    up_to_date: bool = False
    models: dict[str, ModelBuild] = field(default_factory=dict)
    skipped_rows: dict[str, str] = field(default_factory=dict)  # file_name -> why
    skipped_models: dict[str, str] = field(default_factory=dict)  # model -> why
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_models(models: Iterable[str] | str | None, previous: dict | None) -> tuple[list[str], dict[str, str]]:
    """The models to build and those skipped (with why). "all" means every available registered model."""
    if models is None:
        names = list(previous["models"]) if previous else list(DEFAULT_MODELS)
    elif isinstance(models, str):
        names = list_embedders() if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    else:
        names = list(models)
    if not names:
        raise RetrievalError("No models to build; name at least one (see `python -m retrieval models`).")
    explicit = models not in (None, "all")
    chosen, skipped = [], {}
    for name in dict.fromkeys(names):
        embedder_spec(name)  # raises UnknownEmbedder listing the registered names
        if name in RESERVED_COLUMNS:
            raise RetrievalError(f"Model name {name!r} clashes with a metadata column.")
        state = availability(name)
        if state.ready:
            chosen.append(name)
        elif explicit:
            raise EmbedderUnavailable(f"Model {name!r} is not available here: {state.reason}")
        else:
            skipped[name] = state.reason
    if not chosen:
        raise EmbedderUnavailable(f"None of the requested models is available: {skipped}")
    return chosen, skipped


def quick_fingerprint(source: str | Path) -> str | None:
    """Cheap change detector for a local folder (names, sizes, mtimes, metadata bytes); None for the Hub."""
    if not is_local(source):
        return None
    root = Path(source).expanduser().resolve()
    digest = hashlib.sha256()
    for name in scan_files(root):
        stat = (root / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if (root / METADATA_FILE).is_file():
        digest.update((root / METADATA_FILE).read_bytes())
    return digest.hexdigest()


def build_index(source: str | Path, index_dir: str | Path = "index", models: Iterable[str] | str | None = None,
                skip_invalid: bool = False, split: str = "train", log=print, progress: bool = True,
                force: bool = False) -> BuildReport:
    """Build (or refresh) the index of `source` in `index_dir`; returns what was done.

    Raises CollectionError for an invalid collection unless `skip_invalid`, which leaves the offending
    rows out and names each one in the report.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    previous_generation = store.current_generation(index_dir)
    previous = _previous_manifest(previous_generation)
    names, skipped_models = resolve_models(models, previous)
    for name, why in skipped_models.items():
        log(f"Skipping model {name}: {why}")
    quick = quick_fingerprint(source)
    if (not force and previous and quick and previous.get("quick_fingerprint") == quick
            and previous.get("skip_invalid") == skip_invalid and _same_models(previous, names)
            and _intact(previous_generation, previous, log)):
        log(f"Index in {index_dir} is up to date ({previous['rows']} rows, models {', '.join(names)}).")
        return BuildReport(str(index_dir), previous_generation.name, previous["rows"], up_to_date=True,
                           skipped_models=skipped_models, seconds=time.perf_counter() - started)

    skipped_rows = _validated_skips(source, skip_invalid, log, progress)
    rows = collection_rows(source, skip=skipped_rows, split=split)
    if not rows:
        raise CollectionError(f"{source} holds no images to index.")
    generation = store.new_generation(index_dir)
    try:
        report = _build_generation(source, rows, names, generation, previous_generation, previous, log, progress)
        report.skipped_rows, report.skipped_models = skipped_rows, skipped_models
        manifest = _manifest(source, quick, skip_invalid, report, rows, names)
        store.write_json_atomic(generation / store.MANIFEST, manifest)
        store.publish(index_dir, generation)
    except BaseException:
        shutil.rmtree(generation, ignore_errors=True)  # the previous generation stays current
        raise
    report.index_dir, report.generation = str(index_dir), generation.name
    report.seconds = time.perf_counter() - started
    log(f"Built {report.rows} rows into {index_dir} in {report.seconds:.1f} s: " + ", ".join(
        f"{n} ({m.embedded} embedded, {m.reused} reused, {m.seconds:.1f} s)" for n, m in report.models.items()))
    return report


def _validated_skips(source, skip_invalid: bool, log, progress: bool) -> dict[str, str]:
    if not is_local(source):
        return {}
    from .validate import validate_collection

    validation = validate_collection(source, progress=progress)
    invalid = validation.invalid_files()
    problems = [f for f in validation.errors if not f.file_name]
    if problems or (invalid and not skip_invalid):
        raise CollectionError("The collection did not validate:\n" + "\n".join(
            f"  - {f.message}" for f in validation.errors[:50]) + (
            "\nFix these, or build with --skip-invalid to leave the offending rows out." if not problems else ""))
    for name, why in invalid.items():
        log(f"Skipping row {name}: {why}")
    return invalid


def _intact(generation: Path, manifest: dict, log) -> bool:
    """True when every artefact of the generation reads back with the manifest's counts (else: rebuild)."""
    import datasets
    import faiss

    try:
        rows = len(datasets.load_from_disk(str(generation / "dataset")))
        indexes = [faiss.read_index(str(store.faiss_file(generation, name))) for name in manifest["models"]]
    except Exception as error:
        log(f"The index in {generation} is damaged ({error}); rebuilding it.")
        return False
    if rows != manifest["rows"] or any(index.ntotal != rows for index in indexes):
        log(f"The index in {generation} does not match its manifest; rebuilding it.")
        return False
    return True


def _previous_manifest(generation: Path | None) -> dict | None:
    if generation is None:
        return None
    try:
        return store.read_manifest(generation)
    except RetrievalError:
        return None


def _same_models(previous: dict, names: list[str]) -> bool:
    if list(previous.get("models", {})) != names:
        return False
    return all(_weights_unchanged(name, previous["models"][name]) for name in names)


def _weights_unchanged(name: str, built: dict) -> bool:
    """True when the model's weights are the ones the stored vectors came from (fitted models: always)."""
    try:
        embedder = get_embedder(name)
    except RetrievalError:
        return False
    return embedder.needs_fit or embedder.version() == built.get("version")


def _build_generation(source, rows, names, generation: Path, previous_generation, previous, log,
                      progress: bool) -> BuildReport:
    import datasets
    from tqdm.auto import tqdm

    from .collection import rows_to_dataset

    cache = generation / ".cache"
    dataset = rows_to_dataset(rows, encode_for_storage, cache,
                              progress=lambda it: tqdm(it, total=len(rows), desc="read images", unit="img",
                                                       disable=not progress))
    old = _previous_vectors(previous_generation, previous)
    report = BuildReport(str(generation.parent.parent), generation.name, len(dataset))
    raw_images = dataset.cast_column("image", datasets.Image(decode=False))
    for name in names:
        began = time.perf_counter()
        embedder = get_embedder(name)
        spec = embedder_spec(name)
        keys = dataset["image_sha256"] if spec.indexes == IMAGE else dataset["text"]
        reusable = old.get(name, {})
        corpus = None
        if embedder.needs_fit:
            corpus = corpus_digest(dataset["text"])
            reusable = _fit_or_restore(embedder, corpus, previous_generation, previous, name, reusable,
                                       dataset["text"])
            embedder.save_state(store.state_dir(generation, name))
        missing = [i for i, key in enumerate(keys) if key not in reusable]
        vectors = np.zeros((len(dataset), embedder.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            if key in reusable:
                vectors[i] = reusable[key]
        if missing:
            _embed_rows(embedder, spec.indexes, raw_images, missing, vectors, progress, name)
        dataset = dataset.add_column(name, list(vectors),
                                     feature=datasets.List(datasets.Value("float32"), length=embedder.dim))
        report.models[name] = ModelBuild(embedder.dim, len(missing), len(dataset) - len(missing),
                                         time.perf_counter() - began, corpus)
    dataset.save_to_disk(str(generation / "dataset"))
    dataset = datasets.load_from_disk(str(generation / "dataset"))
    shutil.rmtree(cache, ignore_errors=True)
    (generation / "faiss").mkdir()
    import faiss

    for name in names:
        dataset.add_faiss_index(column=name, metric_type=faiss.METRIC_INNER_PRODUCT)
        dataset.save_faiss_index(name, str(store.faiss_file(generation, name)))
        dataset.drop_index(name)
    return report


def _fit_or_restore(embedder, corpus: str, previous_generation, previous, name, reusable, texts) -> dict:
    """Refit a collection-fitted model unless the corpus is unchanged (then its old vectors stay valid)."""
    old = (previous or {}).get("models", {}).get(name, {})
    if previous_generation is not None and old.get("corpus_digest") == corpus:
        embedder.load_state(store.state_dir(previous_generation, name))
        return reusable
    embedder.fit(texts)
    return {}


def corpus_digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def _embed_rows(embedder, indexes: str, raw_images, rows: list[int], out: np.ndarray, progress: bool,
                name: str) -> None:
    from tqdm.auto import tqdm

    size = embedder.batch_size
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(rows), desc=f"embed {name}", unit="row",
                                                          disable=not progress) as bar:
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            batch = raw_images[chunk]
            if indexes == IMAGE:
                # stored bytes are never DICOM (rendered to PNG at read time): name them by id, not file name
                images = list(pool.map(lambda item: load_image(item[0]["bytes"], item[1]),
                                       zip(batch["image"], batch["id"])))
                out[chunk] = embedder.embed_images(images)
            else:
                out[chunk] = embedder.embed_texts(batch["text"])
            bar.update(len(chunk))


def _previous_vectors(generation: Path | None, manifest: dict | None) -> dict[str, dict[str, np.ndarray]]:
    """{model: {content key: vector}} from the previous build, for models whose weights are unchanged."""
    if generation is None or not manifest:
        return {}
    import datasets

    try:
        dataset = datasets.load_from_disk(str(generation / "dataset"))
    except Exception:
        return {}
    cached = {}
    for name, info in manifest.get("models", {}).items():
        if name not in dataset.column_names:
            continue
        if not _weights_unchanged(name, info):
            continue
        spec = embedder_spec(name)
        keys = dataset["image_sha256"] if spec.indexes == IMAGE else dataset["text"]
        vectors = dataset.with_format("numpy", columns=[name])[name]
        cached[name] = dict(zip(keys, np.asarray(vectors, dtype=np.float32)))
    return cached


def _manifest(source, quick, skip_invalid, report: BuildReport, rows, names) -> dict:
    from collections import Counter

    content = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.file_name):
        content.update(json.dumps(row.metadata(), sort_keys=True).encode())
    models = {}
    for name in names:
        embedder, spec = get_embedder(name), embedder_spec(name)
        models[name] = {
            "family": spec.family, "modalities": list(spec.modalities), "indexes": spec.indexes,
            "dim": embedder.dim, "version": embedder.version(), "metric": "cosine (inner product of unit vectors)",
            "faiss": f"faiss/{name}.faiss", "faiss_factory": "Flat", "rows": report.rows,
            "default_min_score": spec.default_min_score, **asdict(report.models[name]),
        }
    return {
        "manifest_version": store.MANIFEST_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": str(Path(source).expanduser().resolve()) if is_local(source) else str(source),
        "quick_fingerprint": quick,
        "fingerprint": content.hexdigest(),
        "skip_invalid": skip_invalid,
        "rows": report.rows,
        "categories": dict(Counter(row.category for row in rows)),
        "skipped_rows": report.skipped_rows,
        "models": models,
        "libraries": _library_versions(),
    }


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("datasets", "faiss-cpu", "torch", "transformers", "sentence-transformers", "scikit-learn",
                    "numpy", "pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions
