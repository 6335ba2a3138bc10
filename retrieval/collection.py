"""Read a collection (imagefolder with metadata.csv, plain folder of category sub-folders, or a Hub dataset)
into rows with one schema and a stable id, and from rows into a `datasets.Dataset`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import CollectionError
from .files import DICOM_EXTENSIONS, IMAGE_EXTENSIONS
from .files import read_bytes
from .labels import label_words
from .schema import ARCHIVE_FIELDS, FIELDS, REQUIRED_FIELDS, TEXT_FIELDS

METADATA_FILE = "metadata.csv"
ROW_TEXT_VERSION = 3  # bump when row_text changes: an index built with another text re-embeds it (3: body part)
ALLOWED_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS
# Categories the product knows; others are accepted with a warning (a typo like "chets" shows up there).
KNOWN_CATEGORIES = (
    "chest", "dental", "spine", "knee", "hand", "fracture", "skull", "pelvis", "hip", "shoulder", "elbow",
    "wrist", "foot", "ankle", "abdomen", "leg", "arm", "extremity", "other",
)
# The columns of an index row before its vector columns (one per model, named by the model):
ROW_COLUMNS = (
    "id", *FIELDS,
    "text",  # what text models embed (row_text)
    "image_sha256",  # of the file's bytes: the embedding cache's key for image models
    "phash",  # str(imagehash.phash(picture)): 16 hex digits of a 64-bit perceptual hash
    "image",  # the stored picture (the file, or a DICOM file rendered to PNG)
    "thumbnail",  # a small JPEG rendered once, so results never re-render
)


def archive_columns() -> tuple[str, ...]:
    """The row columns of an index built from a DICOM archive: the archive's fields follow the schema's."""
    return (*ROW_COLUMNS[:len(FIELDS) + 1], *ARCHIVE_FIELDS, *ROW_COLUMNS[len(FIELDS) + 1:])


_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")


@dataclass
class Row:
    """One collection item before it becomes a Dataset row. `path` is absolute; `file_name` relative POSIX."""

    file_name: str
    path: Path | None
    category: str = ""
    label: str = ""
    body_part: str = ""
    view: str = ""
    caption: str = ""
    source: str = ""
    source_url: str = ""
    license: str = ""
    image_bytes: bytes | None = None  # only for rows that arrive as bytes (Hub datasets)
    archive: dict[str, str] = field(default_factory=dict)  # a DICOM archive's fields (schema.ARCHIVE), else {}

    def __getattr__(self, name: str) -> str:  # only called for names that are not attributes: the archive's
        if name in ARCHIVE_FIELDS:
            return self.__dict__.get("archive", {}).get(name, "")
        raise AttributeError(name)

    @property
    def id(self) -> str:
        return row_id(self.file_name)

    def metadata(self) -> dict[str, str]:
        """Every schema field, and the archive's fields when the row comes from a DICOM archive."""
        names = FIELDS + ARCHIVE_FIELDS if self.archive else FIELDS
        return {name: getattr(self, name) for name in names}


def row_id(file_name: str) -> str:
    """Stable, readable id: the relative path without its extension (e.g. 'knee/oai-knee-kl_0001')."""
    path = Path(file_name)
    return path.with_suffix("").as_posix() if path.suffix.lower() in ALLOWED_EXTENSIONS else path.as_posix()


def row_text(record) -> str:
    """The metadata text that text models embed: what the image shows (category, the label in words, the body
    part where it is not the category itself — "fracture . ... . finger" —, view, caption). The source is left out,
    so a dataset's name ("... Severity Grading") never decides a ranking; it stays a filter and a displayed field."""
    get = record.get if isinstance(record, dict) else lambda f, d="": getattr(record, f, d)
    values = {field: str(get(field, "") or "").strip() for field in TEXT_FIELDS}
    words = label_words(values["category"], values["label"])
    if words and values["label"] and words.lower() != values["label"].lower():
        values["label"] = f"{words} ({values['label']})"  # the code stays findable: "kl-4"
    if values.get("body_part", "").lower() == values["category"].lower():
        values["body_part"] = ""  # "knee . ... . knee" would say nothing more
    return " . ".join(value for value in values.values() if value)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def metadata_fingerprint(records: Iterable, fields: Iterable[str] = FIELDS) -> str:
    """The one fingerprint of a collection's rows: sha256 over each row's `fields` (JSON, sorted keys) in
    file-name order. Rows are dicts or objects with those attributes (Row, a training Item); the pixels are
    not part of it. An index manifest, a published index and a training card all state this value."""
    fields = tuple(fields)

    def values(record) -> dict[str, str]:
        get = record.get if isinstance(record, dict) else lambda name: getattr(record, name, "")
        return {name: str(get(name) or "") for name in fields}

    content = hashlib.sha256()
    for row in sorted((values(record) for record in records), key=lambda row: row["file_name"]):
        content.update(json.dumps(row, sort_keys=True).encode())
    return content.hexdigest()


