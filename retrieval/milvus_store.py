"""Vectors in Milvus: the store for archives that outgrow one machine (Milvus Lite in a local file for tests).

One Milvus collection per (image collection, model) holds the row id, the vector and the filterable
metadata (every filter field of the Dataset, filters.filter_fields, in one JSON field, so a collection's own
extra fields need no schema change). Images and metadata stay in the Dataset: Milvus answers with row ids and
the engine resolves them; a search's filters become an expression on that JSON field (milvus_expr.py). `sync`
mirrors a Dataset into Milvus in batches, idempotently and resumably (milvus_sync.py).

    engine = SearchEngine("index", vector_store=milvus_store("./milvus.db"))          # Milvus Lite
    engine = SearchEngine("index", vector_store=milvus_store("http://milvus:19530"))  # server/cluster
    XRAY_STORE=milvus XRAY_MILVUS_URI=./milvus.db python app.py                      # the app (retrieval.settings)
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BrokenIndex, RetrievalError
from .filters import filter_fields, with_category
from .milvus_expr import filter_terms, literal_list
from .milvus_sync import LAYOUT, MAX_LIMIT, Mirror, SyncReport, count_rows
from .vector_columns import row_vectors
from .ranking import TIE  # the k-th result's tie group is fetched whole before ordering
from .vectorstore import VectorStore

# Index types and their documented parameters. FLAT is exact (same answers as FAISS flat) and the default;
# HNSW is the usual choice past a few million vectors (M: graph degree, efConstruction: build-time beam,
# ef: query-time beam, raised to k when smaller); IVF_FLAT clusters into nlist lists and scans nprobe of them.
# Milvus Lite 3.2 builds all three (FLAT as NumPy brute force, HNSW/IVF_FLAT with FAISS, per segment).
INDEXES = {
    "FLAT": ({}, {}),
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 32}),
}
METRIC = "COSINE"  # vectors are unit length, so Milvus's cosine equals FAISS's inner product
BATCH = 1000  # rows per upsert and per id lookup (well below Milvus's 16384-row and 64 MB message limits)


class MilvusStore(VectorStore):
    """Cosine search in Milvus over one collection per model; `sync` (or `attach`) binds it to a Dataset.

    `uri`: a local file path ending in .db (Milvus Lite, embedded in this process) or http(s)://host:19530
    (a Milvus server or cluster). `index`: "FLAT" (exact, default), "HNSW" or "IVF_FLAT"; `index_params`
    and `search_params` override the defaults in INDEXES. `consistency`: "Strong" so a search sees every
    completed sync; "Bounded" is faster on a busy cluster that tolerates a few seconds of staleness.
    """

    def __init__(self, uri: str | Path, *, index: str = "FLAT", index_params: dict | None = None,
                 search_params: dict | None = None, token: str = "", db_name: str = "",
                 consistency: str = "Strong", batch_size: int = BATCH):
        index = index.upper()
        if index not in INDEXES:
            raise RetrievalError(f"Unknown Milvus index type {index!r}; choose from {sorted(INDEXES)}.")
        self.index = index
        self.index_params = {**INDEXES[index][0], **(index_params or {})}
        self.search_params = {**INDEXES[index][1], **(search_params or {})}
        self.consistency = consistency
        self.batch_size = int(batch_size)
        self.uri, self._lite_path = _resolve_uri(uri)
        self._client = _connect(self.uri, self._lite_path, token=token, db_name=db_name)
        self._collections: dict[str, str] = {}  # model -> Milvus collection
        self._search_params: dict[str, dict] = {}  # Milvus collection -> params for its index type
        self._dataset = None
        self._ids: list[str] = []
        self._fields: tuple[str, ...] = ()  # the Dataset's filter fields, mirrored in the JSON metadata
        self._row_of: dict[str, int] = {}

    # --- binding to a Dataset --------------------------------------------------------------------------
    def attach(self, dataset, models: Iterable[str], collection_key: str) -> None:
        """Search `dataset`'s rows through existing collections, without writing (the build keeps them synced)."""
        self._bind(dataset, models, collection_key)
        for model, name in self._collections.items():
            if not self._client.has_collection(name):
                raise BrokenIndex(f"Milvus at {self.uri} has no collection {name!r} for model {model!r}; sync it "
                                  f"with `python -m retrieval build ... --store milvus --milvus-uri {self.uri}`.")
            if {f["name"] for f in self._client.describe_collection(name)["fields"]} != set(LAYOUT):
                raise BrokenIndex(f"The Milvus collection {name!r} has an older layout (no filter metadata); sync it "
                                  f"again with `python -m retrieval build ... --store milvus --milvus-uri {self.uri}`.")
            self._client.load_collection(name)
            described = self._client.describe_index(name, "vector") or {}
            kind = str(described.get("index_type", "")).upper()  # search with the parameters of the index it has
            self._search_params[name] = (self.search_params if kind == self.index
                                         else dict(INDEXES.get(kind, ({}, {}))[1]))

    def sync(self, dataset, models: Iterable[str], collection_key: str,
             progress: bool = False) -> dict[str, SyncReport]:
        """Make each model's collection mirror `dataset` (milvus_sync.Mirror): upsert new or changed rows,
        delete rows that left; a repeated sync writes nothing and a killed one resumes where it stopped."""
        self._bind(dataset, models, collection_key)
        mirror = Mirror(self._client, index=self.index, index_params=self.index_params, metric=METRIC,
                        consistency=self.consistency, batch_size=self.batch_size)
        reports = mirror.sync(dataset, self._collections, self._fields, self._row_of, progress=progress)
        self._search_params.update(dict.fromkeys(self._collections.values(), self.search_params))
        return reports

    def _bind(self, dataset, models: Iterable[str], collection_key: str) -> None:
        models = list(models)
        names = {model: collection_name(collection_key, model) for model in models}
        if len(set(names.values())) != len(names):
            raise RetrievalError(f"Models {models} map to clashing Milvus collection names {names}.")
        self._collections = names
        self._dataset = dataset
        self._fields = filter_fields(dataset)
        self._ids = list(dataset["id"])
        self._row_of = {row_id: row for row, row_id in enumerate(self._ids)}

    # --- the VectorStore interface ---------------------------------------------------------------------
    def search(self, model, vector, k, category=None, exclude=None, filters=None):
        """Up to k (row, score) pairs, best first; ties keep the lower rows and list them from the higher one down.

        Ids Milvus holds but this Dataset lacks (a newer sync of the same collection) are skipped.
        """
        name = self._collection(model)
        terms = filter_terms(with_category(filters, category))
        if terms is None:
            return []
        if exclude is not None:
            rows = np.atleast_1d(np.asarray(exclude, dtype=np.int64)).tolist()
            terms.append(f"id not in {literal_list(self._ids[row] for row in rows)}")
        query = [np.asarray(vector, dtype=np.float32).reshape(-1).tolist()]
        limit = min(int(k) + 1, MAX_LIMIT)  # one more than asked shows whether the k-th score's tie goes on
        while True:
            params = {key: max(value, limit) if key == "ef" else value  # HNSW needs ef >= k
                      for key, value in self._search_params.get(name, self.search_params).items()}
            hits = self._client.search(name, data=query, limit=limit, filter=" and ".join(terms),
                                       output_fields=["id"], anns_field="vector",
                                       search_params={"metric_type": METRIC, "params": params})[0]
            found = [(self._row_of[hit["id"]], float(hit["distance"])) for hit in hits if hit["id"] in self._row_of]
            exhausted = len(hits) < limit or limit >= MAX_LIMIT
            # done when k rows are known and the k-th score's tie group ends inside what came back
            if exhausted or (len(found) >= k and float(hits[-1]["distance"]) < sorted(
                    (s for _, s in found), reverse=True)[k - 1] - TIE):
                break
            limit = min(2 * limit, MAX_LIMIT)
        # of a tie cut by k keep the lower rows, and list each tie from the higher row down: what FAISS flat usually
        # returns (its heap decides exact ties, so where k splits one the two stores may keep different members)
        kept = sorted(found, key=lambda pair: (-pair[1], pair[0]))[:k]
        return sorted(kept, key=lambda pair: (-pair[1], -pair[0]))

    def vector(self, model, row):
        if self._dataset is None:
            raise BrokenIndex("The Milvus store is not bound to a Dataset; call sync() or attach() first.")
        return row_vectors(self._dataset, model, [row])[0]

    # --- housekeeping ----------------------------------------------------------------------------------
    def count(self, model: str) -> int:
        """Rows in the model's Milvus collection (exact: deletions are counted out)."""
        return count_rows(self._client, self._collection(model))

    def drop(self, model: str) -> None:
        self._client.drop_collection(self._collection(model))

    def close(self) -> None:
        """Close the connection; the last store on a Milvus Lite file also stops its embedded server."""
        if self._client is not None:
            self._client.close()
            self._client = None
            if self._lite_path is not None:
                _release_lite(self._lite_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _collection(self, model: str) -> str:
        try:
            return self._collections[model]
        except KeyError:
            raise BrokenIndex(f"The Milvus store holds no collection for model {model!r}; it has "
                              f"{list(self._collections)}.") from None


# --- wiring: the engine's factory, the CLI and the app ------------------------------------------------------
def collection_name(collection_key: str, model: str) -> str:
    """The Milvus collection of one model: letters, digits and underscores, starting with a letter."""
    return re.sub(r"[^0-9A-Za-z_]", "_", f"xray_{collection_key}_{model}")[:255]


def collection_key(manifest) -> str:
    """A key that stays the same while the image collection changes, so a new image is one upsert.

    Derived from the collection's name (its folder name or Hub id), not from its content fingerprint: each
    rebuild of the same collection then updates the same Milvus collections instead of filling new ones.
    """
    return hashlib.sha256(str(manifest.collection).encode("utf-8")).hexdigest()[:8]


def milvus_store(uri: str | Path | None, *, collection: str | None = None, sync: bool = True,
                 progress: bool = False, **options) -> Callable:
    """A vector-store factory for SearchEngine, `(generation, dataset, models) -> MilvusStore`, like `faiss_store`.

    `collection`: a name for the image collection (default: derived from the index's collection). `sync`:
    mirror the Dataset into Milvus first (cheap when nothing changed); False only attaches, for an app
    that reads collections a build keeps up to date. `options` go to MilvusStore (index, token, ...).
    """
    if not uri:
        raise RetrievalError("The Milvus store needs a URI: a local file such as ./milvus.db (Milvus Lite) or "
                             "http://host:19530 (a Milvus server); set XRAY_MILVUS_URI or pass --milvus-uri.")

    def factory(generation, dataset, models) -> MilvusStore:
        store = MilvusStore(uri, **options)
        try:
            key = collection or collection_key(generation.manifest)
            if sync:
                store.sync(dataset, models, key, progress=progress)
            else:
                store.attach(dataset, models, key)
        except BaseException:
            store.close()
            raise
        return store

    return factory


def sync_index(index_dir: str | Path, uri: str | Path, *, models: Iterable[str] | None = None,
               collection: str | None = None, progress: bool = True, **options) -> dict[str, dict]:
    """Mirror the current generation of an index folder into Milvus; returns {model: SyncReport as dict}."""
    from .layout import IndexFolder

    generation = IndexFolder(index_dir).require_current()
    dataset = generation.load_dataset()
    with MilvusStore(uri, **options) as store:
        reports = store.sync(dataset, list(models or generation.manifest.models),
                             collection or collection_key(generation.manifest), progress=progress)
    return {model: asdict(report) for model, report in reports.items()}


# --- internals ---------------------------------------------------------------------------------------------
_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}  # Milvus Lite file -> open stores (its embedded server is per process and file)


