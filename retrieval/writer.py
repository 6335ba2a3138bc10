"""The one writer of an index generation, behind both `build` and `publish`: rows and vectors in; the dataset
with its vector columns, FAISS files, fitted states, maps and the manifest out, checked, then made current.

    with GenerationWriter(IndexFolder("index"), previous=folder.current()) as writer:
        dataset = ...                       # the rows, written under writer.scratch_path
        writer.write(dataset, {"clip": Column(entry, vectors), "tfidf": Column(entry, to_fit=embedder)}, manifest)

Vectors arrive computed or reused; a model fitted on the collection (TF-IDF) arrives unfitted and is fitted
on the rows' texts here, or restored with its previous vectors when the texts are the ones it was fitted on.
A map is taken over from the previous generation when the vectors are the ones it was projected from, else
projected; so is an image model's novelty scorer (novelty.py), fitted on the vectors, categories and sources,
and, over the image models with scorers, the "no close match" judge (joint_novelty.py).
An exception anywhere discards the new generation: the previous one stays current.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .collection import metadata_fingerprint
from .embedders import IMAGE
from .errors import BrokenIndex, RetrievalError
from .layout import IndexFolder, IndexGeneration
from .manifest import Manifest, ModelEntry
from .schema import ALL_FIELDS

TEXT_CHUNK = 256


@dataclass
class Column:
    """One model's share of a generation: what the model is (`entry`, with embedded/reused/seconds of this
    build) and either its vectors in row order, or, for a model fitted on the collection, the model to fit."""

    entry: ModelEntry
    vectors: np.ndarray | None = None
    to_fit: object | None = None  # an Embedder with needs_fit, unfitted


def corpus_digest(texts: list[str]) -> str:
    """What a model fitted on the collection was fitted on: the rows' texts in row order."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def embed_texts(embedder, texts: list[str], progress: bool = False, desc: str = "embed") -> np.ndarray:
    """(len(texts), dim) float32: each distinct text embedded once, in chunks (the encoder sorts each chunk
    by length)."""
    from tqdm.auto import tqdm

    distinct = list(dict.fromkeys(texts))
    computed = np.zeros((len(distinct), embedder.dim), dtype=np.float32)
    with tqdm(total=len(distinct), desc=desc, unit="text", disable=not progress or not distinct) as bar:
        for start in range(0, len(distinct), TEXT_CHUNK):
            chunk = distinct[start:start + TEXT_CHUNK]
            computed[start:start + len(chunk)] = embedder.embed_texts(chunk)
            bar.update(len(chunk))
    position = {text: i for i, text in enumerate(distinct)}
    return computed[[position[text] for text in texts]] if texts else computed