def is_local(source: str | Path) -> bool:
    return Path(source).expanduser().exists()


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(str(source))) and not is_local(source)


def has_allowed_extension(name: str) -> bool:
    return Path(name).suffix.lower() in ALLOWED_EXTENSIONS


def read_metadata(root: Path) -> tuple[list[dict[str, str]], list[str]]:
    """metadata.csv as a list of dicts (missing optional columns filled with '') and its header."""
    try:
        with (root / METADATA_FILE).open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            records = []
            for record in reader:
                clean = {(key or "").strip(): (value or "").strip() for key, value in record.items()
                         if not isinstance(value, list)}
                records.append({field: clean.get(field, "") for field in FIELDS})
    except UnicodeDecodeError as error:
        raise CollectionError(f"{root / METADATA_FILE} is not UTF-8 text: {error}") from error
    except csv.Error as error:
        raise CollectionError(f"{root / METADATA_FILE} is not valid CSV: {error}") from error
    return records, header


def scan_files(root: Path) -> list[str]:
    """Every file below root (relative POSIX paths), skipping hidden files and the collection's own docs."""
    names = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            names.append(relative.as_posix())
    return names


def _is_document(name: str) -> bool:
    return "/" not in name and Path(name).suffix.lower() in (".csv", ".md", ".txt", ".json", ".jsonl", ".yaml", ".yml")


