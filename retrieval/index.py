"""Build an index: collection -> validated rows -> Dataset -> one vector column + FAISS index per model, and a
2-D map of the collection per image model (written by `writer.GenerationWriter`, as `publish` writes).

The collection is read once: metadata.csv parsed once (a DICOM archive's headers instead: archive.py), and each image read, hashed and decoded once for every
purpose (validation, pHash, thumbnail, the image models' input; `image_pass`). Only stale vectors are
embedded: vectors are cached by content (image hash or metadata text) and model version, so an unchanged
collection embeds nothing and one new image embeds one image. A map is projected again only when its model's
vectors changed.

A big build resumes: image vectors are checkpointed as they are embedded (`checkpoints.py`), so after a kill
at any moment the next build embeds only what neither the checkpoints nor the previous generation hold. Its
memory does not grow with the images: each chunk's rows (image bytes, render, thumbnail) are written to the
generation's scratch Arrow file as the chunk is read (`collection.RowWriter`); what is kept per row is its
metadata, hashes and vectors.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from .archive import ArchiveOptions, is_archive, read_archive, skipped_text
from .checkpoints import Checkpoints
from .collection import METADATA_FILE, ROW_COLUMNS, ROW_TEXT_VERSION, RowWriter, is_local, scan_files
from .embedders import (
    BUILD_DEFAULTS, IMAGE, availability, embedder_spec, get_embedder, list_embedders, model_version,
)
from .errors import CollectionError, EmbedderUnavailable, RetrievalError
from .image_pass import ReadImage
from .layout import IndexFolder, IndexGeneration
from .manifest import Manifest, ModelEntry
from .schema import ARCHIVE_FIELDS
from .writer import Column, GenerationWriter, embed_texts

IMAGE_CHUNK = 64  # images handed to the image models at once
RESERVED_COLUMNS = frozenset(ROW_COLUMNS + ARCHIVE_FIELDS)  # a model's vector column is named by the model


@dataclass
class BuildReport:
    index_dir: str
    generation: str
    rows: int
    up_to_date: bool = False
    models: dict[str, ModelEntry] = field(default_factory=dict)
    skipped_rows: dict[str, str] = field(default_factory=dict)  # file_name -> why
    skipped_models: dict[str, str] = field(default_factory=dict)  # model -> why
    skipped_objects: dict[str, int] = field(default_factory=dict)  # a DICOM archive: reason -> files left out
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


def quick_fingerprint(source: str | Path, options: str = "") -> str | None:
    """Cheap change detector for a local folder (names, sizes, mtimes, metadata bytes, and the `options` that
    change what is read from it); None for the Hub."""
    if not is_local(source):
        return None
    root = Path(source).expanduser().resolve()
    digest = hashlib.sha256()
    for name in scan_files(root):
        stat = (root / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if (root / METADATA_FILE).is_file():
        digest.update((root / METADATA_FILE).read_bytes())
    digest.update(f"row text {ROW_TEXT_VERSION} {options}".encode())  # the texts derived from the metadata, too
    return digest.hexdigest()


def build_index(source: str | Path, index_dir: str | Path = "index", models: Iterable[str] | str | None = None,
                skip_invalid: bool = False, split: str = "train", log=print, progress: bool = True,
                force: bool = False, archive: ArchiveOptions | None = None) -> BuildReport:
    """Build (or refresh) the index of `source` in `index_dir`; returns what was done.

    Raises CollectionError for an invalid collection unless `skip_invalid`, which leaves the offending
    rows out and names each one in the report. A DICOM archive (archive.is_archive) is read with `archive`
    (default: projection radiographs, no burned-in text); what it leaves out is counted, never fatal.
    """
    started = time.perf_counter()
    folder = IndexFolder(index_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    previous_generation = folder.current()
    previous = _previous_manifest(previous_generation)
    names, skipped_models = resolve_models(models, previous)
    for name, why in skipped_models.items():
        log(f"Skipping model {name}: {why}")
    archive, salt, options = _archive_of(source, archive, folder)
    quick = quick_fingerprint(source, options)
    if (not force and previous and quick and previous.quick_fingerprint == quick
            and previous.skip_invalid == skip_invalid and _same_models(previous, names)
            and _has_maps(previous_generation) and _intact(previous_generation, log)):
        log(f"Index in {folder.root} is up to date ({previous.rows} rows, models {', '.join(names)}).")
        for name in names:  # left by a build killed after it published, or of a collection since restored
            folder.clear_checkpoints(name)
        return BuildReport(str(folder.root), previous_generation.name, previous.rows, up_to_date=True,
                           skipped_models=skipped_models, skipped_objects=previous.skipped_objects,
                           seconds=time.perf_counter() - started)

    with GenerationWriter(folder, previous_generation, progress=progress) as writer:
        old = _previous_vectors(previous_generation, previous)
        plans = {name: _Plan.load(name, old.pop(name, {})) for name in names}
        image_plans = [plan for plan in plans.values() if plan.reads_images]
        for plan in image_plans:
            plan.resume(folder, log)
        bar = _BuildBar(progress, stages=2 * len(plans) + len(image_plans) + 1 + (len(image_plans) > 1) + sum(
            plan.embedder.needs_fit for plan in plans.values()))  # + the joint "no close match" judge
        rows = RowWriter(writer.scratch_path, archive=archive is not None)
        images = _ImageEmbedding(image_plans, skip_invalid or archive is not None, rows, bar)
        skipped_rows, skipped_objects = {}, {}
        try:
            if archive is not None:  # nothing in an archive is fatal: the report counts what is left out
                skipped_objects = read_archive(source, salt, archive, images.sides, images, progress, images.expect)
                if skipped_objects:
                    log(f"Left out {sum(skipped_objects.values())} file(s) of the archive:\n"
                        + skipped_text(skipped_objects))
            else:
                skipped_rows = _read_collection(source, skip_invalid, split, log, progress, images)
        finally:
            images.flush()  # what was embedded is kept for the next build, even when this one stops here
        if not rows.rows:
            raise CollectionError(f"{source} holds no images to index." + (
                f" Left out:\n{skipped_text(skipped_objects)}" if skipped_objects else ""))
        dataset = rows.finish()
        for plan in plans.values():
            bar.stage(f"embed {plan.name}")
            plan.finish(dataset, progress)
        manifest = writer.write(dataset, {name: plan.column() for name, plan in plans.items()}, Manifest(
            collection=collection_name(source), fingerprint="", rows=0, models={}, quick_fingerprint=quick,
            skip_invalid=skip_invalid, skipped_rows=skipped_rows, skipped_objects=skipped_objects,
            libraries=_library_versions()), step=bar.stage)
        bar.close()
    for plan in image_plans:  # the published generation holds their vectors now
        folder.clear_checkpoints(plan.name)
    report = BuildReport(str(folder.root), writer.generation.name, manifest.rows, models=manifest.models,
                         skipped_rows=skipped_rows, skipped_models=skipped_models, skipped_objects=skipped_objects,
                         seconds=time.perf_counter() - started)
    log(f"Built {report.rows} rows into {index_dir} in {report.seconds:.1f} s: " + ", ".join(
        f"{n} ({m.embedded} embedded, {m.reused} reused, " + (f"{m.resumed} resumed, " if m.resumed else "")
        + f"{m.seconds:.1f} s"
        + (f"; map {m.map_seconds:.1f} s)" if m.map_digest else ")") for n, m in report.models.items()))
    return report


def _archive_of(source, archive: ArchiveOptions | None, folder: IndexFolder):
    """For a DICOM archive: its options (default ones unless given), the folder's salt, and what both change
    in the index (for the "unchanged?" test: a new salt means new ids). (None, b"", "") for a collection."""
    if not (is_local(source) and is_archive(source)):
        return None, b"", ""
    archive = archive or ArchiveOptions()
    salt = folder.salt()
    return archive, salt, f"{archive.key()} salt={hashlib.sha256(salt).hexdigest()}"


def _read_collection(source, skip_invalid: bool, split: str, log, progress: bool, images: "_ImageEmbedding"):
    """Read the collection, its rows going to `images` (embedded and written chunk by chunk); returns the rows
    left out (file name -> why). A local folder is validated as it is read; invalid rows are refused (every
    problem named) or, with `skip_invalid`, left out."""
    if is_local(source):
        from .validate import check_images, check_rows

        validation = check_rows(source)
        doomed = bool(validation.errors) and not skip_invalid  # read the images only to name every problem
        skip = set(validation.invalid_files())
        images.expect(sum(row.file_name not in skip for row in validation.records))
        check_images(validation, progress=progress and doomed, skip=skip, sides=images.sides,
                     thumbnails=not doomed, on_chunk=None if doomed else images)
        invalid = validation.invalid_files()
        messages = [finding.message for finding in validation.errors]
        unfixable = any(not finding.file_name for finding in validation.errors)  # not a row to leave out
    else:
        from .collection import collection_rows
        from .image_pass import read_images

        rows = collection_rows(source, split=split)
        images.expect(len(rows))
        _, invalid = read_images(rows, sides=images.sides, thumbnails=True, on_chunk=images)
        messages, unfixable = list(invalid.values()), False
    if unfixable or (invalid and not skip_invalid):
        raise CollectionError("The collection did not validate:\n" + "\n".join(
            f"  - {message}" for message in messages[:50]) + (
            "" if unfixable else "\nFix these, or build with --skip-invalid to leave the offending rows out."))
    for name, why in invalid.items():
        log(f"Skipping row {name}: {why}")
    return invalid


class _Plan:
    """One model's share of a build: the model, the vectors it takes over (by content key) from the previous
    generation or from the checkpoints of an interrupted build, the ones it still embeds, and the time spent on
    it. A model fitted on the collection is left to the writer to (re)fit."""

    def __init__(self, name: str, embedder, reusable: dict[str, np.ndarray], seconds: float):
        spec = embedder_spec(name)
        self.name, self.embedder, self.reusable, self.seconds = name, embedder, reusable, seconds
        self.entry = ModelEntry(family=spec.family, modalities=list(spec.modalities), indexes=spec.indexes,
                                dim=embedder.dim, version=model_version(name),
                                default_min_score=spec.default_min_score)
        self.resumed: dict[str, np.ndarray] = {}  # content key -> vector from an interrupted build's checkpoints
        self.computed: dict[str, np.ndarray] = {}  # content key -> vector embedded by this build
        self.checkpoints: Checkpoints | None = None
        self.vectors: np.ndarray | None = None
        self.counts = {"embedded": 0, "reused": 0, "resumed": 0}

    @classmethod
    def load(cls, name: str, reusable: dict[str, np.ndarray]) -> "_Plan":
        began = time.perf_counter()
        embedder = get_embedder(name)
        return cls(name, embedder, {} if embedder.needs_fit else reusable, time.perf_counter() - began)

    @property
    def reads_images(self) -> bool:
        return self.entry.indexes == IMAGE

    def resume(self, folder: IndexFolder, log) -> None:
        """Take the vectors an interrupted build checkpointed in `folder`, and checkpoint this build's."""
        self.checkpoints = Checkpoints(folder, self.name, self.entry.version, self.embedder.dim, log=log)
        self.resumed = {key: vector for key, vector in self.checkpoints.load().items() if key not in self.reusable}
        if self.resumed:
            log(f"Resuming {self.name}: {len(self.resumed)} vectors from an interrupted build's checkpoints.")

    def wants(self, key: str) -> bool:
        return key not in self.reusable and key not in self.resumed and key not in self.computed

    def embed(self, keys: list[str], pictures: list) -> None:
        vectors = self.embedder.embed_images(pictures)
        self.computed.update(zip(keys, vectors))
        if self.checkpoints is not None:
            self.checkpoints.add(keys, vectors)

    def finish(self, dataset, progress: bool) -> None:
        """Every row's vector: taken over, embedded from the images during the read, or (texts) embedded now,
        each distinct missing text once. The per-key caches are dropped: only the row-ordered array stays."""
        if self.embedder.needs_fit:
            return
        began = time.perf_counter()
        keys = dataset["image_sha256"] if self.reads_images else dataset["text"]
        if not self.reads_images:
            missing = list(dict.fromkeys(key for key in keys if self.wants(key)))
            if missing:
                self.computed.update(zip(missing, embed_texts(self.embedder, missing, progress,
                                                              desc=f"embed {self.name}")))
        self.vectors = np.zeros((len(keys), self.embedder.dim), dtype=np.float32)
        for row, key in enumerate(keys):
            for kind, source in (("reused", self.reusable), ("resumed", self.resumed), ("embedded", self.computed)):
                if key in source:
                    self.vectors[row] = source[key]
                    self.counts[kind] += 1
                    break
        self.reusable, self.resumed, self.computed = {}, {}, {}
        self.seconds += time.perf_counter() - began

    def column(self) -> Column:
        entry = replace(self.entry, seconds=round(self.seconds, 3))
        if self.embedder.needs_fit:
            return Column(entry, to_fit=self.embedder)
        return Column(replace(entry, **self.counts), self.vectors)


