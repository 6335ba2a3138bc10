"""A DICOM archive served by the app: the page says it is your archive; gradio_client gets the archive's whitelisted
fields in every answer (and nothing else), filters on them and follows a study; in a browser, a result's "More
from this study" and a click on an archive field's count; app.py builds with the archive options of `build`.

The archive: ../shared/dicom-samples (linked, never copied: a chest and two legs of one study, CR, sex F; the XA
file is not a projection radiograph asked for) and synthesised DX files: three hands of one study and a chest
alone in its own, sex M."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import generate_uid

from conftest import REPO, build_test_index, served_app
from dicom_files import picture, write_dicom
from retrieval.errors import RetrievalError
from retrieval.schema import ALL_FIELDS, ARCHIVE_FIELDS

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

MODELS = ["brightness", "keywords"]
HAND = dict(BodyPartExamined="HAND", ViewPosition="PA", PatientSex="M", PatientAge="034Y", ImageLaterality="R",
            Manufacturer="Acme", ManufacturerModelName="Rad 1")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
RECORD_KEYS = {"id", "rank", "score", *ALL_FIELDS}  # the whitelist's fields and the hit's place: nothing else


@pytest.fixture(scope="module")
def archive(dicom_samples, tmp_path_factory):
    root = tmp_path_factory.mktemp("archive") / "export"
    (root / "samples").mkdir(parents=True)
    for sample in dicom_samples.glob("*.dcm"):
        (root / "samples" / sample.name).symlink_to(sample)
    study = generate_uid()
    for number in range(3):
        write_dicom(root / "PAT9" / "ST1" / f"IM{number}", picture(number + 1), StudyInstanceUID=study, **HAND)
    write_dicom(root / "PAT8" / "ST2" / "IM0.dcm", picture(4), PatientSex="M", Manufacturer="Acme")
    return root


@pytest.fixture(scope="module")
def served(archive, module_fake_models, tmp_path_factory):
    index = tmp_path_factory.mktemp("archive-index") / "index"
    report = build_test_index(archive, index, MODELS)
    assert report.rows == 7 and report.skipped_objects == {"modality:XA": 1}
    with served_app(index) as (engine, url):
        yield engine, url


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    return Client(served[1], verbose=False, download_files=str(tmp_path_factory.mktemp("archive-downloads")))


def rows_where(engine, **values) -> list[str]:
    catalogue = engine.catalogue
    return [i for i in catalogue.ids if all(catalogue.record(i)[name] == value for name, value in values.items())]


def test_the_api_answers_carry_the_archive_fields_and_nothing_else(client, served):
    engine, _ = served
    hands = rows_where(engine, category="hand")
    gallery, records, _ = client.predict("hand", model="keywords", k=3, api_name="/search_text")
    assert sorted(r["id"] for r in records) == sorted(hands)
    assert [item["caption"] for item in gallery] == [f"#{n} · 1.00 · hand · DX PA R · Acme" for n in (1, 2, 3)]
    for record in records:
        assert set(ARCHIVE_FIELDS) <= set(record) <= RECORD_KEYS
        assert [record[name] for name in ("modality", "sex", "age_band", "laterality")] == ["DX", "M", "30-39", "R"]
        assert (record["manufacturer"], record["scanner"], record["frames"]) == ("Acme", "Rad 1", "1")
    assert len({r["study"] for r in records}) == 1 and records[0]["study"] not in ("", records[0]["id"])
    _, records, _ = client.predict(hands[0], model="brightness", k=6, min_score=0.0, api_name="/similar")
    assert records and all(set(ARCHIVE_FIELDS) <= set(r) <= RECORD_KEYS for r in records)


def test_a_filtered_search_over_the_api_keeps_only_that_value_as_the_library_does(client, served, dicom_samples):
    engine, _ = served
    for filters in ({"modality": "CR"}, {"sex": "M"}, {"manufacturer": "Acme", "category": "chest"}):
        _, records, _ = client.predict("chest", model="keywords", k=10, min_score=0.0, filters=filters,
                                       api_name="/search_text")
        wanted = set(rows_where(engine, **filters))
        assert records and {r["id"] for r in records} <= wanted, filters
        assert all(r[name] == value for r in records for name, value in filters.items())
        library = engine.search_text("chest", model="keywords", k=10, min_score=0.0, filters=filters)
        assert [r["id"] for r in records] == [hit.id for hit in library]
    upload = handle_file(str(dicom_samples / "chest_pa_cr_jpeg2000_lossy.dcm"))
    _, records, _, _ = client.predict(upload, model="brightness", k=10, min_score=0.0, filters={"sex": "M"},
                                      api_name="/search_image")
    assert {r["id"] for r in records} == set(rows_where(engine, sex="M"))  # 3 hands + the lone chest, no F row
    judgement = {"query_in_collection", "query_match_score"}  # the query's, on every record of an image search
    assert all(set(ARCHIVE_FIELDS) <= set(r) <= RECORD_KEYS | judgement for r in records)
    with pytest.raises(AppError, match="Unknown sex 'X'"):
        client.predict("chest", filters={"sex": "X"}, api_name="/search_text")


def test_more_from_this_study_over_the_api(client, served):
    engine, _ = served
    hands = rows_where(engine, category="hand")
    gallery, records, status = client.predict(hands[0], api_name="/study")
    assert sorted(r["id"] for r in records) == sorted(hands[1:]) and len(gallery) == 2
    assert status == "2 more images from this study."
    assert all(set(r) <= RECORD_KEYS and r["study"] == engine.catalogue.record(hands[0])["study"] for r in records)
    alone = rows_where(engine, category="chest", modality="DX")[0]
    assert client.predict(alone, api_name="/study")[2] == "No other image of this study."


def test_the_page_says_it_is_your_archive_and_what_its_build_left_out(served):
    from ui import render
    from ui.texts import header_markdown

    engine, _ = served
    catalogue = engine.catalogue
    header = header_markdown(len(catalogue), catalogue.categories, catalogue.has_studies,
                             sum(engine.generation.manifest.skipped_objects.values()))
    assert "7 images of your DICOM archive" in header and "public datasets" not in header
    assert "left out 1 file of the archive" in header
    assert "public datasets" in header_markdown(10, ["chest"]) and "left out" not in header_markdown(10, ["chest"])
    counts, labels, source = render.collection_markdown(catalogue.collection_stats())
    assert counts.startswith("**7 images** of your DICOM archive in 3 categories.") and labels == ""
    assert "your DICOM archive" in source and "salted hashes" in source


def test_app_py_builds_an_archive_with_the_options_of_build(archive, tmp_path, monkeypatch, capsys):
    """The same three options as `python -m retrieval build`, from one definition (cli.add_archive_options)."""
    import app
    from retrieval import cli
    from retrieval.archive import DEFAULT_MODALITIES, ArchiveOptions

    asked = {}

    def build_index(collection, index, **options):
        asked.update(options, collection=collection)
        raise RetrievalError("stop here: the options are what this test checks")

    monkeypatch.setattr(app, "build_index", build_index)
    table = tmp_path / "parts.json"
    table.write_text('{"HAND": "hand"}')
    options = ["--modalities", "cr,dx,xa", "--body-parts", str(table), "--allow-burned-in"]
    assert app.main(["--collection", str(archive), "--index", str(tmp_path / "index"), *options]) == 1
    assert asked["archive"] == ArchiveOptions(("CR", "DX", "XA"), str(table), True)
    assert cli.archive_options(cli.build_parser()[0].parse_args(["build", "--collection", "x", *options])) \
        == asked["archive"]
    assert app.main(["--collection", str(archive), "--modalities", " , "]) == 1  # refused before any build
    for main, argv in ((cli.main, ["build", "--help"]), (app.main, ["--help"])):  # the help states the default
        with pytest.raises(SystemExit):
            main(argv)
        assert f"(default: {','.join(DEFAULT_MODALITIES)}," in " ".join(capsys.readouterr().out.split())
    assert asked["archive"] == ArchiveOptions(("CR", "DX", "XA"), str(table), True)


def test_the_study_panel_and_a_filter_on_an_archive_field_in_the_browser(served, browser):
    from playwright.sync_api import expect

    engine, url = served
    hands = rows_where(engine, category="hand")
    page = browser.new_page()
    try:
        page.goto(url)
        expect(page.locator("#header")).to_contain_text("7 images of your DICOM archive")
        page.fill("#text-query textarea", "hand")
        page.press("#text-query textarea", "Enter")
        page.wait_for_selector("#text-results img")
        page.click("#text-results .thumbnail-item >> nth=0")
        expect(page.locator("#text-study .thumbnail-item")).to_have_count(2)
        expect(page.locator("#text-study-status")).to_contain_text("2 more images from this study")
        selected = page.locator("#text-selected-id textarea")
        first = selected.input_value()
        assert first in hands and "DX" in page.locator("#text-metadata table").inner_text()
        page.click("#text-study .thumbnail-item >> nth=0")  # another image of the study opens in its place
        expect(selected).not_to_have_value(first)
        assert selected.input_value() in hands
        expect(page.locator("#text-study .thumbnail-item")).to_have_count(2)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "archive-study.png"), full_page=True)
        # a count of an archive field under the results filters them by a click
        page.fill("#text-query textarea", "chest")
        page.press("#text-query textarea", "Enter")
        # the chest results, not the hand search's (whose counts hold modality CR too: a click there would race)
        expect(page.locator("#text-results .caption-label").first).to_contain_text("· chest ·")
        chip = page.locator("#text-facets button", has_text=re.compile(r"^\s*modality: CR"))
        expect(chip).to_be_visible()
        expect(page.locator("#text-facets button", has_text="modality: ")).to_have_count(2)  # CR and DX
        chip.click()
        expect(page.locator("#text-active-filters button", has_text="modality: CR")).to_be_visible()
        expect(page.locator("#text-facets button", has_text="modality: ")).to_have_count(1)
        shown = engine.search_text("chest", filters={"modality": "CR"})  # the page's defaults: the library's
        expect(page.locator("#text-results .thumbnail-item")).to_have_count(len(shown))
        page.get_by_role("tab", name="Collection").click()
        expect(page.locator("#collection-stats")).to_contain_text("7 images of your DICOM archive")
        expect(page.locator("#archive-stats")).to_contain_text("modality XA not asked for")
        page.screenshot(path=str(SCREENSHOTS / "archive-collection.png"), full_page=True)
        page.goto(url + "?q=chest&filter=sex:M")  # a link carries an archive field's filter
        expect(page.locator("#text-active-filters button", has_text="sex: M")).to_be_visible()
        expect(page.locator("#text-results .thumbnail-item")).to_have_count(
            len(engine.search_text("chest", filters={"sex": "M"})))
    finally:
        page.close()


def test_the_details_panel_leaves_out_fields_an_archive_row_has_no_value_for():
    from ui import render

    table = render.details_markdown({"id": "a1", "category": "hand", "label": "", "license": "", "modality": "CR"})
    assert "| modality | CR |" in table and "| category | hand |" in table
    assert "label" not in table and "license" not in table
