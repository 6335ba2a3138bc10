"""The app in a real browser: Playwright drives Debian's chromium against the app served on localhost over an
index of a real subset of the collection. Screenshots of each tab go to artifacts/screenshots/."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from conftest import BROWSER_WAIT_MS as WAIT_MS, CHROMIUM, served_app

if not CHROMIUM.is_file():
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the Playwright Python package is not installed")

from retrieval.images import MAX_FILE_BYTES  # noqa: E402

expect = sync_api.expect

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def url(subset_index):
    with served_app(subset_index) as (_, address):
        yield address


@pytest.fixture
def page(browser, url):
    page = browser.new_page()
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector("#text-query textarea")
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def engine(subset_index):
    from retrieval.search import SearchEngine

    return SearchEngine(subset_index)


def collection_file(engine, real_subset, category: str) -> Path:
    item_id = next(i for i in engine.catalogue.ids if engine.catalogue.record(i)["category"] == category)
    return real_subset / engine.catalogue.record(item_id)["file_name"]


@pytest.fixture(scope="module")
def knee_image(engine, real_subset) -> Path:
    return collection_file(engine, real_subset, "knee")


@pytest.fixture(scope="module")
def chest_image(engine, real_subset) -> Path:
    return collection_file(engine, real_subset, "chest")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def captions(page, gallery: str) -> list[str]:
    return page.locator(f"#{gallery} .caption-label").all_inner_texts()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_text_query_shows_results(page):
    page.fill("#text-query textarea", "knee fracture")
    page.click("#text-search")
    page.wait_for_selector("#text-results img")
    assert page.locator("#text-results img").count() >= 1
    assert captions(page, "text-results")[0].startswith("#1 · ")
    page.click("#text-results .thumbnail-item >> nth=0")
    page.wait_for_selector("#text-more img")
    page.wait_for_selector("#text-metadata table")
    screenshot(page, "text-search")


def test_enter_submits_and_the_empty_query_warns(page):
    page.press("#text-query textarea", "Enter")
    page.get_by_text("the query is empty").first.wait_for()
    page.fill("#text-query textarea", "dental panoramic")
    page.press("#text-query textarea", "Enter")
    page.wait_for_selector("#text-results img")
    assert "dental" in captions(page, "text-results")[0]


def test_image_upload_shows_results_and_the_suggested_category(page, knee_image):
    open_tab(page, "Image search")
    page.set_input_files("#query-file input[type=file]", str(knee_image))
    page.wait_for_selector("#image-results img")
    suggestion = page.locator("#suggestion")
    suggestion.get_by_text("knee").first.wait_for()
    assert captions(page, "image-results")[0].startswith("#1 · 1.00 · knee")
    screenshot(page, "image-search")


def test_clicking_a_result_shows_more_like_it(page, knee_image):
    open_tab(page, "Image search")
    page.set_input_files("#query-file input[type=file]", str(knee_image))
    page.wait_for_selector("#image-results img")
    page.click("#image-results .thumbnail-item >> nth=0")
    page.wait_for_selector("#image-more img")
    first = captions(page, "image-more")
    page.click("#image-results .thumbnail-item >> nth=1")
    page.wait_for_function("([selector, before]) => [...document.querySelectorAll(selector)]"
                           ".map(e => e.innerText).join('|') !== before",
                           arg=["#image-more .caption-label", "|".join(first)], timeout=WAIT_MS)
    assert captions(page, "image-more") != first
    selected = page.locator("#image-metadata table").inner_text()
    assert "knee" in selected
    screenshot(page, "more-like-this")


def send_file(page, path: Path, event: str, target: str = "document") -> None:
    """Fire a paste (on the page) or drop (on `target`) event carrying the file, as a person would."""
    page.evaluate("""([data, name, event, target]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/png" }));
        const element = target === "document" ? document : document.querySelector(target);
        element.dispatchEvent(event === "paste"
            ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true })
            : new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(path.read_bytes()).decode(), path.name, event, target])


