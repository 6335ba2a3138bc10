"""DICOM reading: real radiographs decode like a viewer shows them, and nothing that identifies a patient leaks out."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000, generate_uid

from retrieval import dicom
from retrieval.errors import BadImage
from retrieval.images import WORK_SIDE, load_image

SAMPLE_NAMES = [
    "chest_pa_cr_jpeg2000_lossy.dcm",
    "leg_ap_cr_jpeg2000_lossless.dcm",
    "leg_ap_cr_uncompressed.dcm",
    "coronary_xa_multiframe_jpeg.dcm",
]
# Values a generated file carries in identifying tags; none may appear in what read_dicom returns.
IDENTIFYING = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-773104",
    "PatientBirthDate": "19700321",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "Smith^Johnathan",
    "AccessionNumber": "ACC-998812",
    "StudyDate": "20240102",
    "StudyID": "STUDY-4411",
    "OperatorsName": "Operator^Olga",
    "PerformingPhysicianName": "Physician^Pia",
}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def make_dicom(
    stored: np.ndarray | None = None, *, photometric: str = "MONOCHROME2", signed: bool = False, **tags: object
) -> bytes:
    """A small Part-10 file (Explicit VR Little Endian) with 16-bit pixels `stored` (None: no PixelData)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("generated.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    if stored is not None:
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ramp(low: int = 0, high: int = 4095) -> np.ndarray:
    """64x64 values spread evenly over low..high: every output level is easy to predict."""
    return np.linspace(low, high, 64 * 64).round().reshape(64, 64)


# --- real files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_every_real_sample_decodes_to_a_usable_grayscale_picture(dicom_samples: Path, sample: str) -> None:
    result = dicom.read_dicom(dicom_samples / sample)
    assert result.image.mode == "L"
    assert min(result.image.size) >= 256
    assert pixels(result.image).std() > 10, "a constant picture means windowing went wrong"
    assert result.metadata["modality"] in {"CR", "XA"}


def test_lossless_jpeg2000_and_uncompressed_copies_give_the_same_picture(dicom_samples: Path) -> None:
    lossless = pixels(dicom.read_dicom(dicom_samples / "leg_ap_cr_jpeg2000_lossless.dcm").image)
    uncompressed = pixels(dicom.read_dicom(dicom_samples / "leg_ap_cr_uncompressed.dcm").image)
    assert lossless.shape == uncompressed.shape == (1760, 1760)
    assert np.abs(lossless - uncompressed).max() <= 1


def test_lossy_jpeg2000_chest_is_inverted_from_monochrome1_and_looks_like_a_chest(dicom_samples: Path) -> None:
    path = dicom_samples / "chest_pa_cr_jpeg2000_lossy.dcm"
    result = dicom.read_dicom(path)
    assert result.metadata["category"] == "chest" and result.metadata["view"] == "PA"
    shown = pixels(result.image).astype(np.float64)

    # The same decode without the MONOCHROME1 inversion (file window 15000/30000, linear) is its negative.
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    low, high = 15000 - 0.5 - (30000 - 1) / 2, 15000 - 0.5 + (30000 - 1) / 2
    not_inverted = np.rint(np.clip((stored - low) / (high - low), 0, 1) * 255)
    assert np.abs(shown - (255 - not_inverted)).max() <= 1

    # Bone and soft tissue bright, air dark: the mediastinum is brighter than both lung fields.
    height, width = shown.shape
    band = shown[int(height * 0.25) : int(height * 0.55)]
    mediastinum = band[:, int(width * 0.45) : int(width * 0.55)].mean()
    right_lung = band[:, int(width * 0.20) : int(width * 0.35)].mean()
    left_lung = band[:, int(width * 0.65) : int(width * 0.80)].mean()
    assert mediastinum > right_lung + 30 and mediastinum > left_lung + 30


def test_multiframe_reads_the_first_frame_by_default_and_any_frame_on_request(dicom_samples: Path) -> None:
    path = dicom_samples / "coronary_xa_multiframe_jpeg.dcm"
    default = pixels(dicom.read_dicom(path).image)
    assert np.array_equal(default, pixels(dicom.read_dicom(path, frame=0).image))
    assert not np.array_equal(default, pixels(dicom.read_dicom(path, frame=5).image))
    with pytest.raises(BadImage, match="96 frame"):
        dicom.read_dicom(path, frame=1000)


def test_a_real_file_without_extension_is_recognised_and_read(dicom_samples: Path, tmp_path: Path) -> None:
    copy = tmp_path / "scan"
    shutil.copyfile(dicom_samples / "leg_ap_cr_uncompressed.dcm", copy)
    assert dicom.is_dicom(copy.read_bytes(), "scan")
    assert dicom.read_dicom(copy).image.size == (1760, 1760)


def test_load_image_dispatches_dicom_paths_and_extensionless_bytes(dicom_samples: Path, tmp_path: Path) -> None:
    from_path = load_image(dicom_samples / "chest_pa_cr_jpeg2000_lossy.dcm")
    assert from_path.mode == "L" and max(from_path.size) == WORK_SIDE

    copy = tmp_path / "scan"
    shutil.copyfile(dicom_samples / "leg_ap_cr_uncompressed.dcm", copy)
    from_bytes = load_image(copy.read_bytes())  # no name at all: recognised by the DICM magic
    assert from_bytes.mode == "L" and from_bytes.size == (WORK_SIDE, WORK_SIDE)
    assert pixels(from_bytes).std() > 10


# --- generated files: each rule of the display pipeline -------------------------------------------------------


def test_is_dicom_is_decided_by_magic_or_name() -> None:
    part10 = make_dicom(ramp())
    assert dicom.is_dicom(part10) and dicom.is_dicom(part10, "scan")
    assert dicom.is_dicom(b"no preamble", "Study.DCM") and dicom.is_dicom(b"", "x.dicom")
    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    assert not dicom.is_dicom(png.getvalue(), "x.png")


def test_a_dcm_without_preamble_or_meta_header_is_still_read() -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(ramp(), BodyPartExamined="KNEE")))
    del ds.file_meta  # what old modalities write: a bare implicit-VR dataset, no "DICM" magic
    ds.preamble = None
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"
    assert dicom.is_dicom(data, "old.dcm") and not dicom.is_dicom(data, "old")
    result = dicom.read_dicom(data, name="old.dcm")
    assert result.metadata["category"] == "knee"
    assert np.abs(pixels(result.image) - pixels(dicom.read_dicom(make_dicom(ramp())).image)).max() <= 1


