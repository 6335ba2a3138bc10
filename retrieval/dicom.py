"""Read DICOM radiographs as a viewer shows them (rescaled, windowed, MONOCHROME1 inverted), minus identifying tags."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .errors import BadImage
from .files import DICOM_EXTENSIONS, MAX_PIXELS, read_bytes

# BodyPartExamined (DICOM defined terms, upper case) -> our search categories. Anything else maps to "".
BODY_PART_CATEGORIES: dict[str, str] = {
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest",
    "KNEE": "knee",
    "HAND": "hand", "FINGER": "hand",
    "SPINE": "spine", "CSPINE": "spine", "TSPINE": "spine", "LSPINE": "spine", "SSPINE": "spine",
    "JAW": "dental", "TEETH": "dental", "TOOTH": "dental", "DENTAL": "dental", "MANDIBLE": "dental",
    "MAXILLA": "dental",
}
# Without the Part-10 preamble (force=True) garbage parses as nonsense tags: require one of these to call it DICOM.
_DICOM_SIGNS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Modality", "Rows", "PixelData")
PERCENTILE_WINDOW = (0.5, 99.5)  # used when the file carries no window: ignores collimator edges and burnt-in labels


@dataclass
class DicomImage:
    """A decoded DICOM picture plus the only metadata we keep (an allow-list: nothing that identifies a person)."""

    image: Image.Image  # mode "L", 8-bit, display-ready
    metadata: dict[str, str] = field(default_factory=dict)  # category, view, caption, modality, body_part


def is_dicom(data: bytes, name: str | None = None) -> bool:
    """Cheap test: the Part-10 "DICM" magic at offset 128, or a .dcm/.dicom name (tried with force=True)."""
    return data[128:132] == b"DICM" or bool(name and name.lower().endswith(DICOM_EXTENSIONS))


def read_dicom(source: bytes | str | Path, name: str | None = None, frame: int = 0) -> DicomImage:
    """Decode one frame of a DICOM file to a display-ready 8-bit grayscale image; BadImage for anything unusable."""
    if isinstance(source, (bytes, bytearray)):
        label, data = name or "upload", bytes(source)
    else:
        label = name or Path(source).name
        data = read_bytes(source, label)
    try:
        with warnings.catch_warnings():  # force=True on garbage warns about bogus charsets etc.; we raise instead
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as error:  # pydicom raises many types for malformed data
        raise BadImage(f"{label!r} is not a readable DICOM file ({error}).") from error
    if data[128:132] != b"DICM" and not any(keyword in ds for keyword in _DICOM_SIGNS):
        raise BadImage(f"{label!r} is not a DICOM file (no DICOM header found).")
    if "PixelData" not in ds:
        raise BadImage(f"{label!r} is a DICOM file without pixel data (no image to search with).")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or columns < 1:
        raise BadImage(f"{label!r} is a DICOM file without image size (Rows/Columns).")
    if rows * columns > MAX_PIXELS:  # checked from the header, before any pixel is decoded
        raise BadImage(f"{label!r} is {columns}x{rows} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 0 <= frame < frames:
        raise BadImage(f"{label!r} has {frames} frame(s); frame {frame} does not exist.")
    _ensure_transfer_syntax(ds)
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        pixels = pixel_array(ds, index=frame if frames > 1 else None)
    except Exception as error:  # missing plugin, corrupt codestream, truncated data...
        raise BadImage(
            f"{label!r} uses {getattr(syntax, 'name', syntax)} ({syntax}), which could not be decoded ({error})."
        ) from error
    return DicomImage(image=Image.fromarray(_to_display(pixels, ds)), metadata=_metadata(ds))


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    """A file without meta header (read with force=True) still needs a transfer syntax for the pixel decoders."""
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _to_display(pixels: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Stored values -> 8-bit display values, in float until the single final conversion (no banding)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:  # colour (decoded to RGB; YBR is converted by pydicom): luminance, no LUTs apply
        values = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        top = float(2 ** int(ds.get("BitsStored") or 8) - 1)
        return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)  # Rescale or Modality LUT -> real units
    scaled = _window(values, ds)
    if scaled is None:
        scaled = _percentile_window(values)
    if photometric == "MONOCHROME1":  # MONOCHROME1 stores bone dark; show it bright as in MONOCHROME2
        scaled = 1.0 - scaled
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def _first(value: object) -> float | None:
    """First value of a possibly multi-valued DS (files often carry several presets; the first is the default)."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _window(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """The file's own window (DICOM PS3.3 C.11.2.1.2: LINEAR or SIGMOID) to 0..1; None when it has none."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    if str(ds.get("VOILUTFunction", "LINEAR")).upper() == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    if high <= low:  # width 1: a threshold
        return (values > low).astype(np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _percentile_window(values: np.ndarray) -> np.ndarray:
    """A robust window for files without one: min/max would be ruled by a few hot or dead pixels."""
    step = max(1, int(np.sqrt(values.size / 1_000_000)))  # a subsample is plenty for percentiles, and fast
    low, high = np.percentile(values[::step, ::step], PERCENTILE_WINDOW)
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(item) for item in value)
    return " ".join(str(value or "").split())


def _metadata(ds: pydicom.Dataset) -> dict[str, str]:
    """Allow-list of non-identifying fields: nothing else of the header ever leaves this module."""
    body_part, modality = _text(ds, "BodyPartExamined"), _text(ds, "Modality")
    descriptions = [_text(ds, "StudyDescription"), _text(ds, "SeriesDescription")]
    caption = "; ".join(dict.fromkeys(text for text in descriptions if text))  # both, once each, in order
    if not caption and (modality or body_part):
        caption = " ".join(part for part in (modality, body_part, "radiograph") if part)
    return {
        "category": BODY_PART_CATEGORIES.get(body_part.upper().replace(" ", ""), ""),
        "view": _text(ds, "ViewPosition"),
        "caption": caption,
        "modality": modality,
        "body_part": body_part,
    }
