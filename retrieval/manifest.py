"""The typed manifest of an index generation: what it holds, from which collection, built with which models and
how each build went. `IndexGeneration` (layout.py) reads and writes it; everyone else reads these types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import BrokenIndex

MANIFEST_VERSION = 2  # 2: typed manifest, collection named instead of an absolute path
REBUILD = "rebuild it with `python -m retrieval build --collection PATH --index DIR`"


@dataclass
class ModelEntry:
    """One model of a built index: what it is, which weights made the vectors, how the build went."""

    family: str
    modalities: list[str]
    indexes: str  # what a row contributes: "image" or "text"
    dim: int
    version: str  # identity of the weights (the registry's); a different version re-embeds
    default_min_score: float = 0.0
    metric: str = "cosine (inner product of unit vectors)"
    faiss_factory: str = "Flat"  # exact; "HNSW32,efSearch=…" for a large collection (ann.py)
    recall_at_10: float | None = None  # of an approximate index against exact search, measured at build
    rows: int = 0
    embedded: int = 0  # vectors computed by the build that wrote this generation
    reused: int = 0  # vectors taken over from the previous generation
    resumed: int = 0  # vectors taken from the checkpoints of an earlier, interrupted build (not re-embedded)
    seconds: float = 0.0
    corpus_digest: str | None = None  # models fitted on the collection: the texts they were fitted on
    map_digest: str | None = None  # the vectors its 2-D map was projected from; None: no map (text, older index)
    map_seconds: float = 0.0  # projecting the map (0 when the previous map was taken over)
    novelty_digest: str | None = None  # what its novelty scorer was fitted on; None: none (text, older index)
    novelty_seconds: float = 0.0  # fitting it (0 when the previous one was taken over)

    def embeds(self, modality: str) -> bool:
        return modality in self.modalities


@dataclass
class Manifest:
    """What a generation holds. The collection is named (folder name or Hub id), never by a machine's path."""

    collection: str
    fingerprint: str  # sha256 over every row's metadata, in file-name order
    rows: int
    models: dict[str, ModelEntry]
    categories: dict[str, int] = field(default_factory=dict)
    quick_fingerprint: str | None = None  # names, sizes and mtimes of a local folder: the cheap "unchanged?"
    skip_invalid: bool = False
    skipped_rows: dict[str, str] = field(default_factory=dict)  # file_name -> why
    skipped_objects: dict[str, int] = field(default_factory=dict)  # a DICOM archive: reason -> files left out
    created_at: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict, where: Path) -> "Manifest":
        if not isinstance(payload, dict) or payload.get("manifest_version") != MANIFEST_VERSION:
            version = payload.get("manifest_version") if isinstance(payload, dict) else None
            raise BrokenIndex(f"{where} has manifest version {version}, this program reads {MANIFEST_VERSION}; "
                              f"{REBUILD}.")
        try:
            known = {f.name for f in fields(ModelEntry)}
            models = {name: ModelEntry(**{k: v for k, v in entry.items() if k in known})
                      for name, entry in payload["models"].items()}
            known = {f.name for f in fields(cls)}
            return cls(**{**{k: v for k, v in payload.items() if k in known}, "models": models})
        except (KeyError, TypeError, AttributeError) as error:
            raise BrokenIndex(f"{where} is incomplete ({error}); {REBUILD}.") from error


__all__ = ["Manifest", "ModelEntry", "MANIFEST_VERSION", "REBUILD"]