class GenerationWriter:
    """Writes one new generation of `folder` and publishes it (a `current` symlink, or with `portable` a
    CURRENT file for a copy that keeps no symlinks) only when it is whole; `previous` lends its fitted states,
    vectors and maps where they are still right."""

    def __init__(self, folder: IndexFolder, previous: IndexGeneration | None = None, portable: bool = False,
                 progress: bool = False):
        self.folder, self.previous, self.portable, self.progress = folder, previous, portable, progress
        self.generation: IndexGeneration | None = None

    def __enter__(self) -> "GenerationWriter":
        self.folder.root.mkdir(parents=True, exist_ok=True)
        self.generation = self.folder.new_generation()
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is not None:
            self.folder.discard(self.generation)  # the previous generation stays current
        return False

    @property
    def scratch_path(self) -> Path:
        """Where the caller may write the rows' Dataset before `write` (removed before publishing)."""
        return self.generation.scratch_path

    def write(self, dataset, columns: dict[str, Column], manifest: Manifest, step=None) -> Manifest:
        """Write `dataset` (the rows) with one vector column per model, then FAISS files, states, maps and
        the manifest (`manifest` with the rows' fingerprint, counts and models filled in); check it and make
        it current. Returns the manifest written. `step(label)`, if given, is told as each stage begins (one
        per fitted model, the dataset, then FAISS per model and a map per image model)."""
        import datasets
        import pyarrow as pa

        step = step or (lambda label: None)
        generation = self.generation
        texts = dataset["text"] if any(column.to_fit is not None for column in columns.values()) else []
        entries = {}
        for name, column in columns.items():
            if column.to_fit is not None:
                step(f"fit {name}")
                column = self._fit(name, column, texts)
            entries[name] = column.entry
            if name in dataset.column_names:
                dataset = dataset.remove_columns(name)
            vectors = np.ascontiguousarray(column.vectors, dtype=np.float32)  # as Arrow without a copy per row
            dataset = dataset.add_column(name, pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), column.entry.dim), feature=datasets.List(
                datasets.Value("float32"), length=column.entry.dim))
        step("save dataset")
        generation.save_dataset(dataset)
        saved = generation.load_dataset(verify=False)  # the saved copy, not the scratch one
        for name in columns:
            step(f"FAISS {name}")
            choice = generation.write_faiss(saved, name)
            entries[name] = replace(entries[name], rows=len(saved), faiss_factory=choice.factory,
                                    recall_at_10=choice.recall_at_10)
        labels = saved["category"], saved["source"]
        for name, entry in entries.items():
            if entry.indexes == IMAGE:
                step(f"map {name}")  # and the novelty scorer
                vectors = generation.vectors(name, saved)
                entries[name] = self._novelty(name, self._map(name, entry, vectors), vectors, *labels)
        self._joint_novelty(entries, saved, *labels, step)
        fields = [name for name in ALL_FIELDS if name in saved.column_names]  # an archive's fields too
        records = saved.select_columns(fields).to_list()
        written = replace(manifest, fingerprint=metadata_fingerprint(records, fields), rows=len(saved), models=entries,
                          categories=dict(Counter(saved["category"])),
                          created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        generation.write_manifest(written)
        damage = generation.damage()
        if damage:
            raise BrokenIndex(f"The new index in {generation.folder} is inconsistent ({damage}); the previous one "
                              f"stays current.")
        (self.folder.publish_portable if self.portable else self.folder.publish)(generation)
        return written

    def _previous_entry(self, name: str) -> ModelEntry | None:
        try:
            return self.previous.manifest.models.get(name) if self.previous is not None else None
        except RetrievalError:
            return None

    def _fit(self, name: str, column: Column, texts: list[str]) -> Column:
        """Restore the model and its vectors when the previous generation was fitted on these very texts
        (same weights version), else fit it on them and embed them."""
        began = time.perf_counter()
        embedder, entry = column.to_fit, column.entry
        corpus = corpus_digest(texts)
        old = self._previous_entry(name)
        vectors = None
        if old is not None and old.corpus_digest == corpus and old.version == entry.version:
            try:
                embedder.load_state(self.previous.state_path(name))
                vectors = self.previous.vectors(name)
            except (OSError, ValueError, RetrievalError):  # fit again
                vectors = None
        if vectors is not None and len(vectors) == len(texts):
            embedded, reused = 0, len(texts)
        else:
            embedder.fit(texts)
            vectors = embed_texts(embedder, texts, self.progress, desc=f"embed {name}")
            embedded, reused = len(texts), 0
        embedder.save_state(self.generation.state_path(name))
        seconds = entry.seconds + time.perf_counter() - began
        return Column(replace(entry, dim=embedder.dim, embedded=embedded, reused=reused, seconds=round(seconds, 3),
                              corpus_digest=corpus), vectors)

    def _map(self, name: str, entry: ModelEntry, vectors: np.ndarray) -> ModelEntry:
        """The model's 2-D map: taken over when the previous one was projected from these very vectors (a copy
        costs nothing, t-SNE seconds), else projected."""
        from .projection import map_key, project

        began = time.perf_counter()
        key = map_key(vectors)
        old = self._previous_entry(name)
        try:
            if old is None or old.map_digest != key:
                raise LookupError
            self.previous.read_map(name)  # refuses a missing or damaged file
            self.generation.reuse_map(name, self.previous)
        except (LookupError, OSError, RetrievalError):
            self.generation.write_map(name, project(vectors))
        return replace(entry, map_digest=key, map_seconds=round(time.perf_counter() - began, 3))

    def _novelty(self, name: str, entry: ModelEntry, vectors: np.ndarray, categories: list[str],
                 sources: list[str]) -> ModelEntry:
        """The model's novelty scorer: taken over when the previous one was fitted on these very vectors,
        categories and sources, else fitted (about a second for the collection)."""
        from .novelty import learn, novelty_key, stored_form

        began = time.perf_counter()
        key = novelty_key(vectors, categories, sources)
        old = self._previous_entry(name)
        try:
            if old is None or old.novelty_digest != key:
                raise LookupError
            self.generation.reuse_novelty(name, self.previous)
        except (LookupError, OSError, RetrievalError):
            self.generation.write_novelty(name, *stored_form(*learn(vectors, categories, sources)))
        return replace(entry, novelty_digest=key, novelty_seconds=round(time.perf_counter() - began, 3))

    def _joint_novelty(self, entries: dict[str, ModelEntry], dataset, categories: list[str],
                       sources: list[str], step) -> None:
        """The "no close match" judge over the image models' scorers (none without a fitted one): taken over when
        the previous one was fitted on the same scorers (their digests), else fitted (about 30 s on 2,426 rows with
        two models: its choices nested)."""
        from .joint_novelty import VERSION, joint_key, learn_joint

        names = [name for name, entry in entries.items() if entry.indexes == IMAGE]
        key = joint_key({name: entries[name].novelty_digest for name in names},
                        {name: self.generation.read_novelty(name)[0] for name in names})
        if not key:
            return
        try:
            old = self.previous.read_joint_novelty() if self.previous is not None else {}
            if old.get("version") != VERSION or old.get("fitted_on") != key:
                raise LookupError
            self.generation.write_joint_novelty(old)
        except (LookupError, OSError, RetrievalError):
            step("no-close-match judge")
            judge = learn_joint({name: self.generation.vectors(name, dataset) for name in key}, key, categories,
                                sources)
            self.generation.write_joint_novelty(judge.to_json())


__all__ = ["Column", "GenerationWriter", "corpus_digest", "embed_texts"]
