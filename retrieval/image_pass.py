"""One pass over a collection's images: each file is read, hashed and decoded once, and that one picture serves
every purpose (the validator's checks, the pHash, the thumbnail, the image models' input).

`validate` runs it to check a collection; `build` runs the same pass and keeps what it learned (`ImageFacts`),
taking each decoded chunk of pictures to its image models before the next chunk is decoded, so no more than
two chunks of full pictures are ever held.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from PIL import Image

from .errors import BadImage
from .files import WORK_SIDE, read_bytes

CHUNK = 64  # rows decoded ahead of the models (64 pictures of at most 1024 px: ~64 MB)


@dataclass
class ImageFacts:
    """What the one read of an image file learned: all the build stores or checks about its pixels."""

    sha256: str  # of the file's bytes: the exact-duplicate test and the key of the embedding cache
    phash: str  # str(imagehash.phash(picture)): 16 hex digits, the near-duplicate test
    file_bytes: int
    width: int  # of the decoded picture (long side at most WORK_SIDE)
    height: int
    thumbnail: bytes | None = None  # the gallery JPEG (when the pass was asked for thumbnails)
    rendered: bytes | None = None  # a DICOM file rendered to PNG: what the index stores instead of the file
    tags: dict[str, str] = field(default_factory=dict)  # what a DICOM file's tags say (category, view, caption)


@dataclass
class ReadImage:
    """One row of a decoded chunk: its facts and pictures (by long side), or why it cannot be read."""

    row: object  # collection.Row
    facts: ImageFacts | None = None
    pictures: dict[int, Image.Image] = field(default_factory=dict)
    problem: str | None = None


def read_images(rows: Sequence, sides: Iterable[int] = (), thumbnails: bool = False, workers: int = 2,
                progress: bool = False, on_chunk: Callable[[list[ReadImage]], None] | None = None,
                ) -> tuple[dict[str, ImageFacts], dict[str, str]]:
    """Read every row's image once. Returns ({file name: facts}, {file name: why it cannot be read}).

    `sides`: the long sides the image models read (each gets the picture at that size); `on_chunk` is called
    with each chunk in row order while the next one is decoded, and the pictures are dropped after it.
    A DICOM file's tags fill the row's empty category, view and caption.
    """
    from tqdm.auto import tqdm

    sides = tuple(sorted(set(sides)))
    facts: dict[str, ImageFacts] = {}
    problems: dict[str, str] = {}
    chunks = [list(rows[start:start + CHUNK]) for start in range(0, len(rows), CHUNK)]

    def read(row) -> ReadImage:
        return read_one(row, sides, thumbnails)

    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(rows), desc="read images", unit="img",
                                                              disable=not progress) as bar:
        pending = [pool.submit(read, row) for row in chunks[0]] if chunks else []
        for position in range(len(chunks)):
            results = [future.result() for future in pending]
            if position + 1 < len(chunks):  # decode the next chunk while this one is used
                pending = [pool.submit(read, row) for row in chunks[position + 1]]
            for result in results:
                if result.problem is not None:
                    problems[result.row.file_name] = result.problem
                else:
                    facts[result.row.file_name] = result.facts
                    _fill_from_tags(result.row, result.facts.tags)
            if on_chunk is not None:
                on_chunk(results)
            bar.update(len(results))
    return facts, problems


def read_one(row, sides: tuple[int, ...] = (), thumbnails: bool = False) -> ReadImage:
    """Read, hash and decode one row's image (once), and derive everything else from that picture."""
    import imagehash

    from . import dicom
    from .images import decode_bytes, digest, load_image, shrink, thumbnail_of

    name = row.file_name
    try:
        data = row.image_bytes if getattr(row, "image_bytes", None) is not None else read_bytes(row.path, name)
        side = max((WORK_SIDE, *sides))
        rendered, tags = None, {}
        if dicom.is_dicom(data, name):
            scan = dicom.read_dicom(data, name=name)
            picture, tags = load_image(scan.image, name, max_side=side), scan.metadata
            buffer = io.BytesIO()
            scan.image.save(buffer, format="PNG")
            rendered = buffer.getvalue()
        else:
            picture = decode_bytes(data, name, max_side=side)
    except BadImage as error:
        return ReadImage(row, problem=str(error))
    working = shrink(picture, WORK_SIDE)  # the pHash is the one of the picture at the working size
    facts = ImageFacts(sha256=digest(data), phash=str(imagehash.phash(working)), file_bytes=len(data),
                       width=working.width, height=working.height,
                       thumbnail=thumbnail_of(picture) if thumbnails else None, rendered=rendered, tags=tags)
    return ReadImage(row, facts, {wanted: shrink(picture, wanted) for wanted in sides})


def _fill_from_tags(row, tags: dict[str, str]) -> None:
    """DICOM tags fill what the metadata left empty."""
    for name in ("category", "view", "caption"):
        if not getattr(row, name, "") and tags.get(name):
            setattr(row, name, tags[name])


def phash_bits(phash: str):
    """The 64 bits (0/1, uint8) of a stored pHash."""
    import imagehash

    return imagehash.hex_to_hash(phash).hash.flatten()


__all__ = ["ImageFacts", "ReadImage", "read_images", "read_one", "phash_bits"]
