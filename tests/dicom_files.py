"""Small synthetic DICOM files for the archive tests: a projection radiograph by default, any tag overridable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
PR_STORAGE = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def picture(seed: int = 0, size: int = 48, frames: int = 1) -> np.ndarray:
    """16-bit pixels, a bright disc whose radius depends on the seed (frames: stacked, each a little darker)."""
    y, x = np.mgrid[0:size, 0:size]
    disc = ((x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / (3 + seed % 5)) ** 2) * 3000.0 + 200.0
    stack = np.stack([disc * (1.0 - 0.1 * frame) for frame in range(frames)])
    return (stack if frames > 1 else stack[0]).astype(np.uint16)


def write_dicom(path: Path, pixels: np.ndarray | None = None, *, sop_class: str = DX_STORAGE,
                syntax: str = ExplicitVRLittleEndian, preamble: bool = True, **tags) -> Path:
    """A Part-10 file at `path` (folders made): modality DX, a chest PA, `pixels` (default `picture()`; pass
    an empty array for an object without pixel data), then `tags` set by keyword (they win)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = str(tags.get("SOPInstanceUID") or generate_uid())
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    pixels = picture() if pixels is None else pixels
    if pixels.size:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return path
