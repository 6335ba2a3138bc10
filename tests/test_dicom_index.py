"""Folders holding DICOM files are indexed; tags fill empty metadata; DICOM queries work like PNG ones."""

import shutil

import pytest

from conftest import build_test_index
from retrieval.search import SearchEngine
from retrieval.validate import validate_collection


@pytest.fixture
def dicom_folder(dicom_samples, tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    shutil.copy(dicom_samples / "chest_pa_cr_jpeg2000_lossy.dcm", root / "chest_pa.dcm")
    shutil.copy(dicom_samples / "leg_ap_cr_uncompressed.dcm", root / "IMG0001")  # no extension
    (root / "notes").write_text("not a DICOM file, not indexed")
    return root


def test_a_dicom_folder_is_an_archive_that_validates_builds_and_fills_metadata_from_tags(dicom_folder, tmp_path,
                                                                                         fake_models):
    report = validate_collection(dicom_folder, progress=False)
    assert report.ok and report.rows == 2
    assert [f.message for f in report.warnings if f.code == "left-out"] == ["1 file(s) left out: not a DICOM file."]
    build = build_test_index(dicom_folder, tmp_path / "index", ["brightness", "tfidf"])
    assert build.skipped_objects == {"not-dicom": 1}
    engine = SearchEngine(tmp_path / "index")
    chest = next(engine.catalogue.record(i) for i in engine.catalogue.ids if engine.catalogue.record(i)["view"] == "PA")
    assert chest["category"] == "chest" and chest["modality"] == "CR" and chest["caption"]
    assert chest["file_name"] == chest["id"] + ".dcm"  # never the file's own path
    assert engine.catalogue.image(chest["id"]).mode == "L"
    assert engine.search_text("chest", model="tfidf", k=1)[0].id == chest["id"]


def test_a_dicom_query_finds_its_own_picture_first(dicom_folder, dicom_samples, tmp_path, fake_models):
    build_test_index(dicom_folder, tmp_path / "index", ["brightness"])
    engine = SearchEngine(tmp_path / "index")
    leg = next(i for i in engine.catalogue.ids if engine.catalogue.record(i)["body_part"] == "EXTREMITY")
    result = engine.search_image(dicom_samples / "leg_ap_cr_jpeg2000_lossless.dcm", model="brightness", k=2)
    assert result.hits[0].id == leg and result.hits[0].score > 0.999
    assert engine.search_image((dicom_folder / "IMG0001").read_bytes(), model="brightness", k=1).hits
