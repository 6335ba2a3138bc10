"""The app's public API, called with gradio_client: the app is served in-process on a free localhost port over
an index of a real subset of the collection (tfidf, minilm, efficientnet-lite0, xray-lite0)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from conftest import served_app  # noqa: E402
from retrieval.embedders import list_embedders  # noqa: E402
from retrieval.evaluation_summary import EvaluationSummary  # noqa: E402
from retrieval.files import MAX_FILE_BYTES  # noqa: E402
from retrieval.images import load_image  # noqa: E402
from retrieval.ranking import DUPLICATE_MARGIN  # noqa: E402

ENDPOINTS = {"/search_text", "/search_image", "/similar", "/study", "/refine", "/explain", "/models"}
RESULT_FIELDS = {"id", "rank", "score", "file_name", "category", "label", "caption", "source", "license"}


@pytest.fixture(scope="module")
def served(subset_index):
    with served_app(subset_index) as (engine, url):
        yield engine, url


@pytest.fixture(scope="module")
def engine(served):
    return served[0]


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    """Built as README advises: one SSL context for every result download."""
    import ssl

    return Client(served[1], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")),
                  ssl_verify=ssl.create_default_context())


@pytest.fixture(scope="module")
def knee_file(engine, real_subset) -> tuple[str, Path]:
    """(id, path) of a knee radiograph that is in the index."""
    catalogue = engine.catalogue
    item_id = next(i for i in catalogue.ids if catalogue.record(i)["category"] == "knee")
    return item_id, real_subset / catalogue.record(item_id)["file_name"]


def check_results(gallery, records, k: int, min_score: float | None = None) -> None:
    """Ranks 1..n, scores non-increasing (but for a repeated text yielding to a near one), every field
    present, one captioned image per record."""
    assert 0 < len(records) <= k
    assert [r["rank"] for r in records] == list(range(1, len(records) + 1))
    scores = [r["score"] for r in records]
    assert all(later <= earlier + DUPLICATE_MARGIN + 1e-6 for earlier, later in zip(scores, scores[1:]))
    assert scores[0] == max(scores)
    if min_score is not None:
        assert min(scores) >= min_score
    for record in records:
        assert RESULT_FIELDS <= set(record)
        assert not Path(record["file_name"]).is_absolute()  # collection-relative, never a server path
    assert len(gallery) == len(records)
    for item, record in zip(gallery, records):
        assert item["caption"].startswith(f"#{record['rank']} · {record['score']:.2f} · {record['category']}")
        with Image.open(item["image"]) as picture:  # an image the server encoded, downloaded by the client
            assert min(picture.size) > 16


def test_only_the_named_endpoints_are_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == ENDPOINTS
    assert not api["unnamed_endpoints"]


def test_text_search_with_defaults(client):
    gallery, records, status = client.predict("knee", api_name="/search_text")
    check_results(gallery, records, k=5)
    assert records[0]["category"] == "knee"
    assert status.startswith(f"{len(records)} result")


def test_text_search_respects_category_k_and_threshold(client):
    gallery, records, _ = client.predict("radiograph", model="tfidf", k=12, category="hand", min_score=0.0,
                                         api_name="/search_text")
    check_results(gallery, records, k=12, min_score=0.0)
    assert len(records) == 12
    assert {r["category"] for r in records} == {"hand"}

    _, loose, _ = client.predict("chest x-ray", model="minilm", k=20, min_score=0.0, api_name="/search_text")
    middle = len(loose) // 2
    threshold = (loose[middle - 1]["score"] + loose[middle]["score"]) / 2
    gallery, strict, _ = client.predict("chest x-ray", model="minilm", k=20, min_score=threshold,
                                        api_name="/search_text")
    check_results(gallery, strict, k=20, min_score=threshold)
    assert [r["id"] for r in strict] == [r["id"] for r in loose if r["score"] >= threshold]


def test_empty_result_says_what_to_do(client):
    gallery, records, status = client.predict("zzqxj", model="tfidf", api_name="/search_text")
    assert gallery == [] and records == []
    assert "No images above the threshold" in status and "lower it" in status
    assert "No image's text has the word “zzqxj”" in status  # and which word the collection lacks


def test_image_search_finds_the_image_itself_and_suggests_its_category(client, knee_file):
    item_id, path = knee_file
    gallery, records, suggestion, status = client.predict(handle_file(str(path)), api_name="/search_image")
    check_results(gallery, records, k=5)
    assert records[0]["id"] == item_id and records[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert suggestion["label"] == "knee"
    shares = [c["confidence"] for c in suggestion["confidences"]]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0 + 1e-6
    assert status.startswith(f"{len(records)} result")


def test_image_search_with_category_filter(client, knee_file):
    _, path = knee_file
    _, records, _, _ = client.predict(handle_file(str(path)), k=7, category="chest", api_name="/search_image")
    assert len(records) == 7 and {r["category"] for r in records} == {"chest"}


def test_dicom_goes_through_the_same_endpoint(client, decodable_dicom):
    gallery, records, suggestion, _ = client.predict(handle_file(str(decodable_dicom)), api_name="/search_image")
    check_results(gallery, records, k=5)
    assert suggestion["label"]


def test_an_angiogram_over_the_api_is_no_close_match_and_the_status_says_why(client, dicom_samples):
    angiogram = dicom_samples / "coronary_xa_multiframe_jpeg.dcm"
    gallery, records, suggestion, status = client.predict(handle_file(str(angiogram)), api_name="/search_image")
    check_results(gallery, records, k=5)  # the nearest images, under the notice
    assert suggestion["label"] == "No close match in this collection"
    assert "modality XA (X-ray angiography)" in status
    assert {(r["query_in_collection"], r["query_match_score"]) for r in records} == {(False, 0.0)}


def test_more_like_this_excludes_the_query_itself(client, knee_file):
    item_id, _ = knee_file
    gallery, records, _ = client.predict(item_id, k=8, api_name="/similar")
    check_results(gallery, records, k=8)
    assert len(records) == 8 and item_id not in {r["id"] for r in records}
    _, only_knees, _ = client.predict(item_id, k=8, category="knee", api_name="/similar")
    assert {r["category"] for r in only_knees} == {"knee"} and item_id not in {r["id"] for r in only_knees}


def test_every_search_endpoint_takes_field_filters(client, engine, knee_file):
    """`filters` comes last with a default, so every call above (without it) still works unchanged."""
    catalogue = engine.catalogue
    view = next(v for v, n in catalogue.field_counts(catalogue.ids)["view"].items() if n >= 10)
    by_view = {"view": view}
    _, records, _ = client.predict("radiograph", model="tfidf", k=10, min_score=0.0, filters=by_view,
                                   api_name="/search_text")
    assert len(records) == 10 and {r["view"] for r in records} == {view}
    item_id, path = knee_file
    licence = {"license": catalogue.record(item_id)["license"]}  # images like the query's pass (scores >= 0)
    _, records, suggestion, _ = client.predict(handle_file(str(path)), k=5, min_score=0.0, filters=licence,
                                               api_name="/search_image")
    assert len(records) == 5 and {r["license"] for r in records} == set(licence.values()) and suggestion["label"]
    seed = catalogue.ids[int(catalogue.filters.allowed({"view": (view,)})[0])]  # a row with that view
    same = {"view": view, "category": catalogue.record(seed)["category"]}
    _, records, _ = client.predict(seed, k=10, min_score=0.0, filters=same, api_name="/similar")
    assert records and {(r["view"], r["category"]) for r in records} == {tuple(same.values())}
    assert seed not in {r["id"] for r in records}
    _, records, _ = client.predict("radiograph", [seed], [], model="minilm", k=10, min_score=0.0, filters=by_view,
                                   api_name="/refine")
    assert records and {r["view"] for r in records} == {view}
    plain = client.predict("radiograph", model="tfidf", k=10, category="hand", min_score=0.0, api_name="/search_text")
    as_filter = client.predict("radiograph", model="tfidf", k=10, min_score=0.0, filters={"category": "hand"},
                               api_name="/search_text")
    assert plain[1] == as_filter[1]
    with pytest.raises(AppError, match="Unknown filter field 'sex'; this index can filter on"):
        client.predict("knee", filters={"sex": "F"}, api_name="/search_text")
    with pytest.raises(AppError, match="Unknown view 'oblique'; choose from"):
        client.predict(item_id, filters={"view": "oblique"}, api_name="/similar")


def test_the_counts_under_the_results_filter_by_a_click(engine):
    from ui import facets

    records = engine.search_text("knee", model="tfidf", k=10, min_score=-1).records()
    update, pairs = facets.counts_update(engine.catalogue, records)
    counts = engine.catalogue.field_counts([r["id"] for r in records])
    assert pairs[0] == ("category", next(iter(counts["category"])))
    assert update.sample_labels[0] == f"category: {pairs[0][1]} · {counts['category'][pairs[0][1]]}"
    source = pairs.index(next(pair for pair in pairs if pair[0] == "source"))
    filters, category = facets.add_filter(source, pairs, {}, "")
    assert filters == {"source": pairs[source][1]} and category == {"__type__": "update"}
    assert facets.add_filter(0, pairs, {}, "")[1] == pairs[0][1]  # a category goes to the category control
    shown, active = facets.active_update({"source": pairs[source][1], "view": ["PA", "AP"]})
    assert active == [("source", pairs[source][1]), ("view", "PA"), ("view", "AP")]
    assert shown.sample_labels[1] == "✕ view: PA"
    assert facets.remove_filter(1, active, {"source": "x", "view": ["PA", "AP"]}) == {"source": "x", "view": "AP"}
    assert facets.remove_filter(0, active, {"source": pairs[source][1]}) == {}


def test_models_lists_every_registered_model(client, engine):
    rows = {row["name"]: row for row in client.predict(api_name="/models")}
    assert set(list_embedders()) <= set(rows)
    for name in engine.policy.models:
        assert rows[name]["status"] == "ready"
        assert rows[name]["dim"] == engine.policy.entries[name].dim
    assert rows["minilm"]["embeds"] == "text" and rows["efficientnet-lite0"]["embeds"] == "image"
    for name, row in rows.items():
        assert row["status"] == "ready" or row["status"].startswith(("not available here: ", "not in this index"))


def test_the_trained_model_answers_text_and_image_queries_from_pixels(client, knee_file):
    _, records, _ = client.predict("knee radiograph", model="xray-lite0", k=5, api_name="/search_text")
    assert len(records) == 5 and sum(r["category"] == "knee" for r in records) >= 3  # images, never captions
    _, path = knee_file
    _, records, suggestion, _ = client.predict(handle_file(str(path)), model="xray-lite0", k=5,
                                               api_name="/search_image")
    assert records[0]["category"] == "knee" and suggestion["label"] == "knee"


def test_refine_moves_a_text_search_by_the_marked_results(client, engine):
    _, records, _ = client.predict("knee radiograph", model="minilm", k=10, api_name="/search_text")
    relevant, irrelevant = [records[0]["id"], records[1]["id"]], [records[-1]["id"]]
    gallery, refined, status = client.predict("knee radiograph", relevant, irrelevant, model="minilm", k=10,
                                              api_name="/refine")
    check_results(gallery, refined, k=10)
    expected = engine.refine("knee radiograph", relevant, irrelevant, model="minilm", k=10)
    assert [r["id"] for r in refined] == [hit.id for hit in expected]
    _, fresh, _ = client.predict("knee radiograph", relevant, irrelevant, model="minilm", k=10, exclude_judged=True,
                                 api_name="/refine")
    assert not {r["id"] for r in fresh} & {*relevant, *irrelevant}


def test_quick_clicks_that_mark_results_are_each_kept(engine):
    """A click made while the previous mark is still on its round trip is queued, not dropped, and toggles the marks
    the previous click left (held by the server, not read from the lists on the page, which may be stale)."""
    from types import SimpleNamespace

    from ui.components import MARK_IRRELEVANT, MARK_RELEVANT, SHOW, toggle_mark

    toggles = [fn for fn in app.build_demo(engine).fns.values() if fn.name == "toggle_mark"]
    assert len(toggles) >= 2  # the text and the image tab
    for fn in toggles:
        assert fn.trigger_mode == "multiple" and fn.concurrency_limit == 1
        assert isinstance(fn.inputs[-1], gr.State) and fn.outputs[-1] is fn.inputs[-1]
    records = [{"id": f"row-{i}"} for i in range(5)]
    marks = ([], [])
    for mode, index in ((MARK_RELEVANT, 0), (MARK_RELEVANT, 2), (MARK_IRRELEVANT, 4), (SHOW, 1),
                        (MARK_IRRELEVANT, 0), (MARK_RELEVANT, 2)):
        marks = toggle_mark(records, mode, marks, SimpleNamespace(index=index))[-1]
    assert marks == ([], ["row-4", "row-0"])  # row-0 moved lists, row-2 unmarked by a second click, SHOW marks nothing


def test_refine_takes_an_image_or_a_collection_id_as_the_original_query(client, knee_file):
    item_id, path = knee_file
    _, records, _ = client.predict(item_id, k=10, model="xray-lite0", api_name="/similar")
    same = [r["id"] for r in records if r["label"] == records[0]["label"]][:2]
    _, by_image, _ = client.predict("", same, [], model="xray-lite0", image=handle_file(str(path)),
                                    api_name="/refine")
    assert by_image[0]["category"] == "knee"
    _, by_id, _ = client.predict(item_id, same, [], model="xray-lite0", exclude_judged=True, api_name="/refine")
    assert item_id not in {r["id"] for r in by_id} and by_id[0]["category"] == "knee"
    with pytest.raises(AppError, match="Mark at least one"):
        client.predict("knee", [], [], model="minilm", api_name="/refine")


def test_image_and_text_through_the_api(client, knee_file):
    _, path = knee_file
    _, plain, _, _ = client.predict(handle_file(str(path)), model="xray-lite0", k=10, api_name="/search_image")
    _, zero, _, _ = client.predict(handle_file(str(path)), model="xray-lite0", k=10, text="chest x-ray",
                                   text_weight=0.0, api_name="/search_image")
    assert [r["id"] for r in zero] == [r["id"] for r in plain]
    _, steered, _, _ = client.predict(handle_file(str(path)), model="xray-lite0", k=10, text="chest x-ray",
                                      text_weight=0.8, api_name="/search_image")
    assert sum(r["category"] == "chest" for r in steered) > sum(r["category"] == "chest" for r in plain)
    with pytest.raises(AppError, match="cannot add words"):
        client.predict(handle_file(str(path)), model="efficientnet-lite0", text="chest", api_name="/search_image")


def test_explain_returns_both_images_with_their_heat_maps(client, knee_file, engine):
    item_id, path = knee_file
    result_id = engine.similar(item_id, model="xray-lite0", k=1)[0].id
    query_overlay, result_overlay, note = client.predict(handle_file(str(path)), result_id, model="xray-lite0",
                                                         api_name="/explain")
    with Image.open(query_overlay) as query, Image.open(result_overlay) as result:
        assert query.size == load_image(str(path)).size
        assert result.size == engine.catalogue.image(result_id).size
        assert query.mode == "RGB" and len(set(query.getdata())) > 50  # coloured, not the gray image
    assert "regions that drive the similarity" in note and "**xray-lite0**, score 0." in note
    by_id = client.predict(None, result_id, model="efficientnet-lite0", query_id=item_id, api_name="/explain")
    assert "efficientnet-lite0" in by_id[2]
    with pytest.raises(AppError, match="No image with id"):
        client.predict(handle_file(str(path)), "no/such-id", api_name="/explain")
    with pytest.raises(AppError, match="No image with id"):  # an id is looked up, never read as a server path
        client.predict(None, result_id, query_id=str(path), api_name="/explain")


def test_models_show_the_evaluation_figures_of_the_index(engine, monkeypatch):
    measured = {"models": {  # as read from the index's evaluation summary
        "tfidf": {"indexes": "text", "image_category_p@5": None, "text_category_p@5": 0.61234},
        "efficientnet-lite0": {"indexes": "image", "image_category_p@5": 0.9, "text_category_p@5": None}}}
    monkeypatch.setattr(engine.policy, "evaluation", lambda: EvaluationSummary.from_dict(measured))
    rows = {row["name"]: row for row in app.Handlers(engine).models()}
    assert rows["tfidf"]["text_category_p@5"] == 0.612 and rows["tfidf"]["image_category_p@5"] is None
    assert rows["efficientnet-lite0"]["image_category_p@5"] == 0.9
    assert "indexes" not in rows["tfidf"] and rows["minilm"]["text_category_p@5"] is None


def test_the_cli_models_verb_and_the_models_tab_show_one_table(engine, capsys):
    import json

    from retrieval import cli
    from retrieval.policy import INDEX_COLUMNS, REGISTRY_COLUMNS, model_rows
    from ui import render

    assert cli.main(["models", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == model_rows()  # the registry alone: no index is named
    tab = app.Handlers(engine).models()
    assert tab == model_rows(engine.policy)  # the same rows, with the index's status and columns added
    assert [list(row)[:len(REGISTRY_COLUMNS)] for row in printed + tab] == [list(REGISTRY_COLUMNS)] * len(printed + tab)
    by_name = {row["name"]: row for row in tab}
    for row in printed:  # what the registry says of a model is the same in both
        assert {key: by_name[row["name"]][key] for key in ("family", "embeds", "weights")} == \
            {key: row[key] for key in ("family", "embeds", "weights")}
    models, _ = render.model_tables(tab)
    assert models["headers"] == [*REGISTRY_COLUMNS, *INDEX_COLUMNS] == list(tab[0])[:len(models["headers"])]
    assert len(models["column_widths"]) == len(models["headers"])


@pytest.mark.parametrize("args, options, message", [
    (("",), {"api_name": "/search_text"}, "query is empty"),
    (("   ",), {"api_name": "/search_text"}, "query is empty"),
    (("knee",), {"model": "no-such-model", "api_name": "/search_text"}, "not in the list of choices"),
    (("knee",), {"model": "efficientnet-lite0", "api_name": "/search_text"}, "not in the list of choices"),
    (("knee",), {"k": 50, "api_name": "/search_text"}, "greater than maximum"),
    (("knee",), {"category": "elbow", "api_name": "/search_text"}, "not in the list of choices"),
    ((None,), {"api_name": "/search_image"}, "Upload an image"),
    (("no/such-id",), {"api_name": "/similar"}, "No image with id"),
])
def test_invalid_input_gives_a_message(client, args, options, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, **options)


def test_non_image_files_are_refused_with_the_supported_formats(client, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(AppError, match="not an image that can be read .*DICOM"):
        client.predict(handle_file(str(text)), api_name="/search_image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty file"):
        client.predict(handle_file(str(empty)), api_name="/search_image")


def test_oversized_files_are_refused_and_the_app_keeps_serving(client, served, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the app's limit
        client.predict(handle_file(str(big)), api_name="/search_image")
    with big.open("rb") as handle:  # and the server refuses it too
        response = httpx.post(served[1] + "gradio_api/upload", files={"files": ("big.png", handle)}, timeout=60)
    assert response.status_code == 413
    _, records, _ = client.predict("knee", api_name="/search_text")
    assert records


def test_main_without_index_or_collection_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("XRAY_COLLECTION", raising=False)
    assert app.main(["--index", str(tmp_path / "nothing-here")]) == 2
    message = capsys.readouterr().err
    assert "python -m retrieval build --collection" in message and "python app.py --collection" in message


def test_mcp_tools_are_the_named_endpoints_with_their_docstrings(subset_index):
    pytest.importorskip("mcp", reason="the MCP extra is not installed (pip install 'mcp>=1.21,<2')")
    import httpx
    with served_app(subset_index, mcp=True) as (_, url):
        tools = httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()
    described = {tool["name"]: tool["description"] for tool in tools}
    assert set(described) == {name.lstrip("/") for name in ENDPOINTS}
    assert "text query" in described["search_text"] and "not a diagnosis" in described["search_image"]


def test_mcp_flag_without_the_package_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(app.importlib.util, "find_spec", lambda name: None)
    assert app.main(["--mcp"]) == 2
    assert "pip install" in capsys.readouterr().err
