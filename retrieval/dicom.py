"""Read DICOM radiographs as a viewer shows them (rescaled, windowed, MONOCHROME1 inverted), minus identifying tags.

Only whitelisted tags are ever parsed (pydicom's `specific_tags`): the image pixel module for the picture, and
the few non-identifying tags an index keeps (Modality, BodyPartExamined, ViewPosition, ...). Free text that
may name a person (Study/Series Description) is scrubbed to an allow-list of anatomical and view words.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .errors import BadImage, CollectionError
from .files import MAX_PIXELS, is_dicom, read_bytes  # noqa: F401 (is_dicom: dicom.is_dicom too)

# pydicom warns about a value that breaks its VR, and logs the value: it may name a patient. Our own checks
# (`code`, `age_band`, the description scrub) decide what a value is worth, so pydicom's reading validation is off.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# BodyPartExamined (DICOM PS3.16 Annex L defined terms, upper case, spaces removed) -> our search categories.
# Anything else maps to "" (an archive row: "other"); `load_body_parts` merges a user's table over this one.
BODY_PART_CATEGORIES: dict[str, str] = {
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "RIB": "chest", "RIBS": "chest", "STERNUM": "chest",
    "KNEE": "knee", "PATELLA": "knee",
    "HAND": "hand", "FINGER": "hand", "THUMB": "hand",
    "SPINE": "spine", "CSPINE": "spine", "TSPINE": "spine", "LSPINE": "spine", "SSPINE": "spine",
    "CTSPINE": "spine", "TLSPINE": "spine", "LSSPINE": "spine", "SACRUM": "spine", "COCCYX": "spine",
    "JAW": "dental", "TEETH": "dental", "TOOTH": "dental", "DENTAL": "dental", "MANDIBLE": "dental",
    "MAXILLA": "dental", "TMJ": "dental",
    "SKULL": "skull", "HEAD": "skull", "FACE": "skull", "SINUS": "skull", "ORBIT": "skull", "NOSE": "skull",
    "PELVIS": "pelvis", "SIJOINT": "pelvis", "HIP": "hip",
    "SHOULDER": "shoulder", "CLAVICLE": "shoulder", "SCAPULA": "shoulder", "ACJOINT": "shoulder",
    "ELBOW": "elbow", "WRIST": "wrist", "FOOT": "foot", "TOE": "foot", "HEEL": "foot", "ANKLE": "ankle",
    "ABDOMEN": "abdomen", "KUB": "abdomen",
    "LEG": "leg", "LOWERLEG": "leg", "UPPERLEG": "leg", "FEMUR": "leg", "TIBIA": "leg", "FIBULA": "leg",
    "ARM": "arm", "UPPERARM": "arm", "FOREARM": "arm", "HUMERUS": "arm", "RADIUS": "arm", "ULNA": "arm",
    "EXTREMITY": "extremity", "LOWEREXTREMITY": "extremity", "UPPEREXTREMITY": "extremity",
}
# The tags ever parsed from a file (everything else is skipped over, never decoded): the picture's ...
PIXEL_TAGS = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames", "PixelData", "FloatPixelData",
    "DoubleFloatPixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "ModalityLUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData",
)
# ... and the metadata whitelist: what an object is and shows, never who it is of (no name, id, date, place).
METADATA_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Modality", "BodyPartExamined", "ViewPosition",
    "ImageLaterality", "PatientSex", "PatientAge", "Manufacturer", "ManufacturerModelName", "StudyDescription",
    "SeriesDescription", "BurnedInAnnotation",
)
# SOPInstanceUID and StudyInstanceUID are read only to be hashed with a secret salt (retrieval/archive.py).
# Words of a Study/Series Description that survive scrubbing (lower case): anatomy, views, modalities. Any
# other word (a name, an id, a date, a place, a number) is dropped, so a description cannot carry an identifier.
DESCRIPTION_WORDS = frozenset("""
    chest thorax thoracic lung lungs rib ribs sternum heart abdomen abdominal kub pelvis pelvic hip hips sacrum
    sacroiliac coccyx spine spinal cervical lumbar lumbosacral sacral neck skull head face facial sinus sinuses
    orbit orbits nasal mandible maxilla jaw tmj dental teeth tooth panoramic opg bitewing periapical occlusal
    cephalometric shoulder shoulders clavicle scapula humerus arm arms upper lower elbow forearm radius ulna wrist
    wrists hand hands finger fingers thumb femur thigh knee knees patella leg legs tibia fibula ankle ankles foot
    feet toe toes heel calcaneus extremity extremities joint joints bone bones skeletal skeleton long
    pa ap lat lateral oblique frontal axial sunrise skyline tunnel mortise view views standing erect upright
    supine prone decubitus weight bearing weightbearing inspiration expiration flexion extension portable
    left right bilateral both and with without single two three four series study plain film radiograph
    radiographs radiography xray xr cr dx io px mg rf xa mammography mammogram fluoroscopy angiography
    scout localizer routine survey trauma follow up fracture
