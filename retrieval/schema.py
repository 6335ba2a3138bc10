"""The metadata schema of a collection row, declared once: every other module reads its names from here.

A collection's metadata.csv may carry more columns than these (they are ignored) or fewer (the optional ones
stay empty); only `file_name` and `category` are required. A DICOM archive's rows (retrieval/archive.py) add
the ARCHIVE fields, read from a whitelist of tags; an index holds those columns only when it was built from
an archive, so a curated collection's index, fingerprint and texts are unchanged by them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One metadata column: its name, whether a collection must have it, and what it holds."""

    name: str
    meaning: str
    required: bool = False
    describes_image: bool = False  # read by text models (what the image shows; never where it came from)
    filterable: bool = True  # a search may be restricted to rows with given values of it (see is_filter_field)


METADATA: tuple[Field, ...] = (
    Field("file_name", "path of the image relative to the collection root (POSIX)", required=True,
          filterable=False),
    Field("category", "what the collection groups the image under: anatomy, or one finding (fracture)",
          required=True, describes_image=True),
    Field("label", "the finding or grade within the category (e.g. kl-2, pneumonia)", describes_image=True),
    Field("body_part", "the anatomy on the film (chest, knee, hand, ...), empty where the source does not say",
          describes_image=True),
    Field("view", "projection or view (PA, lateral, ...)", describes_image=True),
    Field("caption", "a sentence describing the image", describes_image=True, filterable=False),
    Field("source", "the public dataset the image comes from"),
    Field("source_url", "where that dataset is published", filterable=False),
    Field("license", "the licence of the image, as its source states it"),
)

# What a DICOM archive adds (retrieval/dicom.py reads each from one whitelisted tag; nothing else of a file is read).
# In an archive, `category` is BodyPartExamined mapped to the categories ("other" when unknown), `body_part` the
# tag's raw value, `view` ViewPosition and `caption` the scrubbed Study/Series Description.
ARCHIVE: tuple[Field, ...] = (
    Field("modality", "DICOM Modality: CR, DX, IO, PX, ...", describes_image=True),
    Field("laterality", "ImageLaterality: R, L, B or U", describes_image=True),
    Field("sex", "PatientSex: M, F or O"),
    Field("age_band", "a ten-year band of PatientAge (e.g. 40-49; 90+); never a birth date"),
    Field("manufacturer", "Manufacturer of the equipment (spotting source confounding)"),
    Field("scanner", "ManufacturerModelName"),
    Field("study", "a salted hash of StudyInstanceUID: the images of one study share it (followed by \"more from "
          "this study\", not a filter: one value per study)", filterable=False),
    Field("frames", "NumberOfFrames of the object (a multi-frame object is indexed by its first frame)"),
)

FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA)
ARCHIVE_FIELDS: tuple[str, ...] = tuple(field.name for field in ARCHIVE)
ALL_FIELDS: tuple[str, ...] = FIELDS + ARCHIVE_FIELDS  # every metadata field an index row may carry
REQUIRED_FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA if field.required)
# what text models read, in this order: what the image shows, never which dataset it came from (an archive's
# modality and laterality come last, so a curated row, which has none, reads exactly as before)
TEXT_FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA + ARCHIVE if field.describes_image)

# Columns of an index row that are never filters, whatever a collection adds: the row id and what the build
# derives per row (the text models read, hashes, the pictures), and any extra column named like an identifier,
# a URL or free text (a DICOM archive's study link, a scrubbed description).
NOT_FILTERS: frozenset[str] = frozenset({"id", "text", "image_sha256", "phash", "image", "thumbnail",
                                         *(field.name for field in METADATA + ARCHIVE if not field.filterable)})
NOT_FILTER_WORDS = frozenset({"id", "uid", "url", "uri", "path", "text", "caption", "description", "hash"})


def is_filter_field(name: str) -> bool:
    """Whether a string column of an index may restrict a search: a schema field unless it is declared
    `filterable=False` (file_name, caption, source_url); an extra column unless it is the row's machinery or is
    named like an identifier, a URL or free text (`study_id`, `series_uid`, `study_description`)."""
    if name in NOT_FILTERS:
        return False
    if name in FIELDS:
        return True
    words = name.lower().replace("-", "_").replace(" ", "_").split("_")
    return words[-1] not in NOT_FILTER_WORDS and not words[-1].endswith(("uid", "url", "uri"))


def empty_record() -> dict[str, str]:
    """A row with every field present and empty: what a missing optional column reads as."""
    return dict.fromkeys(FIELDS, "")
