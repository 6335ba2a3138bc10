"""Build an index: collection -> validated rows -> Dataset -> one vector column + FAISS index per model, and a
2-D map of the collection per image model.

Only stale vectors are embedded: vectors are cached by content (image hash or metadata text) and model
version, so an unchanged collection embeds nothing and one new image embeds one image. A map is projected
again only when its model's vectors changed.
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

from .collection import (
    METADATA_FILE, ROW_TEXT_VERSION, collection_rows, encode_for_storage, is_local, scan_files,
)
from .embedders import (
    BUILD_DEFAULTS, IMAGE, availability, embedder_spec, get_embedder, list_embedders, model_version,
)
from .errors import CollectionError, EmbedderUnavailable, RetrievalError
from .images import load_image
from .layout import IndexFolder, IndexGeneration, Manifest, ModelEntry

IMAGE_CHUNK = 64  # images decoded ahead of the model (a few MB of pixels)
TEXT_CHUNK = 256
RESERVED_COLUMNS = {"id", "file_name", "category", "label", "view", "caption", "source", "source_url",
                    "license", "text", "image_sha256", "image", "thumbnail"}


@dataclass
class ModelBuild:
    dim: int
    embedded: int  # vectors computed in this build
    reused: int  # vectors taken from the previous build
    seconds: float
    corpus_digest: str | None = None  # for models fitted on the collection: what they were fitted on
    faiss_factory: str = "Flat"
    recall_at_10: float | None = None
    map_digest: str | None = None  # image models: the vectors their 2-D map was projected from
    map_seconds: float = 0.0  # projecting (0 when the previous map was taken over)


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


def resolve_models(models: Iterable[str] | str | None,
                   previous: Manifest | None) -> tuple[list[str], dict[str, str]]:
    """The models to build and those skipped (with why). "all" means every available registered model;
    None the previous build's models, else the registry's build defaults that are available here."""
    if models is None:
        registered = set(list_embedders())  # a default model this program lacks is simply not built
        names = list(previous.models) if previous else [name for name in BUILD_DEFAULTS if name in registered]
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
    digest.update(f"row text {ROW_TEXT_VERSION}".encode())  # the texts derived from the metadata, too
    return digest.hexdigest()


def build_index(source: str | Path, index_dir: str | Path = "index", models: Iterable[str] | str | None = None,
                skip_invalid: bool = False, split: str = "train", log=print, progress: bool = True,
                force: bool = False) -> BuildReport:
    """Build (or refresh) the index of `source` in `index_dir`; returns what was done.

    Raises CollectionError for an invalid collection unless `skip_invalid`, which leaves the offending
    rows out and names each one in the report.
    """
    started = time.perf_counter()
    folder = IndexFolder(index_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    previous_generation = folder.current()
    previous = _previous_manifest(previous_generation)
    names, skipped_models = resolve_models(models, previous)
    for name, why in skipped_models.items():
        log(f"Skipping model {name}: {why}")
    quick = quick_fingerprint(source)
    if (not force and previous and quick and previous.quick_fingerprint == quick
            and previous.skip_invalid == skip_invalid and _same_models(previous, names)
            and _has_maps(previous_generation) and _intact(previous_generation, log)):
        log(f"Index in {folder.root} is up to date ({previous.rows} rows, models {', '.join(names)}).")
        return BuildReport(str(folder.root), previous_generation.name, previous.rows, up_to_date=True,
                           skipped_models=skipped_models, seconds=time.perf_counter() - started)

    skipped_rows = _validated_skips(source, skip_invalid, log, progress)
    rows = collection_rows(source, skip=skipped_rows, split=split)
    if not rows:
        raise CollectionError(f"{source} holds no images to index.")
    generation = folder.new_generation()
    try:
        report = _build_generation(rows, names, generation, previous_generation, previous, progress)
        report.skipped_rows, report.skipped_models = skipped_rows, skipped_models
        generation.write_manifest(_manifest(source, quick, skip_invalid, report, rows, names))
        folder.publish(generation)
    except BaseException:
        folder.discard(generation)  # the previous generation stays current
        raise
    report.index_dir, report.generation = str(folder.root), generation.name
    report.seconds = time.perf_counter() - started
    log(f"Built {report.rows} rows into {index_dir} in {report.seconds:.1f} s: " + ", ".join(
        f"{n} ({m.embedded} embedded, {m.reused} reused, {m.seconds:.1f} s"
        + (f"; map {m.map_seconds:.1f} s)" if m.map_digest else ")") for n, m in report.models.items()))
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


def _intact(generation: IndexGeneration, log) -> bool:
    """True when every artefact of the generation matches the manifest's counts (else: rebuild)."""
    damage = generation.damage()
    if damage:
        log(f"The index in {generation.folder} is damaged ({damage}); rebuilding it.")
    return damage is None