class _ImageEmbedding:
    """Takes each chunk the collection's read decoded to the image models that lack those images' vectors
    (each distinct image embedded once per model), while the next chunk is decoded; then writes the chunk's
    rows (`rows`) and lets go of their pictures, renders and thumbnails. After an unreadable image in a build
    that will refuse the collection, it stops embedding and writing."""

    def __init__(self, plans: list[_Plan], skip_invalid: bool, rows: RowWriter, bar: "_BuildBar"):
        self.plans, self.skip_invalid, self.rows, self.bar = plans, skip_invalid, rows, bar
        self.sides = sorted({plan.embedder.decode_side for plan in plans})
        self.refused = False

    def expect(self, images: int) -> None:
        self.bar.expect(images)

    def __call__(self, chunk: list[ReadImage]) -> None:
        self.refused = self.refused or (not self.skip_invalid and any(read.problem for read in chunk))
        if not self.refused:
            for plan in self.plans:
                began = time.perf_counter()
                wanted: dict[str, object] = {}
                for read in chunk:
                    if read.facts is not None and plan.wants(read.facts.sha256):
                        wanted.setdefault(read.facts.sha256, read.pictures[plan.embedder.decode_side])
                keys = list(wanted)
                for start in range(0, len(keys), IMAGE_CHUNK):
                    batch = keys[start:start + IMAGE_CHUNK]
                    plan.embed(batch, [wanted[key] for key in batch])
                plan.seconds += time.perf_counter() - began
            for read in chunk:
                if read.facts is not None:
                    self.rows.add(read.row, read.facts)
                    read.facts.thumbnail = read.facts.rendered = None  # in the Arrow file now
        self.bar.images(len(chunk), {plan.name: f"{len(plan.computed)} new" + (
            f", {len(plan.resumed)} resumed" if plan.resumed else "") for plan in self.plans})

    def flush(self) -> None:
        """Checkpoint what is embedded but not yet in a part."""
        for plan in self.plans:
            if plan.checkpoints is not None:
                plan.checkpoints.flush()


