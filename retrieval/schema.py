"""The metadata schema of a collection row, declared once: every other module reads its names from here.

A collection's metadata.csv may carry more columns than these (they are ignored) or fewer (the optional ones
stay empty); only `file_name` and `category` are required.
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


METADATA: tuple[Field, ...] = (
    Field("file_name", "path of the image relative to the collection root (POSIX)", required=True),
    Field("category", "what the collection groups the image under: anatomy, or one finding (fracture)",
          required=True, describes_image=True),
    Field("label", "the finding or grade within the category (e.g. kl-2, pneumonia)", describes_image=True),
    Field("body_part", "the anatomy on the film (chest, knee, hand, ...), empty where the source does not say",
          describes_image=True),
    Field("view", "projection or view (PA, lateral, ...)", describes_image=True),
    Field("caption", "a sentence describing the image", describes_image=True),
    Field("source", "the public dataset the image comes from"),
    Field("source_url", "where that dataset is published"),
    Field("license", "the licence of the image, as its source states it"),
)

FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA)
REQUIRED_FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA if field.required)
# what text models read, in this order: what the image shows, never which dataset it came from
TEXT_FIELDS: tuple[str, ...] = tuple(field.name for field in METADATA if field.describes_image)


def empty_record() -> dict[str, str]:
    """A row with every field present and empty: what a missing optional column reads as."""
    return dict.fromkeys(FIELDS, "")