def _has_maps(generation: IndexGeneration) -> bool:
    """False when an image model has no stored map (an index built before maps existed, or a copy that left
    them out): the build then adds it, reusing every vector."""
    models = generation.manifest.models
    return all(generation.has_map(name) for name, entry in models.items() if entry.indexes == IMAGE)


def _previous_manifest(generation: IndexGeneration | None) -> Manifest | None:
    if generation is None:
        return None
    try:
        return generation.manifest
    except RetrievalError:
        return None


def _same_models(previous: Manifest, names: list[str]) -> bool:
    if list(previous.models) != names:
        return False
    return all(_weights_unchanged(name, previous.models[name]) for name in names)


def _weights_unchanged(name: str, built: ModelEntry) -> bool:
    """True when the registry's weights are the ones the stored vectors came from (no model is loaded)."""
    try:
        return model_version(name) == built.version
    except RetrievalError:
        return False


def _build_generation(rows, names, generation: IndexGeneration, previous_generation, previous,
                      progress: bool) -> BuildReport:
    import datasets
    from tqdm.auto import tqdm

    from .collection import rows_to_dataset

    dataset = rows_to_dataset(rows, encode_for_storage, generation.scratch_path,
                              progress=lambda it: tqdm(it, total=len(rows), desc="read images", unit="img",
                                                       disable=not progress))
    old = _previous_vectors(previous_generation, previous)
    report = BuildReport("", generation.name, len(dataset))
    plans = {name: _plan(name, dataset, old.get(name, {}), generation, previous_generation, previous)
             for name in names}
    raw_images = dataset.cast_column("image", datasets.Image(decode=False))
    for name, plan in plans.items():
        if plan.indexes != IMAGE:
            _embed_texts(plan, dataset["text"], progress)
    _embed_images([plan for plan in plans.values() if plan.indexes == IMAGE], raw_images, progress)
    for name, plan in plans.items():
        dataset = dataset.add_column(name, list(plan.vectors),
                                     feature=datasets.List(datasets.Value("float32"), length=plan.embedder.dim))
        report.models[name] = ModelBuild(plan.embedder.dim, len(plan.missing), len(dataset) - len(plan.missing),
                                         plan.seconds, plan.corpus)
    generation.save_dataset(dataset)
    dataset = generation.load_dataset(verify=False)  # the saved copy, not the scratch one
    shutil.rmtree(generation.scratch_path, ignore_errors=True)
    for name in names:
        choice = generation.write_faiss(dataset, name)
        report.models[name].faiss_factory, report.models[name].recall_at_10 = choice.factory, choice.recall_at_10
    _write_maps(generation, dataset, names, previous_generation, previous, report, progress)
    return report


