"""Synthesise a PACS-like DICOM archive from the collection's images (read-only; written outside the repo).

    <category>/<study>/<series>/IM<n>[.dcm]     nested study/series folders; ~1 in 4 files without .dcm

Each image of ../shared/xray-collection becomes several DICOM objects, each varied (crop, gamma, noise, 8- or
12-bit, MONOCHROME1 or 2) so no two files share their bytes, with varied tags: modality CR/DX, body part, view,
laterality, sex, age, manufacturer and model, descriptions. About 3 % are broken the ways an export breaks:
truncated files, corrupt bytes, and non-image objects (Basic Text structured reports, encapsulated PDFs).
The first sub-folder is the body part's category, so the folder reader of today (`collection.local_rows`: one row
per file, category from the first sub-folder) and a reader of the tags both see a meaningful category.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np

BROKEN_SHARE = 0.03
BODY_PARTS = {"chest": ["CHEST"], "knee": ["KNEE"], "hand": ["HAND"], "spine": ["LSPINE", "CSPINE", "SPINE"],
              "dental": ["JAW", "TEETH"], "fracture": ["WRIST", "ANKLE", "FOOT", "ELBOW", "FOREARM"]}
VIEWS = ["PA", "AP", "LAT", "LL", "OBL"]
MANUFACTURERS = [("Agfa", "DX-D 300"), ("Carestream", "DRX-Evolution"), ("Fujifilm", "FDR D-EVO II"),
                 ("Philips", "DigitalDiagnost"), ("Siemens", "Ysio Max"), ("GE Healthcare", "Definium 8000")]
SR_CLASS, PDF_CLASS = "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.104.1"
IMAGE_CLASSES = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}


def source_images(collection: Path) -> list[tuple[Path, str]]:
    with (collection / "metadata.csv").open(newline="") as handle:
        return [(collection / row["file_name"], row["category"]) for row in csv.DictReader(handle)]


def synthesise(root: Path, count: int, collection: Path, start: int = 0, seed: int = 0) -> dict:
    """Write DICOM files number `start` .. `start + count - 1` under `root`; returns what was written."""
    sources = source_images(collection)
    written = {"images": 0, "truncated": 0, "corrupt": 0, "structured_report": 0, "encapsulated_pdf": 0}
    for number in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + number)
        path_in, category = sources[(number * 7919) % len(sources)]  # a prime stride: every category early
        category = category if category in BODY_PARTS else "chest"
        study, series = number // 6, number // 2
        folder = root / category / f"ST{study:06d}" / f"SE{series:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"IM{number:06d}" + ("" if rng.random() < 0.25 else ".dcm")
        kind = _kind(rng)
        data = _object(kind, path_in, category, number, rng)
        if kind == "truncated":
            data = data[:max(200, int(len(data) * rng.uniform(0.2, 0.7)))]
        elif kind == "corrupt":
            data = bytes(rng.getrandbits(8) for _ in range(2048))
            name = f"IM{number:06d}.dcm"  # garbage without the extension is not even listed
        (folder / name).write_bytes(data)
        written[kind] += 1
    return written


def _kind(rng: random.Random) -> str:
    draw = rng.random()
    if draw >= BROKEN_SHARE:
        return "images"
    return ["truncated", "corrupt", "structured_report", "encapsulated_pdf"][int(draw / BROKEN_SHARE * 4)]


def _object(kind: str, image_path: Path, category: str, number: int, rng: random.Random) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = {"structured_report": SR_CLASS, "encapsulated_pdf": PDF_CLASS}.get(
        kind, IMAGE_CLASSES["CR" if number % 3 else "DX"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"sop-{number}"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study-{number // 6}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series-{number // 2}"])
    ds.PatientID, ds.PatientName = f"SYN{number // 6:06d}", f"Synthetic^{number // 6}"
    ds.PatientSex = rng.choice(["F", "M", "O", ""])
    ds.PatientAge = f"{rng.randint(1, 95):03d}Y"
    ds.Manufacturer, ds.ManufacturerModelName = rng.choice(MANUFACTURERS)
    ds.BodyPartExamined = rng.choice(BODY_PARTS[category])
    if kind == "structured_report":
        ds.Modality, ds.ValueType, ds.ContentDate = "SR", "CONTAINER", "20240101"
        ds.StudyDescription = "REPORT"
    elif kind == "encapsulated_pdf":
        ds.Modality, ds.MIMETypeOfEncapsulatedDocument = "DOC", "application/pdf"
        ds.EncapsulatedDocument = b"%PDF-1.4\n% synthetic\n" + bytes(rng.getrandbits(8) for _ in range(512))
    else:
        ds.Modality = "CR" if number % 3 else "DX"
        ds.ViewPosition, ds.ImageLaterality = rng.choice(VIEWS), rng.choice(["L", "R", "U"])
        ds.StudyDescription = f"XR {ds.BodyPartExamined} {rng.randint(1, 3)} VIEWS"
        ds.SeriesDescription = f"{ds.BodyPartExamined} {ds.ViewPosition}"
        _pixels(ds, image_path, rng)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _pixels(ds, image_path: Path, rng: random.Random) -> None:
    """A varied copy of the picture: crop, gamma, noise; 8- or 12-bit; MONOCHROME1 for some."""
    from PIL import Image

    with Image.open(image_path) as image:
        picture = image.convert("L")
    width, height = picture.size
    keep = rng.uniform(0.85, 1.0)
    left, top = rng.randint(0, int(width * (1 - keep))), rng.randint(0, int(height * (1 - keep)))
    picture = picture.crop((left, top, left + int(width * keep), top + int(height * keep)))
    values = (np.asarray(picture, dtype=np.float32) / 255.0) ** rng.uniform(0.8, 1.25)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 0.01, values.shape)
    values = np.clip(values + noise, 0, 1)
    twelve = rng.random() < 0.5
    top_value = 4095 if twelve else 255
    monochrome1 = rng.random() < 0.2
    stored = np.rint((1 - values if monochrome1 else values) * top_value).astype(np.uint16 if twelve else np.uint8)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (16, 12, 11) if twelve else (8, 8, 7)
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()


__all__ = ["synthesise"]
