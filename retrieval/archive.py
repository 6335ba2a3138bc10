"""A folder of DICOM files (a PACS export: nested study/series folders, names with or without .dcm, a DICOMDIR)
read as a collection: one row per image object, its metadata from a whitelist of tags, pseudonymous ids.

Two passes. The headers (`dicom.read_header`: whitelisted tags only) decide which objects are indexed and what
their rows say; then `image_pass` decodes the pixels of those alone (a multi-frame object: its first frame).
Whatever is not an image of the requested modalities, or cannot be read, is left out and counted per reason:
never fatal.

No identifier leaves a file: a row's id is an HMAC-SHA256 of its SOPInstanceUID under the index folder's
secret salt (`IndexFolder.salt`), the images of a study share an HMAC of their StudyInstanceUID, and the
file's path (in an export it often names the patient) is never stored: a row's file_name is its id + ".dcm".
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .collection import METADATA_FILE, Row, scan_files
from .errors import BadImage, CollectionError
from .files import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, MAX_FILE_BYTES

# Projection radiographs: computed and digital radiography, and the dental ones (intra-oral, panoramic), which
# the curated collection searches too. Mammography (MG), fluoroscopy (RF) and angiography (XA) are projections
# as well, but a domain of their own (detector, dose, contrast, cine frames) that the models were not made
# for: they are indexed when asked for (--modalities CR,DX,MG or all). CT, MR, US, NM, PT slices never fit.
DEFAULT_MODALITIES = ("CR", "DX", "IO", "PX")
ARCHIVE_SOURCE = "DICOM archive"  # a row's `source`; its licence stays empty, so `publish` keeps it out by default
ID_CHARS = 20  # hex digits of an id: 80 bits, no collision in any archive
REASONS = {  # why a file is left out -> what the report says
    "not-dicom": "not a DICOM file",
    "unreadable": "a DICOM header that cannot be parsed (truncated or corrupt)",
    "too-large": f"larger than {MAX_FILE_BYTES // 2**20} MB",
    "structured-report": "a structured report (SR)",
    "presentation-state": "a presentation state (PR)",
    "encapsulated-document": "an encapsulated document (PDF, CDA)",
    "no-pixel-data": "another object without an image (key objects, RT, waveforms, ...)",
    "modality": "a modality not asked for (--modalities)",
    "undecodable": "a transfer syntax this installation cannot decode",
    "burned-in": "BurnedInAnnotation = YES: text burnt into the pixels (--allow-burned-in indexes them)",
    "no-instance-uid": "no SOPInstanceUID (no stable id)",
    "duplicate": "the same SOPInstanceUID as another file",
    "pixels-unreadable": "pixel data that fails to decode (truncated, corrupt codestream, over the size limits)",
}
_SOP_CLASSES = (  # SOP Class UID prefix, or Modality -> reason
    ("1.2.840.10008.5.1.4.1.1.88.", "SR", "structured-report"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PR", "presentation-state"),
    ("1.2.840.10008.5.1.4.1.1.104.", "DOC", "encapsulated-document"),
)


@dataclass(frozen=True)
class ArchiveOptions:
    """What an archive build indexes: `modalities` (None: all), a body-part table merged over
    dicom.BODY_PART_CATEGORIES (JSON or CSV, `dicom.load_body_parts`), and images flagged as carrying burned-in
    text (left out unless `allow_burned_in`)."""

    modalities: tuple[str, ...] | None = DEFAULT_MODALITIES
    body_parts: str | None = None
    allow_burned_in: bool = False

    @classmethod
    def parse(cls, modalities: str | None = None, body_parts: str | None = None,
              allow_burned_in: bool = False) -> "ArchiveOptions":
        """From the command line: "CR,DX,MG" or "all" (None: the default modalities)."""
        if modalities is None:
            chosen = DEFAULT_MODALITIES
        elif modalities.strip().lower() == "all":
            chosen = None
        else:
            chosen = tuple(dict.fromkeys(m.strip().upper() for m in modalities.split(",") if m.strip()))
            if not chosen:
                raise CollectionError("--modalities needs DICOM modality codes (e.g. CR,DX) or 'all'.")
        if body_parts is not None and not Path(body_parts).is_file():
            raise CollectionError(f"The body-part table {body_parts} does not exist (a JSON or CSV file).")
        return cls(chosen, body_parts, allow_burned_in)

    def key(self) -> str:
        """What the options change in an index (for the build's "unchanged?" test): the table's content too."""
        table = Path(self.body_parts).read_bytes() if self.body_parts else b""
        return (f"modalities={','.join(self.modalities or ('all',))} burned_in={self.allow_burned_in} "
                f"body_parts={hashlib.sha256(table).hexdigest()}")


def is_archive(source: str | Path) -> bool:
    """A local folder without metadata.csv that holds DICOM files, and no more pictures (PNG, JPEG, ...) than
    DICOM files: a DICOM archive, indexed by `read_archive`."""
    root = Path(source).expanduser()
    if not root.is_dir() or (root / METADATA_FILE).is_file():
        return False
    dicoms = pictures = 0
    for name in scan_files(root):
        suffix = Path(name).suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            pictures += 1
        elif suffix in DICOM_EXTENSIONS or _has_magic(root / name):
            dicoms += 1
    return dicoms > 0 and dicoms >= pictures


def pseudonym(salt: bytes, kind: str, uid: str) -> str:
    """A salted hash of a UID: the same UID gives the same value under one salt, nothing without it."""
    return hmac.new(salt, f"{kind}:{uid}".encode(), hashlib.sha256).hexdigest()[:ID_CHARS]


def archive_rows(root: str | Path, salt: bytes, options: ArchiveOptions = ArchiveOptions(),
                 progress: bool = False) -> tuple[list[Row], Counter]:
    """The rows of a DICOM archive from its headers (no pixel decoded), and the files left out, counted per
    reason (a key of REASONS; "modality:CT" per modality)."""
    from tqdm.auto import tqdm

    from . import dicom

    root = Path(root).expanduser().resolve()
    body_parts = dicom.load_body_parts(options.body_parts)
    rows: dict[str, Row] = {}
    skipped: Counter = Counter()
    names = [name for name in scan_files(root) if Path(name).name.upper() != "DICOMDIR"]
    for name in tqdm(names, desc="read headers", unit="file", disable=not progress):
        path = root / name
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                skipped["too-large"] += 1
                continue
            ds = dicom.read_header(path)
        except (BadImage, OSError) as error:
            skipped["not-dicom" if "not a DICOM file" in str(error) else "unreadable"] += 1
            continue
        reason = _left_out(ds, options)
        if reason is None:
            row = _row(ds, path, salt, body_parts)
            reason = "duplicate" if row.id in rows else None
            rows.setdefault(row.id, row)
        if reason:
            skipped[reason] += 1
    return list(rows.values()), skipped


def read_archive(root: str | Path, salt: bytes, options: ArchiveOptions = ArchiveOptions(), sides=(),
                 on_chunk: Callable | None = None, progress: bool = False,
                 expect: Callable[[int], None] | None = None) -> dict[str, int]:
    """Read an archive: the headers first, then the pixels of the rows they keep, each chunk of read images going
    to `on_chunk` (which writes and embeds them; `expect` hears how many images will come). Returns the files left
    out ({reason: count})."""
    from .image_pass import read_images

    rows, skipped = archive_rows(root, salt, options, progress)
    if expect is not None:
        expect(len(rows))
    _, problems = read_images(rows, sides=sides, thumbnails=True, progress=progress and on_chunk is None,
                              on_chunk=on_chunk)
    if problems:
        skipped["pixels-unreadable"] += len(problems)
    return dict(sorted(skipped.items()))


def describe(reason: str) -> str:
    """The words for a reason of the report ("modality:CT" -> "modality CT not asked for (--modalities)")."""
    if reason.startswith("modality:"):
        return f"modality {reason.split(':', 1)[1]} not asked for (--modalities)"
    return REASONS.get(reason, reason)


def skipped_text(skipped: dict[str, int]) -> str:
    """One line per reason, most frequent first: what the CLI and the Collection tab show."""
    return "\n".join(f"{count:6d}  {describe(reason)}" for reason, count in
                     sorted(skipped.items(), key=lambda item: (-item[1], item[0])))


def _left_out(ds, options: ArchiveOptions) -> str | None:
    """Why a header's object is not indexed, or None."""
    sop_class, modality = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", "")).strip().upper()
    for prefix, code, reason in _SOP_CLASSES:
        if sop_class.startswith(prefix) or modality == code:
            return reason
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "no-pixel-data"
    if options.modalities is not None and modality not in options.modalities:
        return f"modality:{modality or 'none'}"
    if not _decodable(ds):
        return "undecodable"
    if not options.allow_burned_in and str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "burned-in"
    if not str(ds.get("SOPInstanceUID", "")).strip():
        return "no-instance-uid"
    return None


def _decodable(ds) -> bool:
    """Whether a decoder for the file's transfer syntax is installed (a file without meta header is native)."""
    from pydicom.pixels import get_decoder

    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    try:
        return syntax is None or not syntax.is_compressed or get_decoder(syntax).is_available
    except (ValueError, NotImplementedError):  # not a transfer syntax pydicom knows, or no decoder for it
        return False


def _row(ds, path: Path, salt: bytes, body_parts: dict[str, str]) -> Row:
    from . import dicom

    fields = dicom.archive_fields(ds, body_parts)
    study = str(ds.get("StudyInstanceUID", "")).strip()
    archive = {name: fields.pop(name) for name in ("modality", "laterality", "sex", "age_band", "manufacturer",
                                                   "scanner", "frames")}
    archive["study"] = pseudonym(salt, "study", study) if study else ""
    item_id = pseudonym(salt, "sop", str(ds.SOPInstanceUID).strip())
    return Row(file_name=f"{item_id}.dcm", path=path, source=ARCHIVE_SOURCE, archive=archive, **fields)


def _has_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


__all__ = ["ARCHIVE_SOURCE", "ArchiveOptions", "DEFAULT_MODALITIES", "REASONS", "archive_rows", "describe",
           "is_archive", "pseudonym", "read_archive", "skipped_text"]