""".split())
SEX_VALUES = {"M", "F", "O"}
LATERALITY_VALUES = {"R", "L", "B", "U"}
_CODE = re.compile(r"^[A-Z0-9 _]{1,16}$")  # a CS value: a defined term, never free text
_AGE = re.compile(r"^(\d{3})([DWMY])$")
# Without the Part-10 preamble (force=True) garbage parses as nonsense tags: require one of these to call it DICOM.
_DICOM_SIGNS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Modality", "Rows", "PixelData")
PERCENTILE_WINDOW = (0.5, 99.5)  # used when the file carries no window: ignores collimator edges and burnt-in labels


@dataclass
class DicomImage:
    """A decoded DICOM picture plus the only metadata we keep (an allow-list: nothing that identifies a person)."""

    image: Image.Image  # mode "L", 8-bit, display-ready
    metadata: dict[str, str] = field(default_factory=dict)  # category, view, caption, modality, body_part


def modality_of(source) -> str | None:
    """The Modality code of a DICOM file (bytes or a path; upper case, "" when it has none), None for anything
    else: a picture, another format, a file that cannot be read (the image decoder reports that)."""
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as handle:
                head = handle.read(132)
            name, data = str(source), Path(source)
        elif isinstance(source, (bytes, bytearray)):
            name, data = None, io.BytesIO(bytes(source))
            head = bytes(source[:132])
        else:
            return None
        if not is_dicom(head, name):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(data, force=True, stop_before_pixels=True, specific_tags=["Modality"])
        return code(ds, "Modality")
    except Exception:  # noqa: BLE001 - unreadable: not ours to judge here
        return None


def read_dicom(source: bytes | str | Path, name: str | None = None, frame: int = 0) -> DicomImage:
    """Decode one frame of a DICOM file to a display-ready 8-bit grayscale image; BadImage for anything unusable.
    Only PIXEL_TAGS and METADATA_TAGS are parsed."""
    if isinstance(source, (bytes, bytearray)):
        label, data = name or "upload", bytes(source)
    else:
        label = name or Path(source).name
        data = read_bytes(source, label)
    try:
        with warnings.catch_warnings():  # force=True on garbage warns about bogus charsets etc.; we raise instead
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True, specific_tags=[*PIXEL_TAGS, *METADATA_TAGS])
    except Exception as error:  # pydicom raises many types for malformed data
        raise BadImage(f"{label!r} is not a readable DICOM file ({type(error).__name__}).") from error
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
    body_part, modality = code(ds, "BodyPartExamined"), code(ds, "Modality")
    return {
        "category": BODY_PART_CATEGORIES.get(body_part.replace(" ", ""), ""),
        "view": code(ds, "ViewPosition"),
        "caption": caption(ds, modality, body_part),
        "modality": modality,
        "body_part": body_part,
    }


def code(ds: pydicom.Dataset, keyword: str) -> str:
    """A coded value (CS) in upper case, or "" when the tag holds anything but a short code (free text)."""
    value = _text(ds, keyword).upper()
    return value if _CODE.match(value) else ""


def caption(ds: pydicom.Dataset, modality: str, body_part: str) -> str:
    """The scrubbed Study and Series Descriptions (each once, in order), else "MODALITY BODYPART radiograph"."""
    descriptions = [scrub_description(_text(ds, keyword)) for keyword in ("StudyDescription", "SeriesDescription")]
    text = "; ".join(dict.fromkeys(text for text in descriptions if text))
    if not text and (modality or body_part):
        text = " ".join(part for part in (modality, body_part, "radiograph") if part)
    return text


def scrub_description(text: str) -> str:
    """A free-text description reduced to its allow-listed words (DESCRIPTION_WORDS), lower case, in order:
    "XR CHEST PA+LAT Dr Smith 12/03" -> "xr chest pa lat". Digits, names and anything unknown are dropped."""
    words = [word for word in re.split(r"[^a-z]+", text.lower()) if word in DESCRIPTION_WORDS]
    return " ".join(word for position, word in enumerate(words) if position == 0 or word != words[position - 1])


def age_band(value: str) -> str:
    """A PatientAge (AS: "047Y", "006M") as a ten-year band ("40-49", "0-9"); 90 and over is one band ("90+",
    as HIPAA's safe harbour asks). "" for anything else: a birth date is never read."""
    match = _AGE.match(str(value or "").strip().upper())
    if not match:
        return ""
    years = int(match.group(1)) if match.group(2) == "Y" else 0
    return "90+" if years >= 90 else f"{years // 10 * 10}-{years // 10 * 10 + 9}"


def archive_fields(ds: pydicom.Dataset, body_parts: dict[str, str] = BODY_PART_CATEGORIES) -> dict[str, str]:
    """What an archive row keeps of a header read with METADATA_TAGS: the schema's category, body_part, view and
    caption, and the ARCHIVE fields but `study` (the caller hashes the UID). Every value is a code or scrubbed."""
    body_part, modality = code(ds, "BodyPartExamined"), code(ds, "Modality")
    sex, laterality = code(ds, "PatientSex"), code(ds, "ImageLaterality")
    return {
        "category": body_parts.get(body_part.replace(" ", ""), "other") if body_part else "other",
        "body_part": body_part,
        "view": code(ds, "ViewPosition"),
        "caption": caption(ds, modality, body_part),
        "modality": modality,
        "laterality": laterality if laterality in LATERALITY_VALUES else "",
        "sex": sex if sex in SEX_VALUES else "",
        "age_band": age_band(_text(ds, "PatientAge")),
        "manufacturer": _text(ds, "Manufacturer")[:64],
        "scanner": _text(ds, "ManufacturerModelName")[:64],
        "frames": str(max(1, _int(ds.get("NumberOfFrames")))),
    }


def _int(value: object) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def read_header(path: Path, defer: str = "4 KB") -> pydicom.Dataset:
    """The metadata whitelist of a file (and its pixel module, values over `defer` left unread): the metadata
    pass of an archive. Raises BadImage for a file that is not DICOM or whose header cannot be parsed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=defer, specific_tags=[*METADATA_TAGS, *PIXEL_TAGS])
    except Exception as error:  # truncated, corrupt: pydicom raises many types
        raise BadImage(f"not a readable DICOM file ({type(error).__name__})") from error
    with open(path, "rb") as handle:
        magic = handle.read(132)[128:132] == b"DICM"
    if not magic and not any(keyword in ds for keyword in _DICOM_SIGNS):
        raise BadImage("not a DICOM file")
    if len(ds) == 0:  # a meta header and nothing after it: the file was cut short
        raise BadImage("not a readable DICOM file (truncated header)")
    return ds


def load_body_parts(path: str | Path | None) -> dict[str, str]:
    """BODY_PART_CATEGORIES with a user's table merged over it: a JSON object {"BODYPART": "category"} or a CSV
    of two columns (body part, category; a header row is skipped). Keys are matched upper case, spaces removed."""
    table = dict(BODY_PART_CATEGORIES)
    if path is None:
        return table
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            pairs = json.loads(text).items()
        else:
            pairs = [(row[0], row[1]) for row in csv.reader(io.StringIO(text)) if len(row) >= 2]
            pairs = [(key, value) for key, value in pairs if key.strip().lower() not in ("body_part", "bodypart")]
    except (OSError, ValueError, AttributeError) as error:
        raise CollectionError(f"Cannot read the body-part table {path}: {error}. Give a JSON object "
                              f'{{"BODYPART": "category"}} or a CSV of two columns.') from error
    table.update({str(key).upper().replace(" ", ""): str(value).strip().lower() for key, value in pairs})
    return table