def test_monochrome1_is_shown_like_the_equivalent_monochrome2() -> None:
    values = ramp()
    mono2 = dicom.read_dicom(make_dicom(values, photometric="MONOCHROME2", WindowCenter=2048, WindowWidth=4096))
    mono1 = dicom.read_dicom(
        make_dicom(4095 - values, photometric="MONOCHROME1", WindowCenter=2047, WindowWidth=4096)
    )
    assert np.abs(pixels(mono1.image) - pixels(mono2.image)).max() <= 1
    assert pixels(mono2.image)[0, 0] == 0 and pixels(mono2.image)[-1, -1] == 255  # dark stays dark


def test_rescale_slope_and_intercept_are_applied_before_the_window() -> None:
    stored = ramp(0, 1000)
    window = {"WindowCenter": 0, "WindowWidth": 2000}  # in rescaled units: -1000..1000
    rescaled = dicom.read_dicom(make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1000, **window))
    prescaled = dicom.read_dicom(make_dicom(2 * stored - 1000, signed=True, **window))
    assert np.abs(pixels(rescaled.image) - pixels(prescaled.image)).max() <= 1
    assert pixels(rescaled.image).min() <= 1 and pixels(rescaled.image).max() >= 254  # full range used


def test_the_files_window_is_used_and_saturates_outside_it() -> None:
    values = ramp()
    shown = pixels(dicom.read_dicom(make_dicom(values, WindowCenter=2000, WindowWidth=1000)).image)
    assert (shown[values < 1499] == 0).all()
    assert (shown[values > 2500] == 255).all()
    middle = shown[(values > 1900) & (values < 2100)]
    assert 100 < middle.mean() < 156


def test_multi_valued_window_uses_the_first_preset() -> None:
    values = ramp()
    first = dicom.read_dicom(make_dicom(values, WindowCenter=[2000, 500], WindowWidth=[1000, 200]))
    single = dicom.read_dicom(make_dicom(values, WindowCenter=2000, WindowWidth=1000))
    assert np.array_equal(pixels(first.image), pixels(single.image))


def test_without_a_window_a_percentile_window_ignores_a_few_hot_pixels() -> None:
    values = ramp(1000, 2000)
    values.flat[:5] = 60000  # dead/hot pixels: min-max scaling would squash the anatomy into a few grey levels
    shown = pixels(dicom.read_dicom(make_dicom(values)).image)
    anatomy = shown.flat[5:]
    assert anatomy.min() <= 5 and anatomy.max() >= 250
    assert (shown.flat[:5] == 255).all()


def test_colour_dicom_becomes_grayscale() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[:, 16:] = 200
    data = make_dicom(None, Rows=32, Columns=32, SamplesPerPixel=3, PhotometricInterpretation="RGB",
                      PlanarConfiguration=0, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0,
                      PixelData=rgb.tobytes())
    shown = pixels(dicom.read_dicom(data).image)
    assert shown[:, :16].max() == 0 and shown[:, 16:].min() == 200


