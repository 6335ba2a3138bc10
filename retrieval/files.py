"""What the library agrees to read: file types, size limits, and reading a file's bytes within them.

Shared by images.py and dicom.py (so neither imports the other to learn the rules).
"""

from __future__ import annotations

from pathlib import Path

from .errors import BadImage

# Limits for anything we decode: uploads to a public demo and files in a collection alike.
MAX_FILE_BYTES = 32 * 1024 * 1024  # larger files are refused before decoding
MAX_PIXELS = 50_000_000  # width*height; refused from the header, before any pixel is decoded
WORK_SIDE = 1024  # decoded images are reduced so the long side is at most this (encoders use 224-518 px)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SUPPORTED_FORMATS = "PNG, JPEG, BMP, TIFF, WebP, GIF (first frame) and DICOM (.dcm or without extension)"


def read_bytes(source: str | Path, name: str | None = None) -> bytes:
    """Read a file, refusing empty and oversized files with a clear message."""
    path = Path(source)
    label = name or path.name
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BadImage(f"Cannot read {label!r}: {error.strerror or error}.") from error
    if size == 0:
        raise BadImage(f"{label!r} is an empty file (0 bytes).")
    if size > MAX_FILE_BYTES:
        raise BadImage(f"{label!r} is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    return path.read_bytes()


def is_dicom(data: bytes, name: str | None = None) -> bool:
    """Cheap test: the Part-10 "DICM" magic at offset 128, or a .dcm/.dicom name (tried with force=True). Here,
    not in dicom.py, so that deciding a picture is not DICOM does not import pydicom (0.5 s at the app's start)."""
    return data[128:132] == b"DICM" or bool(name and name.lower().endswith(DICOM_EXTENSIONS))