def test_pasting_or_dropping_an_image_searches_with_it(page, knee_image, chest_image):
    open_tab(page, "Image search")
    send_file(page, knee_image, "paste")
    page.wait_for_function("() => document.querySelector('#image-results .caption-label')?.innerText"
                           ".startsWith('#1 · 1.00 · knee')", timeout=WAIT_MS)
    send_file(page, chest_image, "paste")  # replaces the file already in the box
    page.wait_for_function("() => document.querySelector('#image-results .caption-label')?.innerText"
                           ".startsWith('#1 · 1.00 · chest')", timeout=WAIT_MS)
    send_file(page, knee_image, "drop", "#query-file .file-preview")  # dropped on the box that holds a file
    page.wait_for_function("() => document.querySelector('#image-results .caption-label')?.innerText"
                           ".startsWith('#1 · 1.00 · knee')", timeout=WAIT_MS)


def test_an_example_from_the_collection_is_searched(page):
    open_tab(page, "Image search")
    page.locator("#image-examples .thumbnail-item").first.click()  # the chest example
    page.wait_for_function("() => document.querySelector('#image-results .caption-label')?.innerText"
                           ".startsWith('#1 · 1.00 · chest')", timeout=WAIT_MS)


def test_a_dicom_file_goes_through_the_same_upload_box(page, decodable_dicom):
    open_tab(page, "Image search")
    page.set_input_files("#query-file input[type=file]", str(decodable_dicom))
    page.wait_for_selector("#image-results img")
    expect(page.locator("#suggestion")).not_to_be_empty()


def test_non_image_and_oversized_files_give_an_error_and_the_app_keeps_serving(page, tmp_path):
    open_tab(page, "Image search")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a radiograph")
    page.set_input_files("#query-file input[type=file]", str(notes))
    page.get_by_text("is not an image that can be read").first.wait_for()
    page.locator("#query-file button[aria-label=Clear]").click()
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    page.set_input_files("#query-file input[type=file]", str(big))
    page.get_by_text("exceed the maximum allowed size").first.wait_for()
    open_tab(page, "Text search")
    page.fill("#text-query textarea", "chest x-ray")
    page.click("#text-search")
    page.wait_for_selector("#text-results img")


def test_models_and_collection_tabs(page):
    open_tab(page, "Models")
    table = page.locator("#models-table")
    for name in ("tfidf", "minilm", "efficientnet-lite0"):
        expect(table).to_contain_text(name)
    expect(table).to_contain_text("ready")
    screenshot(page, "models")
    open_tab(page, "Collection")
    stats = page.locator("#collection-stats")
    for category in ("chest", "dental", "fracture", "hand", "knee", "spine"):
        expect(stats).to_contain_text(category)
    screenshot(page, "collection")


def test_the_model_chosen_in_the_models_tab_becomes_the_default(page):
    open_tab(page, "Models")
    page.click("#default-model input")
    page.locator("#default-model").get_by_role("option", name="tfidf").click()
    open_tab(page, "Text search")
    page.wait_for_function("() => document.querySelector('#text-model input').value.startsWith('tfidf')",
                           timeout=WAIT_MS)


def gallery_changes(page, gallery: str, before: list[str]) -> None:
    page.wait_for_function("([selector, before]) => [...document.querySelectorAll(selector)]"
                           ".map(e => e.innerText).join('|') !== before",
                           arg=[f"#{gallery} .caption-label", "|".join(before)], timeout=WAIT_MS)


def test_selecting_a_result_shows_why_it_is_similar_with_both_heat_maps(page, knee_image):
    open_tab(page, "Image search")
    page.set_input_files("#query-file input[type=file]", str(knee_image))
    page.wait_for_selector("#image-results img")
    page.click("#image-results .thumbnail-item >> nth=1")
    expect(page.locator("#image-why-note")).to_contain_text("score 0.", timeout=WAIT_MS)
    for side in ("query", "result"):
        panel = page.locator(f"#image-why-{side}")
        panel.scroll_into_view_if_needed()
        expect(panel.locator("img")).to_be_visible()
    overlay = page.locator("#image-why-result img").get_attribute("src")
    page.locator("#image-why-toggle input").uncheck()  # the plain images, without the maps
    page.wait_for_function("([selector, before]) => document.querySelector(selector)?.src !== before",
                           arg=["#image-why-result img", overlay], timeout=WAIT_MS)
    page.locator("#image-why-toggle input").check()
    page.locator("#image-why").screenshot(path=str(SCREENSHOTS / "why-similar.png"))


