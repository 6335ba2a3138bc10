"""A folder of DICOM files is a collection: nested trees, multi-frame objects, foreign and broken objects counted
(never fatal), body parts mapped by an extensible table, age bands, studies linked, ids salted per index folder."""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest
from pydicom.uid import generate_uid

from conftest import DICOM_SAMPLES, build_test_index, synthetic_image
from dicom_files import CT_STORAGE, PDF_STORAGE, PR_STORAGE, SR_STORAGE, picture, write_dicom
from retrieval import cli, dicom
from retrieval.archive import ArchiveOptions, archive_rows, is_archive, pseudonym
from retrieval.errors import CollectionError
from retrieval.layout import SALT_FILE, IndexFolder
from retrieval.search import SearchEngine

MODELS = ["brightness", "keywords"]
STUDY = "1.2.826.0.1.3680043.10.543.7.1"


def good_tree(root, count: int = 3):
    """`count` chest radiographs of one study in patient/study/series folders, names with and without .dcm,
    a DICOMDIR and a README beside them."""
    for number in range(count):
        name = f"IM{number:04d}" if number % 2 else f"IM{number:04d}.dcm"
        write_dicom(root / "PAT001" / "STUDY1" / f"SERIES{number % 2}" / name, picture(number),
                    StudyInstanceUID=STUDY, PatientAge="047Y", PatientSex="F", ImageLaterality="L",
                    Manufacturer="Acme", ManufacturerModelName="Rad 1")
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)  # a media directory: ignored, not counted
    (root / "README.txt").write_text("export notes")
    return root


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "export")


def broken_objects(root):
    """One of each thing a build leaves out, and why."""
    write_dicom(root / "sr" / "report", np.empty(0), sop_class=SR_STORAGE, Modality="SR")
    write_dicom(root / "pr" / "state", np.empty(0), sop_class=PR_STORAGE, Modality="PR")
    write_dicom(root / "doc" / "scan.dcm", np.empty(0), sop_class=PDF_STORAGE, Modality="DOC")
    write_dicom(root / "rt" / "plan", np.empty(0), Modality="RTPLAN", sop_class="1.2.840.10008.5.1.4.1.1.481.5")
    write_dicom(root / "ct" / "slice1", picture(), sop_class=CT_STORAGE, Modality="CT")
    write_dicom(root / "odd" / "syntax", picture(), syntax="1.2.826.0.1.3680043.10.543.99")
    write_dicom(root / "burnt" / "label.dcm", picture(), BurnedInAnnotation="YES")
    whole = write_dicom(root / "cut" / "truncated.dcm", picture(size=64)).read_bytes()
    (root / "cut" / "truncated.dcm").write_bytes(whole[:len(whole) - 3000])  # pixel data cut short
    (root / "cut" / "header.dcm").write_bytes(whole[:200])  # cut inside the header
    (root / "junk.dcm").write_bytes(os.urandom(3000))
    shutil.copy(next((root / "PAT001").rglob("IM0000.dcm")), root / "copy-of-IM0000.dcm")  # same SOP instance


def build(root, index, **options):
    return build_test_index(root, index, MODELS, **options)


def test_a_tree_of_dicom_files_is_an_archive_and_a_picture_folder_is_not(tree, tmp_path):
    assert is_archive(tree)
    pictures = tmp_path / "pictures" / "chest"
    pictures.mkdir(parents=True)
    for number in range(3):
        synthetic_image("bright", number).save(pictures / f"{number}.png")
    assert not is_archive(tmp_path / "pictures")
    (tree / "metadata.csv").write_text("file_name,category\n")
    assert not is_archive(tree)


def test_every_image_is_a_row_with_whitelisted_metadata_and_no_path(tree, tmp_path, fake_models):
    report = build(tree, tmp_path / "index")
    assert report.rows == 3 and report.skipped_objects == {"not-dicom": 1}  # the README; DICOMDIR is ignored
    engine = SearchEngine(tmp_path / "index")
    record = engine.catalogue.record(engine.catalogue.ids[0])
    assert record["category"] == "chest" and record["body_part"] == "CHEST" and record["view"] == "PA"
    assert (record["modality"], record["sex"], record["age_band"], record["laterality"]) == ("DX", "F", "40-49", "L")
    assert (record["manufacturer"], record["scanner"], record["frames"]) == ("Acme", "Rad 1", "1")
    assert record["file_name"] == f"{record['id']}.dcm" and "PAT001" not in json.dumps(engine.catalogue.ids)
    hit = engine.search_text("chest", model="keywords", k=1)[0]
    assert hit.to_dict()["age_band"] == "40-49"  # archive fields travel with every result


