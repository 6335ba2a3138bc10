"""The rows of one index generation: ids, metadata records, stored images, thumbnails, categories, the values
a filter may ask for, and counts.

Every answer that shows a row (a hit, the details panel, the map, the Collection tab) reads it from here; an
index built before a schema column existed reads that column as "".
"""

from __future__ import annotations

import io
from collections import Counter

from PIL import Image

from .errors import BadQuery
from .filters import RowFilter, filter_fields
from .images import load_image, thumbnail_bytes
from .schema import ARCHIVE_FIELDS, FIELDS


COUNTED_FIELDS = ("modality", "body_part", "view", "laterality", "sex", "age_band", "manufacturer", "scanner")


class Catalogue:
    """What an index holds about each row, held in plain lists (read per hit, cheap and thread-safe)."""

    def __init__(self, dataset):
        """`dataset`: the generation's `datasets.Dataset` (its image column is read without decoding)."""
        import datasets

        self._images = dataset.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
        self._thumbnails = dataset.select_columns(["thumbnail"]) if "thumbnail" in dataset.column_names else None
        # the schema's fields, and a DICOM archive's where the index has them
        self.fields: tuple[str, ...] = (*FIELDS, *(name for name in ARCHIVE_FIELDS if name in dataset.column_names))
        self.filter_fields: tuple[str, ...] = filter_fields(dataset)  # schema fields, then a collection's extras
        self._columns = {name: list(dataset[name]) if name in dataset.column_names else [""] * len(dataset)
                         for name in dict.fromkeys(("id", *self.fields, *self.filter_fields))}
        self.filters = RowFilter({name: self._columns[name] for name in self.filter_fields}, len(dataset))
        self.texts: list[str] = list(dataset["text"])  # what text models read, per row
        self._row_of = {row_id: row for row, row_id in enumerate(self._columns["id"])}
        self.categories: list[str] = sorted({category for category in self._columns["category"] if category})
        self._studies: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, item_id) -> bool:
        return isinstance(item_id, str) and item_id in self._row_of

    @property
    def ids(self) -> list[str]:
        return list(self._columns["id"])

    def column(self, name: str) -> list[str]:
        """One field of every row, in row order ("id" or a field of `fields`; "" where a row has no value)."""
        return [value or "" for value in self._columns[name]]

    def value(self, row: int, name: str) -> str:
        """One field of one row ("" where the row has no value)."""
        return self._columns[name][row] or ""

    def row(self, item_id: str) -> int:
        """The row number of an id; BadQuery for an id this index does not have."""
        try:
            return self._row_of[item_id]
        except (KeyError, TypeError):
            raise BadQuery(f"No image with id {item_id!r} in this index.") from None

    def record_at(self, row: int) -> dict:
        """The id and every field of the index (`fields`) of a row ("" for a field the row lacks)."""
        return {"id": self._columns["id"][row], **{name: self._columns[name][row] or "" for name in self.fields}}

    @property
    def has_studies(self) -> bool:
        """True for an index of a DICOM archive, whose rows name their study (a salted hash)."""
        return "study" in self.fields

    def study_rows(self, row: int) -> list[int]:
        """The rows of the same study as `row` (itself included), in row order; [row] where there is no study."""
        if self._studies is None:
            studies: dict[str, list[int]] = {}
            for position, study in enumerate(self._columns.get("study", [])):
                if study:
                    studies.setdefault(study, []).append(position)
            self._studies = studies
        study = self._columns["study"][row] if self.has_studies else ""
        return list(self._studies.get(study, [row])) if study else [row]

    def record(self, item_id: str) -> dict:
        return self.record_at(self.row(item_id))

    def stored_bytes(self, item_id: str) -> bytes:
        """The image as the build stored it (PNG or JPEG bytes)."""
        return self._images[self.row(item_id)]["image"]["bytes"]

    def image(self, item_id: str, max_side: int | None = None) -> Image.Image:
        """The stored image of a row, normalised to 8-bit grayscale (never a file path); `max_side`: decoded as
        a model's build decoded it."""
        data = self.stored_bytes(item_id)  # PNG/JPEG, never DICOM: named by id, not by file name
        return load_image(data, item_id) if max_side is None else load_image(data, item_id, max_side=max_side)

    def thumbnail_jpeg(self, item_id: str) -> bytes:
        """The gallery-sized copy (long side <= 384 px) as stored: JPEG bytes served without encoding per query."""
        row = self.row(item_id)
        if self._thumbnails is None:  # an index built before thumbnails were stored: rendered now
            return thumbnail_bytes(self._images[row]["image"]["bytes"], item_id)
        return self._thumbnails[row]["thumbnail"]

    def thumbnail(self, item_id: str) -> Image.Image:
        return Image.open(io.BytesIO(self.thumbnail_jpeg(item_id)))

    def filter_values(self) -> dict[str, list[str]]:
        """Each filter field with the values its rows hold, sorted: what a search's filters may ask for."""
        return self.filters.values()

    def field_counts(self, item_ids) -> dict[str, dict[str, int]]:
        """Among the rows of `item_ids` (a result), how many hold each value of each filter field, most first (a
        field none of them has a value of is left out): what the page shows under its results."""
        rows = [self.row(item_id) for item_id in item_ids]
        counts = {name: Counter(value for row in rows if (value := self.value(row, name)))
                  for name in self.filter_fields}
        return {name: dict(counter.most_common()) for name, counter in counts.items() if counter}

    def collection_stats(self) -> dict:
        """Counts per category, label and source, and each source's licence and link."""
        columns = self._columns
        sources = {}
        for source, url, licence in zip(columns["source"], columns["source_url"], columns["license"]):
            entry = sources.setdefault(source or "(unknown)", {"images": 0, "url": url, "licenses": Counter()})
            entry["images"] += 1
            entry["licenses"][licence or "unknown"] += 1
        labels = Counter(f"{c} / {l}" for c, l in zip(columns["category"], columns["label"]) if l)
        return {
            "rows": len(self),
            "categories": dict(Counter(columns["category"]).most_common()),
            "labels": dict(labels.most_common()),
            "sources": {name: {**entry, "licenses": dict(entry["licenses"])} for name, entry in sources.items()},
            # an archive: images per value of each field worth counting (not the per-image study and frames)
            "fields": {name: dict(Counter(value or "(none)" for value in columns[name]).most_common())
                       for name in (self.fields if self.has_studies else ()) if name in COUNTED_FIELDS},
        }


__all__ = ["Catalogue"]