def test_marking_results_and_refining_changes_the_results(page):
    page.fill("#text-query textarea", "knee radiograph")
    page.press("#text-query textarea", "Enter")
    page.wait_for_selector("#text-results img")
    feedback = page.locator("#text-feedback")
    feedback.get_by_label("mark it relevant").check()
    page.click("#text-results .thumbnail-item >> nth=0")
    page.click("#text-results .thumbnail-item >> nth=2")
    expect(page.locator("#text-relevant .token")).to_have_count(2)  # each mark is a round trip: wait for it
    feedback.get_by_label("mark it not relevant").check()
    page.click("#text-results .thumbnail-item >> nth=4")
    expect(page.locator("#text-irrelevant")).to_contain_text("/")  # the marked id is listed
    expect(page.locator("#text-irrelevant .token")).to_have_count(1)
    expect(page.locator("#text-relevant .token")).to_have_count(2)
    expect(page.locator("#text-more img")).to_have_count(0)  # marking is not selecting
    before = captions(page, "text-results")
    page.click("#text-refine")
    gallery_changes(page, "text-results", before)
    screenshot(page, "refine")


def test_the_map_tab_shows_the_collection_as_points(page):
    open_tab(page, "Map")
    plot = page.locator("#collection-map")
    plot.locator("canvas, svg").first.wait_for()
    expect(page.locator("#map-model")).to_be_visible()
    page.locator("#map-colour").get_by_label("source").check()
    plot.locator("canvas, svg").first.wait_for()
    screenshot(page, "map")


def test_a_link_with_a_query_opens_its_results_without_typing(browser, url):
    page = browser.new_page()
    try:
        page.goto(url + "?q=knee&k=6", timeout=WAIT_MS)
        page.wait_for_selector("#text-results img")
        assert page.input_value("#text-query textarea") == "knee"
        labels = captions(page, "text-results")
        assert len(labels) == 6 and all(" · knee · " in label for label in labels)
        page.click("#text-copy-link")
        expect(page.locator("#text-link textarea")).to_have_value(re.compile(r"\?q=knee&.*k=6"))
        page.goto(url + "?q=knee&k=500", timeout=WAIT_MS)
        expect(page.locator("#link-status")).to_contain_text("k must be from 1 to 20")
    finally:
        page.close()


def test_a_count_under_the_results_filters_by_a_click_and_the_link_carries_it(page, engine, url):
    page.fill("#text-query textarea", "chest x-ray")
    page.press("#text-query textarea", "Enter")
    page.wait_for_selector("#text-results img")
    chip = page.locator("#text-facets button", has_text=re.compile(r"^\s*view: ")).last  # the rarest view
    label = chip.inner_text().strip()  # "view: PA · 3"
    view = label.removeprefix("view: ").rsplit(" · ", 1)[0]
    before = captions(page, "text-results")
    chip.click()
    active = page.locator("#text-active-filters button", has_text=f"view: {view}")
    expect(active).to_be_visible()
    gallery_changes(page, "text-results", before)
    expect(page.locator("#text-facets button", has_text="view: ")).to_have_count(1)  # one view left: the filter's
    screenshot(page, "filters")
    page.click("#text-copy-link")
    expect(page.locator("#text-link textarea")).to_have_value(re.compile(r"filter=view%3A"))
    active.click()
    expect(page.locator("#text-active-filters button")).to_have_count(0)
    page.goto(url + f"?q=chest%20x-ray&filter=view:{view}", timeout=WAIT_MS)
    page.wait_for_selector("#text-results img")
    expect(page.locator("#text-active-filters button", has_text=f"view: {view}")).to_be_visible()
    page.goto(url + "?q=knee&filter=view:oblique", timeout=WAIT_MS)
    expect(page.locator("#link-status")).to_contain_text("Unknown view 'oblique'")