def _write_maps(generation: IndexGeneration, dataset, names, previous_generation, previous, report: BuildReport,
                progress: bool) -> None:
    """Project each image model's vectors to the 2-D map of the collection. A model whose vectors are the ones
    the previous map was projected from takes that map over: t-SNE costs seconds, a copy nothing."""
    from tqdm.auto import tqdm

    from .projection import map_key, project

    image_models = [name for name in names if embedder_spec(name).indexes == IMAGE]
    with tqdm(image_models, desc="map", unit="model", disable=not progress) as bar:
        for name in bar:
            began = time.perf_counter()
            vectors = generation.vectors(name, dataset)
            key = map_key(vectors)
            if _reuse_map(generation, name, key, previous_generation, previous):
                bar.set_description(f"map {name} (vectors unchanged: kept)")
            else:
                bar.set_description(f"map {name} (t-SNE of {len(vectors)} rows)")
                generation.write_map(name, project(vectors))
            report.models[name].map_digest = key
            report.models[name].map_seconds = time.perf_counter() - began


def _reuse_map(generation: IndexGeneration, name: str, key: str, previous_generation, previous) -> bool:
    """Copy the previous generation's map of `name` when it was projected from these very vectors."""
    old = previous.models.get(name) if previous else None
    if old is None or old.map_digest != key:
        return False
    try:
        previous_generation.read_map(name)  # refuses a missing or damaged file
        generation.reuse_map(name, previous_generation)
    except (OSError, RetrievalError):  # project again
        return False
    return True


def _fit_or_restore(embedder, corpus: str, previous_generation, previous, name, reusable, texts) -> dict:
    """Refit a collection-fitted model unless the corpus is unchanged (then its old vectors stay valid)."""
    old = previous.models.get(name) if previous else None
    if previous_generation is not None and old is not None and old.corpus_digest == corpus:
        embedder.load_state(previous_generation.state_path(name))
        return reusable
    embedder.fit(texts)
    return {}


def corpus_digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


@dataclass
class _Plan:
    """One model's share of a build: its vectors, the rows still to embed, and the time spent on it."""

    name: str
    embedder: object
    indexes: str
    vectors: np.ndarray
    missing: list[int]  # rows without a reusable vector
    todo: dict[int, list[int]]  # first row of each distinct missing key -> every row with that key
    corpus: str | None
    seconds: float


def _plan(name: str, dataset, reusable: dict, generation: IndexGeneration, previous_generation, previous) -> _Plan:
    """Load the model (fit it when it is fitted on the collection), take over every vector it can."""
    began = time.perf_counter()
    embedder = get_embedder(name)
    spec = embedder_spec(name)
    keys = dataset["image_sha256"] if spec.indexes == IMAGE else dataset["text"]
    corpus = None
    if embedder.needs_fit:
        corpus = corpus_digest(dataset["text"])
        reusable = _fit_or_restore(embedder, corpus, previous_generation, previous, name, reusable, dataset["text"])
        embedder.save_state(generation.state_path(name))
    vectors = np.zeros((len(dataset), embedder.dim), dtype=np.float32)
    missing, todo, first = [], {}, {}
    for i, key in enumerate(keys):
        if key in reusable:
            vectors[i] = reusable[key]
            continue
        missing.append(i)
        todo.setdefault(first.setdefault(key, i), []).append(i)  # equal texts (or images) are embedded once
    return _Plan(name, embedder, spec.indexes, vectors, missing, todo, corpus, time.perf_counter() - began)


def _store(plan: _Plan, rows: list[int], vectors: np.ndarray) -> None:
    for row, vector in zip(rows, vectors):
        plan.vectors[plan.todo[row]] = vector


def _embed_texts(plan: _Plan, texts: list[str], progress: bool) -> None:
    """Each distinct missing text once, in chunks (the encoder sorts each chunk by length)."""
    from tqdm.auto import tqdm

    began = time.perf_counter()
    rows = list(plan.todo)
    with tqdm(total=len(rows), desc=f"embed {plan.name}", unit="text", disable=not progress or not rows) as bar:
        for start in range(0, len(rows), TEXT_CHUNK):
            chunk = rows[start:start + TEXT_CHUNK]
            _store(plan, chunk, plan.embedder.embed_texts([texts[i] for i in chunk]))
            bar.update(len(chunk))
    plan.seconds += time.perf_counter() - began