def _resolve_uri(uri: str | Path) -> tuple[str, str | None]:
    """(uri for pymilvus, Milvus Lite file or None). Anything without a scheme is a local Milvus Lite file."""
    text = str(uri)
    if re.match(r"^(https?|tcp|unix)://", text, re.IGNORECASE) or text.startswith("unix:"):
        return text, None
    path = Path(text).expanduser().resolve()
    if path.suffix != ".db":
        raise RetrievalError(f"A local Milvus URI is a Milvus Lite file whose name ends in .db; got {text!r} "
                             "(or give a server as http://host:19530).")
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path), str(path)


def _connect(uri: str, lite_path: str | None, token: str, db_name: str):
    try:
        from pymilvus import MilvusClient
    except ImportError as error:
        raise RetrievalError("The Milvus store needs pymilvus (and milvus-lite for a .db file): "
                             "pip install pymilvus milvus-lite") from error
    if lite_path is not None:
        with _lite_lock:
            _lite_users[lite_path] = _lite_users.get(lite_path, 0) + 1
    try:
        return MilvusClient(uri=uri, token=token, db_name=db_name)
    except Exception as error:
        if lite_path is not None:
            _release_lite(lite_path)
            raise RetrievalError(f"Milvus Lite cannot open {lite_path} ({error}). One process at a time may open "
                                 "a .db file: stop the other one, or serve the file with `milvus-lite server "
                                 f"--data-dir {lite_path}` and use http://127.0.0.1:19530.") from error
        raise RetrievalError(f"Cannot reach Milvus at {uri} ({error}); check that the server is running "
                             "(see docs/scaling.md) and the URI and token.") from error


def _release_lite(path: str) -> None:
    with _lite_lock:
        _lite_users[path] = _lite_users.get(path, 1) - 1
        last = _lite_users[path] <= 0
        if last:
            del _lite_users[path]
    if last:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


__all__ = ["MilvusStore", "milvus_store", "sync_index", "collection_name", "collection_key"]