def test_a_multi_frame_object_is_one_row_showing_its_first_frame(tmp_path, fake_models):
    frames = picture(1, frames=3)
    frames[1:] = 0  # only the first frame has a picture
    write_dicom(tmp_path / "cine" / "run1", frames)
    write_dicom(tmp_path / "cine" / "still", picture(1))
    build(tmp_path / "cine", tmp_path / "index")
    engine = SearchEngine(tmp_path / "index")
    by_frames = {engine.catalogue.record(i)["frames"]: i for i in engine.catalogue.ids}
    assert set(by_frames) == {"3", "1"}
    first, still = (np.asarray(engine.catalogue.image(by_frames[n])) for n in ("3", "1"))
    assert first.std() > 10 and np.abs(first.astype(int) - still.astype(int)).mean() < 2


def test_foreign_and_broken_objects_are_counted_never_fatal_and_nothing_indexed_is_lost(tree, tmp_path,
                                                                                      fake_models):
    index = tmp_path / "index"
    build(tree, index)
    before = set(SearchEngine(index).catalogue.ids)
    broken_objects(tree)
    report = build(tree, index)
    assert report.skipped_objects == {
        "structured-report": 1, "presentation-state": 1, "encapsulated-document": 1, "no-pixel-data": 1,
        "modality:CT": 1, "undecodable": 1, "burned-in": 1, "pixels-unreadable": 1, "unreadable": 1,
        "not-dicom": 2, "duplicate": 1}
    assert set(SearchEngine(index).catalogue.ids) == before
    assert IndexFolder(index).current().manifest.skipped_objects == report.skipped_objects
    opted_in = build(tree, index, archive=ArchiveOptions.parse("DX,CT", allow_burned_in=True))
    assert opted_in.rows == len(before) + 2 and "burned-in" not in opted_in.skipped_objects