def _embed_images(plans: list[_Plan], raw_images, progress: bool) -> None:
    """Every image model's missing rows in one pass over the images: each image is decoded once for all the
    models that read it at the same size. One thread decodes the next chunk while the models run on this one:
    their own threads keep both cores, so more decoders would only compete with them."""
    from tqdm.auto import tqdm

    by_side: dict[int, list[_Plan]] = {}
    for plan in plans:
        if plan.todo:
            by_side.setdefault(plan.embedder.decode_side, []).append(plan)
    for side, group in by_side.items():
        rows = sorted(set().union(*(plan.todo for plan in group)))
        chunks = [rows[start:start + IMAGE_CHUNK] for start in range(0, len(rows), IMAGE_CHUNK)]
        decoding: dict[str, float] = {}

        def read(chunk: list[int]):
            began = time.perf_counter()
            batch = raw_images[chunk]
            # stored bytes are never DICOM (rendered to PNG at read time): name them by id, not file name
            images = [load_image(image["bytes"], item_id, max_side=side)
                      for image, item_id in zip(batch["image"], batch["id"])]
            decoding["seconds"] = time.perf_counter() - began
            return images

        names = ", ".join(plan.name for plan in group)
        with ThreadPoolExecutor(max_workers=1) as decoder, tqdm(total=len(rows), desc=f"embed {names}", unit="img",
                                                                 disable=not progress) as bar:
            pending = decoder.submit(read, chunks[0])
            for position, chunk in enumerate(chunks):
                images = pending.result()
                readers = [plan for plan in group if any(row in plan.todo for row in chunk)]
                for plan in readers:  # the chunk's decoding is shared by the models that read it
                    plan.seconds += decoding["seconds"] / len(readers)
                if position + 1 < len(chunks):
                    pending = decoder.submit(read, chunks[position + 1])
                for plan in readers:
                    began = time.perf_counter()
                    wanted = [i for i, row in enumerate(chunk) if row in plan.todo]
                    _store(plan, [chunk[i] for i in wanted], plan.embedder.embed_images([images[i] for i in wanted]))
                    plan.seconds += time.perf_counter() - began
                bar.update(len(chunk))


def _previous_vectors(generation: IndexGeneration | None,
                      manifest: Manifest | None) -> dict[str, dict[str, np.ndarray]]:
    """{model: {content key: vector}} from the previous build, for models whose weights are unchanged."""
    if generation is None or manifest is None:
        return {}
    try:
        dataset = generation.load_dataset()
    except RetrievalError:
        return {}
    cached = {}
    for name, entry in manifest.models.items():
        if name not in dataset.column_names or not _weights_unchanged(name, entry):
            continue
        keys = dataset["image_sha256"] if entry.indexes == IMAGE else dataset["text"]
        cached[name] = dict(zip(keys, generation.vectors(name, dataset)))
    return cached


def collection_name(source: str | Path) -> str:
    """How a manifest names a collection: the folder's name, or the Hub dataset id."""
    return Path(source).expanduser().resolve().name if is_local(source) else str(source)


def _manifest(source, quick, skip_invalid, report: BuildReport, rows, names) -> Manifest:
    from collections import Counter

    content = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.file_name):
        content.update(json.dumps(row.metadata(), sort_keys=True).encode())
    models = {}
    for name in names:
        spec, built = embedder_spec(name), report.models[name]
        models[name] = ModelEntry(
            family=spec.family, modalities=list(spec.modalities), indexes=spec.indexes, dim=built.dim,
            version=model_version(name), default_min_score=spec.default_min_score, rows=report.rows,
            embedded=built.embedded, reused=built.reused, seconds=round(built.seconds, 3),
            corpus_digest=built.corpus_digest, faiss_factory=built.faiss_factory, recall_at_10=built.recall_at_10,
            map_digest=built.map_digest)
    return Manifest(
        collection=collection_name(source), fingerprint=content.hexdigest(), rows=report.rows, models=models,
        categories=dict(Counter(row.category for row in rows)), quick_fingerprint=quick,
        skip_invalid=skip_invalid, skipped_rows=report.skipped_rows,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), libraries=_library_versions())


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