def test_a_dicom_without_pixel_data_is_refused_clearly() -> None:
    with pytest.raises(BadImage, match=r"'report\.dcm' is a DICOM file without pixel data"):
        dicom.read_dicom(make_dicom(None), name="report.dcm")


def test_garbage_named_dcm_is_refused_clearly() -> None:
    with pytest.raises(BadImage, match=r"'x\.dcm' is not a DICOM file"):
        dicom.read_dicom(b"this is not a medical image at all" * 20, name="x.dcm")
    with pytest.raises(BadImage, match=r"'x\.dcm'"):
        load_image(np.random.default_rng(0).bytes(4000), name="x.dcm")


def test_an_oversized_header_is_refused_before_decoding() -> None:
    data = make_dicom(None, Rows=10_000, Columns=10_000, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
                      BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=0, PixelData=b"\0" * 64)
    with pytest.raises(BadImage, match="megapixels"):
        dicom.read_dicom(data, name="huge.dcm")


def test_an_undecodable_compressed_file_names_its_transfer_syntax() -> None:
    data = make_dicom(ramp())
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = JPEG2000
    ds.PixelData = encapsulate([b"not a JPEG 2000 codestream" * 4])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(BadImage, match="JPEG 2000"):
        dicom.read_dicom(buffer.getvalue(), name="broken.dcm")


# --- metadata: an allow-list -----------------------------------------------------------------------------------


def test_metadata_maps_body_part_and_view() -> None:
    result = dicom.read_dicom(make_dicom(ramp(), BodyPartExamined="CHEST", ViewPosition="PA"))
    assert result.metadata == {
        "category": "chest",
        "view": "PA",
        "caption": "CR CHEST radiograph",  # no descriptions: made from modality and body part
        "modality": "CR",
        "body_part": "CHEST",
    }
    assert dicom.read_dicom(make_dicom(ramp(), BodyPartExamined="LSPINE")).metadata["category"] == "spine"
    assert dicom.read_dicom(make_dicom(ramp(), BodyPartExamined="EXTREMITY")).metadata["category"] == "extremity"
    assert dicom.read_dicom(make_dicom(ramp(), BodyPartExamined="HEART")).metadata["category"] == ""


def test_caption_prefers_study_and_series_descriptions_scrubbed() -> None:
    result = dicom.read_dicom(make_dicom(ramp(), StudyDescription="Knee 2 views", SeriesDescription="Knee lateral"))
    assert result.metadata["caption"] == "knee views; knee lateral"  # the digit is dropped


def test_a_description_keeps_only_anatomy_and_view_words() -> None:
    assert dicom.scrub_description("XR CHEST PA+LAT Dr Smith 12/03/2024 acc 88123") == "xr chest pa lat"
    assert dicom.scrub_description("Doe^Jane 1970") == ""
    assert dicom.scrub_description("Knee knee LEFT") == "knee left"  # a repeated word once


def test_free_text_in_a_coded_tag_is_dropped() -> None:
    data = make_dicom(ramp(), BodyPartExamined="Jane Doe's left knee, ward 7", ViewPosition="PA")
    assert dicom.read_dicom(data).metadata["body_part"] == ""


def test_a_file_is_read_through_the_whitelist_only(monkeypatch) -> None:
    asked = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: asked.append(k.get("specific_tags")) or real(*a, **k))
    dicom.read_dicom(make_dicom(ramp(), **IDENTIFYING))
    assert asked and set(asked[0]) == set(dicom.PIXEL_TAGS) | set(dicom.METADATA_TAGS)
    assert not set(asked[0]) & set(IDENTIFYING)


@pytest.mark.parametrize("descriptions", [{}, {"StudyDescription": "Chest PA", "SeriesDescription": "PA erect"}])
def test_identifying_tags_never_leak_into_metadata(descriptions: dict[str, str]) -> None:
    data = make_dicom(ramp(), BodyPartExamined="CHEST", ViewPosition="PA", **IDENTIFYING, **descriptions)
    assert pydicom.dcmread(io.BytesIO(data)).PatientID == IDENTIFYING["PatientID"]  # the file really holds them
    metadata = dicom.read_dicom(data).metadata
    assert set(metadata) == {"category", "view", "caption", "modality", "body_part"}
    shown = " ".join(metadata.values()).lower()
    for keyword, value in IDENTIFYING.items():
        for part in value.lower().replace("^", " ").split():
            assert part not in shown, f"{keyword} leaked into metadata: {metadata}"