def test_an_archive_with_nothing_to_index_says_why_and_keeps_the_previous_index(tree, tmp_path, fake_models):
    index = tmp_path / "index"
    build(tree, index)
    current = IndexFolder(index).current().name
    with pytest.raises(CollectionError, match="modality DX not asked for"):
        build(tree, index, archive=ArchiveOptions.parse("MG"))
    assert IndexFolder(index).current().name == current


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_the_body_part_table_is_extended_by_a_users_file_and_unknown_parts_are_other(tmp_path, suffix):
    write_dicom(tmp_path / "a" / "1", BodyPartExamined="BRUSTKORB")
    write_dicom(tmp_path / "a" / "2", BodyPartExamined="GALLBLADDER")
    table = tmp_path / f"parts{suffix}"
    table.write_text(json.dumps({"brustkorb": "chest"}) if suffix == ".json" else "body_part,category\nBRUSTKORB,chest\n")
    rows, _ = archive_rows(tmp_path / "a", b"salt", ArchiveOptions(body_parts=str(table)))
    assert sorted((row.body_part, row.category) for row in rows) == [("BRUSTKORB", "chest"), ("GALLBLADDER", "other")]
    assert dicom.load_body_parts(None) == dicom.BODY_PART_CATEGORIES  # the built-in table is not changed
    with pytest.raises(CollectionError, match="does not exist"):
        ArchiveOptions.parse(body_parts=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(CollectionError, match="body-part table"):
        dicom.load_body_parts(tmp_path / "bad.json")


@pytest.mark.parametrize("age, band", [("047Y", "40-49"), ("009Y", "0-9"), ("018M", "0-9"), ("003W", "0-9"),
                                       ("090Y", "90+"), ("104Y", "90+"), ("47", ""), ("19700321", ""), ("", "")])
def test_an_age_becomes_a_ten_year_band(age, band):
    assert dicom.age_band(age) == band


def test_a_studys_images_are_linked_from_the_library_the_api_and_the_cli(tree, tmp_path, fake_models, capsys):
    write_dicom(tree / "PAT002" / "other", picture(4), StudyInstanceUID="1.2.826.0.1.3680043.10.543.7.2")
    build(tree, tmp_path / "index")
    engine = SearchEngine(tmp_path / "index")
    studies = {}
    for item in engine.catalogue.ids:
        studies.setdefault(engine.catalogue.record(item)["study"], []).append(item)
    linked = next(ids for ids in studies.values() if len(ids) == 3)
    alone = next(ids for ids in studies.values() if len(ids) == 1)[0]
    assert sorted(hit.id for hit in engine.study(linked[0])) == sorted(linked[1:])
    assert engine.study(alone).hits == []
    import app

    _, records, status = app.Handlers(engine).study(linked[0])
    assert sorted(r["id"] for r in records) == sorted(linked[1:]) and "2 more images" in status
    assert cli.main(["search", "--index", str(tmp_path / "index"), "--study", linked[0], "--json"]) == 0
    assert sorted(r["id"] for r in json.loads(capsys.readouterr().out)) == sorted(linked[1:])


def test_ids_are_salted_hashes_stable_per_index_folder_and_the_salt_is_secret(tree, tmp_path, fake_models):
    build(tree, tmp_path / "one")
    salt_file = tmp_path / "one" / SALT_FILE
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    salt = IndexFolder(tmp_path / "one").salt()
    first = SearchEngine(tmp_path / "one").catalogue.ids
    build(tree, tmp_path / "one", force=True)
    assert SearchEngine(tmp_path / "one").catalogue.ids == first and IndexFolder(tmp_path / "one").salt() == salt
    build(tree, tmp_path / "two")
    assert set(SearchEngine(tmp_path / "two").catalogue.ids).isdisjoint(first)  # another folder, another salt
    uids = [str(dicom.read_header(path).SOPInstanceUID) for path in tree.rglob("IM*")]
    assert sorted(first) == sorted(pseudonym(salt, "sop", uid) for uid in uids)
    assert not any(uid in item or item in uid for uid in uids for item in first)
    generation = IndexFolder(tmp_path / "one").current().folder
    assert not list(generation.rglob(SALT_FILE))  # outside every generation: publish never copies it


def test_the_cli_build_takes_the_archive_options_and_reports_what_it_left_out(tree, tmp_path, fake_models, capsys):
    broken_objects(tree)
    table = tmp_path / "parts.json"
    table.write_text('{"CHEST": "thorax-x"}')
    arguments = ["build", "--collection", str(tree), "--index", str(tmp_path / "index"), "--models", "brightness",
                 "--modalities", "dx,ct", "--body-parts", str(table)]
    assert cli.main(arguments) == 0
    out = capsys.readouterr().out
    assert "left out" in out and "a structured report (SR)" in out and "BurnedInAnnotation" in out
    assert cli.main([*arguments, "--json", "--allow-burned-in"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["up_to_date"] is False and "burned-in" not in report["skipped_objects"]
    assert report["skipped_objects"]["structured-report"] == 1 and "modality:CT" not in report["skipped_objects"]
    assert set(SearchEngine(tmp_path / "index").catalogue.categories) == {"thorax-x"}


def test_the_real_samples_build_and_search(tmp_path, fake_models):
    if not DICOM_SAMPLES.is_dir():
        pytest.skip(f"DICOM samples are not at {DICOM_SAMPLES}")
    report = build(DICOM_SAMPLES, tmp_path / "index", archive=ArchiveOptions.parse("CR,DX,XA"))
    assert report.rows == 4 and report.skipped_objects == {"not-dicom": 1}  # their README
    engine = SearchEngine(tmp_path / "index")
    frames = sorted(engine.catalogue.record(i)["frames"] for i in engine.catalogue.ids)
    assert frames == ["1", "1", "1", "96"]
    found = engine.search_image(DICOM_SAMPLES / "chest_pa_cr_jpeg2000_lossy.dcm", model="brightness", k=1)[0]
    assert found.category == "chest" and found.score > 0.999
    legs = [i for i in engine.catalogue.ids if engine.catalogue.record(i)["body_part"] == "EXTREMITY"]
    assert [hit.id for hit in engine.study(legs[0])] == legs[1:]  # the two leg files share their study
    assert build(DICOM_SAMPLES, tmp_path / "index").skipped_objects == {"modality:XA": 1, "not-dicom": 1}


def test_generate_uid_is_not_what_the_ids_are_made_of():
    uid = generate_uid()
    assert pseudonym(b"a", "sop", uid) != pseudonym(b"b", "sop", uid) and uid not in pseudonym(b"a", "sop", uid)