class _BuildBar:
    """One progress bar over the whole build: a step per image read (and embedded, and written), then one per
    finishing stage (text embedding, fitting, the dataset, then FAISS and a map per model), named as it runs."""

    def __init__(self, enabled: bool, stages: int):
        from tqdm.auto import tqdm

        self.stages, self.running = stages, False
        self.bar = tqdm(total=stages, desc="build: read + embed", unit="step", disable=not enabled)

    def expect(self, images: int) -> None:
        self.bar.total = images + self.stages
        self.bar.refresh()

    def images(self, count: int, postfix: dict) -> None:
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(count)

    def stage(self, label: str) -> None:
        """A finishing stage begins (the one before it is done)."""
        if self.running:
            self.bar.update(1)
        self.running = True
        self.bar.set_description(f"build: {label}")

    def close(self) -> None:
        if self.running:
            self.bar.update(1)
        self.bar.total = self.bar.n  # ends at 100 % whatever stages the writer skipped
        self.bar.close()


def collection_name(source: str | Path) -> str:
    """How a manifest names a collection: the folder's name, or the Hub dataset id."""
    return Path(source).expanduser().resolve().name if is_local(source) else str(source)


def _intact(generation: IndexGeneration, log) -> bool:
    """True when every artefact of the generation matches the manifest's counts (else: rebuild)."""
    damage = generation.damage()
    if damage:
        log(f"The index in {generation.folder} is damaged ({damage}); rebuilding it.")
    return damage is None


def _has_maps(generation: IndexGeneration) -> bool:
    """False when an image model has no stored map or novelty scorer, or the index has no current judge (built
    before they existed, or a copy that left them out): the build then adds them, reusing every vector."""
    from .joint_novelty import is_current as joint_is_current
    from .novelty import is_current

    models = generation.manifest.models
    return all(generation.has_map(name) and is_current(generation, name)
               for name, entry in models.items() if entry.indexes == IMAGE) and joint_is_current(generation)


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