def local_rows(root: str | Path, skip: Iterable[str] = (),
               metadata: tuple[list[dict[str, str]], list[str]] | None = None) -> list[Row]:
    """Rows of a local collection: from metadata.csv when present, else one row per image file with the
    first sub-folder as category. `skip` lists file names to leave out (from validation); `metadata` is
    metadata.csv as `read_metadata` returned it, when the caller has parsed it already."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CollectionError(f"Collection folder {root} does not exist.")
    skipped = set(skip)
    if (root / METADATA_FILE).is_file():
        records, header = metadata if metadata is not None else read_metadata(root)
        missing = [field for field in REQUIRED_FIELDS if field not in header]
        if missing:
            raise CollectionError(f"{root / METADATA_FILE} lacks the required column(s) {missing}; "
                                  f"expected columns {list(FIELDS)}.")
        return [Row(path=root / r["file_name"], **r) for r in records if r["file_name"] not in skipped]
    rows = []
    for name in scan_files(root):
        if name in skipped or _is_document(name) or not (has_allowed_extension(name) or _extensionless(name, root)):
            continue
        category = name.split("/", 1)[0].lower() if "/" in name else ""
        rows.append(Row(file_name=name, path=root / name, category=category))
    return rows


def _extensionless(name: str, root: Path | None = None) -> bool:
    """An extension-less file counts only when it is a DICOM Part-10 file (the 'DICM' magic)."""
    if Path(name).suffix != "":
        return False
    try:
        with (root / name).open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def hub_rows(source: str, split: str = "train") -> list[Row]:
    """Rows of a dataset that `datasets.load_dataset` understands: a Hub id, or a local dataset folder.

    The image column is read undecoded to keep each file's own name and bytes; a ClassLabel `label`
    (imagefolder's sub-folder classes) becomes the category when there is no category column.
    """
    import datasets

    try:
        dataset = datasets.load_dataset(source, split=split)
    except Exception as error:
        raise CollectionError(f"Could not load dataset {source!r} (split {split!r}): {error}") from error
    image_column = next((name for name, feature in dataset.features.items()
                         if isinstance(feature, datasets.Image)), None)
    if image_column is None:
        raise CollectionError(f"Dataset {source!r} has no image column; columns are {dataset.column_names}.")
    label_names = None
    label_feature = dataset.features.get("label")
    if isinstance(label_feature, datasets.ClassLabel):
        label_names = label_feature.names
    dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    rows = []
    for position, record in enumerate(dataset):
        image = record[image_column] or {}
        data = image.get("bytes")
        path = image.get("path")
        if data is None and path:
            data = Path(path).read_bytes()
        if not data:
            raise CollectionError(f"Row {position} of {source!r} has no image data.")
        file_name = str(record.get("file_name") or "") or _hub_file_name(path, position)
        meta = {field: str(record.get(field) or "") for field in FIELDS if field != "file_name"}
        if label_names is not None:
            class_name = label_names[record["label"]] if record.get("label") is not None else ""
            meta["label"] = ""
            meta["category"] = meta["category"] or class_name
        rows.append(Row(file_name=file_name, path=None, image_bytes=data, **meta))
    return rows


def _hub_file_name(path: str | None, position: int) -> str:
    if path:
        parts = Path(path).parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else Path(path).name
    return f"{position:06d}.png"


def collection_rows(source: str | Path, skip: Iterable[str] = (), split: str = "train") -> list[Row]:
    """Rows of a local folder, or of a Hub dataset id."""
    if is_local(source):
        return local_rows(source, skip)
    if looks_like_hub_id(str(source)):
        return [row for row in hub_rows(str(source), split) if row.file_name not in set(skip)]
    raise CollectionError(f"{source} is neither an existing folder nor a Hugging Face dataset id (owner/name).")


def rows_to_dataset(rows: list[Row], images: dict, cache_dir: Path,
                    progress: Callable[[Iterator], Iterator] | None = None):
    """A `datasets.Dataset` with the metadata, a stable id, the searchable text, the (display-ready) image,
    its content hash, pHash and thumbnail. `images` maps each file name to what the one read of its image
    learned (`image_pass.ImageFacts`): nothing is hashed or decoded here. Written under cache_dir."""
    writer = RowWriter(cache_dir, archive=any(row.archive for row in rows))
    for row in iter(rows) if progress is None else progress(iter(rows)):
        writer.add(row, images[row.file_name])
    return writer.finish()


class RowWriter:
    """Writes rows to an Arrow file under the build's scratch folder as their images are read, so that no
    picture, DICOM render or thumbnail outlives its chunk: a build's memory does not grow with the images'
    bytes, and the Dataset is memory-mapped from the file at the end."""

    BATCH = 64  # rows buffered before a record batch is written (64 renders and thumbnails: a few MB)

    def __init__(self, cache_dir: Path, archive: bool = False):
        """`archive`: the rows come from a DICOM archive and carry its fields (schema.ARCHIVE) too."""
        import datasets
        from datasets.arrow_writer import ArrowWriter

        columns = archive_columns() if archive else ROW_COLUMNS
        self.features = datasets.Features({name: datasets.Image() if name == "image" else datasets.Value(
            "binary" if name == "thumbnail" else "string") for name in columns})
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(cache_dir) / "rows.arrow"
        self._writer = ArrowWriter(features=self.features, path=str(self.path), writer_batch_size=self.BATCH)
        self.rows = 0

    def add(self, row: Row, facts) -> None:
        """One row, with what the read of its image learned (`image_pass.ImageFacts`)."""
        self._writer.write(self.features.encode_example({
            "id": row.id, **row.metadata(), "text": row_text(row), "image_sha256": facts.sha256,
            "phash": facts.phash, "image": {"bytes": stored_bytes(row, facts), "path": None},
            "thumbnail": facts.thumbnail}))
        self.rows += 1

    def finish(self):
        """The Dataset of every row added, in the order added (memory-mapped from the Arrow file)."""
        import datasets

        self._writer.finalize()
        return datasets.Dataset.from_file(str(self.path))


def stored_bytes(row: Row, facts) -> bytes:
    """The bytes the index stores: the file as it is, or the PNG a DICOM file was rendered to."""
    if facts.rendered is not None:
        return facts.rendered
    return row.image_bytes if row.image_bytes is not None else read_bytes(row.path, row.file_name)
