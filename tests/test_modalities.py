"""A DICOM query of a modality the collection does not hold (an angiogram in a radiograph collection) is "no close
match", said with its reason, before any pixel is compared; a radiograph, a picture and an index that holds the
modality are judged as before."""

from __future__ import annotations

import shutil

import pytest

from conftest import build_test_index
from retrieval import modalities
from retrieval.archive import ArchiveOptions
from retrieval.dicom import modality_of
from retrieval.search import SearchEngine
from ui.render import with_notice

ANGIOGRAM = "coronary_xa_multiframe_jpeg.dcm"
CHEST = "chest_pa_cr_jpeg2000_lossy.dcm"


def test_only_a_named_modality_that_is_no_radiograph_and_not_held_is_foreign():
    assert modalities.foreign("XA", set()) and modalities.foreign("ct", set()) and modalities.foreign("MG", set())
    assert not any(modalities.foreign(code, set()) for code in ("CR", "DX", "IO", "PX", "RG", "dx "))
    assert not any(modalities.foreign(code, set()) for code in ("", "OT", "SC"))  # says nothing: the pixels judge
    assert not modalities.foreign("XA", {"CR", "XA"})  # an archive that holds angiograms takes angiogram queries


def test_the_modality_is_read_from_paths_and_bytes_of_dicom_files_only(dicom_samples, tmp_path):
    assert modality_of(dicom_samples / ANGIOGRAM) == "XA" and modality_of((dicom_samples / CHEST).read_bytes()) == "CR"
    (tmp_path / "scan").write_bytes((dicom_samples / ANGIOGRAM).read_bytes())  # no extension: the magic says
    assert modality_of(tmp_path / "scan") == "XA"
    (tmp_path / "page.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert modality_of(tmp_path / "page.png") is None and modality_of(b"not an image") is None
    assert modality_of(tmp_path / "missing.dcm") is None  # unreadable: the image decoder reports it


@pytest.fixture
def radiograph_index(synthetic_collection, tmp_path, fake_models):
    build_test_index(synthetic_collection, tmp_path / "index", ["brightness"])
    return SearchEngine(tmp_path / "index")


def test_an_angiogram_is_no_close_match_in_a_radiograph_collection_and_the_answer_says_why(radiograph_index,
                                                                                            dicom_samples):
    for query in (dicom_samples / ANGIOGRAM, (dicom_samples / ANGIOGRAM).read_bytes()):
        result = radiograph_index.search_image(query, model="brightness", k=3)
        assert result.in_collection is False and result.match_score == 0.0
        assert result.judged_by == "DICOM modality XA" and result.suggested_category is None
        assert len(result.hits) == 3  # the nearest images are still shown
        notice = with_notice(result, "3 results")
        assert "X-ray angiography" in notice and "3 results" in notice
    chest = radiograph_index.search_image(dicom_samples / CHEST, model="brightness", k=3)
    assert not (chest.judged_by or "").startswith(modalities.JUDGE) and chest.in_collection is not False


def test_an_index_whose_rows_hold_the_modality_judges_its_queries_by_their_pixels(dicom_samples, tmp_path,
                                                                                   fake_models):
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in (ANGIOGRAM, CHEST):
        shutil.copy(dicom_samples / name, archive / name)
    build_test_index(archive, tmp_path / "index", ["brightness"], archive=ArchiveOptions.parse("all"))
    engine = SearchEngine(tmp_path / "index")
    assert "XA" in engine.catalogue.column("modality")
    result = engine.search_image(dicom_samples / ANGIOGRAM, model="brightness", k=1)
    assert result.judged_by != "DICOM modality XA" and result.hits[0].modality == "XA"


def test_the_cli_says_the_modality_s_reason(radiograph_index, dicom_samples, capsys):
    from retrieval import cli

    assert cli.main(["search", "--index", str(radiograph_index.index_dir), "--model", "brightness",
                     "--image", str(dicom_samples / ANGIOGRAM)]) == 0
    assert "modality XA (X-ray angiography)" in capsys.readouterr().out
