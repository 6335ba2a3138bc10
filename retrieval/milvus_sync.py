"""Mirror a Dataset into Milvus: one collection per model, made to hold exactly the Dataset's rows.

Its own module because writing is a separate job from searching (milvus_store.py, which runs a sync through
`MilvusStore.sync`): a sync creates each collection, or repairs one whose schema or index differs, streams
the Dataset in batches, upserts only the rows whose checksum of vector and metadata differs from what Milvus
holds, and deletes the rows that left. A repeated sync therefore writes nothing and a killed one resumes
where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from .errors import RetrievalError
from .milvus_expr import clip, literal_list
from .vector_columns import vector_dim

LAYOUT = ("id", "vector", "metadata", "digest")  # the layout of a collection; another one is synced anew
ID_BYTES = 1024  # VarChar length of the row id (Milvus counts UTF-8 bytes)
MAX_LIMIT = 16384  # Milvus's largest top-k and query batch


@dataclass
class SyncReport:
    """What one sync did to one model's Milvus collection."""

    collection: str
    rows: int  # rows in the Dataset (and, after the sync, in the collection)
    upserted: int = 0
    unchanged: int = 0
    deleted: int = 0


class Mirror:
    """Writes a Dataset's rows into Milvus collections through `client`, with one index type and metric."""

    def __init__(self, client, *, index: str, index_params: dict, metric: str, consistency: str, batch_size: int):
        self._client = client
        self.index, self.index_params, self.metric = index, index_params, metric
        self.consistency, self.batch_size = consistency, batch_size

    def sync(self, dataset, collections: dict[str, str], fields: Sequence[str], ids: Collection[str],
             progress: bool = False) -> dict[str, SyncReport]:
        """Make each model's collection ({model: Milvus collection}) mirror `dataset`, whose rows have the
        `ids` (every row's id, for finding the rows that left) and the filter `fields` (stored as metadata)."""
        from tqdm.auto import tqdm

        meta = dataset.select_columns(["id", *fields])
        reports = {}
        for model, name in collections.items():
            column = dataset.with_format("numpy", columns=[model])
            self._ensure_collection(name, vector_dim(dataset, model))
            report = SyncReport(name, len(dataset))
            with tqdm(total=len(dataset), desc=f"milvus {model}", unit="row", disable=not progress) as bar:
                for start in range(0, len(dataset), self.batch_size):
                    rows = meta[start:start + self.batch_size]
                    vectors = np.asarray(column[start:start + self.batch_size][model], dtype=np.float32)
                    self._upsert_changed(name, rows, fields, vectors, report)
                    bar.update(len(vectors))
            report.deleted = self._delete_missing(name, ids)
            if report.upserted or report.deleted:
                self._client.flush(name)  # seal what was written so the server builds its index on it
            reports[model] = report
        return reports

    def _ensure_collection(self, name: str, dim: int) -> None:
        """Create the collection and its index, or repair one whose schema or index differs from the wanted."""
        client = self._client
        if client.has_collection(name):
            fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
            if set(fields) != set(LAYOUT) \
                    or int(fields["vector"]["params"].get("dim", 0)) != dim:
                client.drop_collection(name)  # another model version or layout: its vectors are useless
        if not client.has_collection(name):
            client.create_collection(name, schema=self._schema(dim), index_params=self._index_spec(),
                                     consistency_level=self.consistency)
        elif not self._index_matches(name):
            client.release_collection(name)
            client.drop_index(name, "vector")
            client.create_index(name, self._index_spec())
        client.load_collection(name)

    def _schema(self, dim: int):
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="X-Ray Search vectors; images and metadata stay in the Dataset")
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("metadata", DataType.JSON)  # {filter field: value}
        schema.add_field("digest", DataType.VARCHAR, max_length=32)  # checksum of vector + metadata
        return schema

    def _index_spec(self):
        params = dict(self.index_params)
        if params:
            # pymilvus 3 sends build parameters as flat key/value pairs; Milvus Lite 3.2 (embedded or served)
            # reads only a JSON "params" entry, which Milvus servers also accept: send that nested copy too
            params["params"] = dict(self.index_params)
        spec = self._client.prepare_index_params()
        spec.add_index(field_name="vector", index_name="vector", index_type=self.index, metric_type=self.metric,
                       params=params)
        return spec

    def _index_matches(self, name: str) -> bool:
        try:
            described = self._client.describe_index(name, "vector")
        except Exception:  # no index yet
            return False
        params = {**described, **(described.get("params") or {})}
        return (str(described.get("index_type", "")).upper() == self.index
                and str(described.get("metric_type", "")).upper() == self.metric
                and all(str(params.get(key)) == str(value) for key, value in self.index_params.items()))

    def _upsert_changed(self, name: str, rows: dict, fields: Sequence[str], vectors: np.ndarray,
                        report: SyncReport) -> None:
        ids = rows["id"]
        for row_id in ids:
            if len(row_id.encode("utf-8")) > ID_BYTES:
                raise RetrievalError(f"Row id {row_id[:80]!r}... is longer than Milvus's {ID_BYTES}-byte key.")
        metadata = [{field: clip(rows[field][i]) for field in fields} for i in range(len(ids))]
        digests = [_digest(vectors[i], metadata[i]) for i in range(len(ids))]
        held = {hit["id"]: hit["digest"] for hit in self._client.query(
            name, filter=f"id in {literal_list(ids)}", output_fields=["id", "digest"], limit=len(ids),
            consistency_level="Strong")}
        changed = [i for i, (row_id, digest) in enumerate(zip(ids, digests)) if held.get(row_id) != digest]
        if changed:
            self._client.upsert(name, [{"id": ids[i], "vector": vectors[i].tolist(), "metadata": metadata[i],
                                        "digest": digests[i]} for i in changed])
        report.upserted += len(changed)
        report.unchanged += len(ids) - len(changed)

    def _delete_missing(self, name: str, ids: Collection[str]) -> int:
        if count_rows(self._client, name) == len(ids):  # every Dataset row is there (just checked): nothing else is
            return 0
        stale = [row_id for row_id in self._held_ids(name) if row_id not in ids]
        for start in range(0, len(stale), self.batch_size):
            self._client.delete(name, filter=f"id in {literal_list(stale[start:start + self.batch_size])}")
        return len(stale)

    def _held_ids(self, name: str) -> list[str]:
        iterator = self._client.query_iterator(name, batch_size=min(10 * self.batch_size, MAX_LIMIT),
                                               output_fields=["id"], consistency_level="Strong")
        held = []
        try:
            while batch := iterator.next():
                held.extend(hit["id"] for hit in batch)
        finally:
            iterator.close()
        return held


def count_rows(client, name: str) -> int:
    """Rows in a Milvus collection (exact: deletions are counted out)."""
    result = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(result[0]["count(*)"])


def _digest(vector: np.ndarray, metadata: dict) -> str:
    digest = hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=16)
    digest.update(json.dumps(metadata, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


__all__ = ["Mirror", "SyncReport", "LAYOUT", "count_rows"]
