"""The Milvus store answers like the FAISS flat store, on Milvus Lite files in tmp_path.

Ties: rows with the same caption embed identically, so their scores tie exactly. Two exact searches may
list tied rows in another order, and where the k-th place splits a tie each may keep different members;
`assert_same_answer` allows exactly that and nothing else.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.filters import RowFilter
from retrieval.layout import IndexFolder
from retrieval.milvus_store import MilvusStore, collection_key, collection_name, milvus_store
from retrieval.options import QueryOptions
from retrieval.search import store_from_settings
from retrieval.settings import load_settings
from retrieval.vectorstore import faiss_store

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

TIE = 1e-5
TEXT_QUERIES = ["knee", "chest x-ray pneumonia", "wrist fracture", "panoramic dental x-ray", "lumbar spine lateral"]


@pytest.fixture(scope="module")
def indexed(subset_index):
    """(dataset, manifest) of the subset index's current generation."""
    generation = IndexFolder(subset_index).current()
    return generation.load_dataset(), generation.manifest


@pytest.fixture(scope="module")
def milvus_engine(subset_index, tmp_path_factory):
    from retrieval.search import SearchEngine

    uri = tmp_path_factory.mktemp("milvus") / "engine.db"
    engine = SearchEngine(subset_index, vector_store=milvus_store(uri))
    yield engine
    engine.store.close()


@pytest.fixture(scope="module", autouse=True)
def nothing_left_running():
    yield
    from milvus_lite.server_manager import server_manager_instance

    assert not server_manager_instance._servers, "a test left a Milvus Lite server running"


@pytest.fixture
def store(tmp_path):
    with MilvusStore(tmp_path / "store.db") as opened:
        yield opened


def ranking(hits) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in hits]


def tie_groups(scores: list[float]) -> list[list[int]]:
    """Positions grouped into runs of equal scores."""
    groups: list[list[int]] = []
    for position, score in enumerate(scores):
        if groups and abs(scores[groups[-1][-1]] - score) <= TIE:
            groups[-1].append(position)
        else:
            groups.append([position])
    return groups


def assert_same_answer(expected: list[tuple], got: list[tuple]) -> None:
    """Same ids in the same order with the same scores, up to the order of exact ties (see module doc)."""
    assert len(got) == len(expected), (expected, got)
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=TIE), (expected, got)
    groups = tie_groups([s for _, s in expected])
    for positions in groups[:-1]:  # the last run may be cut by k (its tie may go on past the k-th place)
        assert {expected[p][0] for p in positions} == {got[p][0] for p in positions}, (expected, got)


def assert_exact_top_k(matrix: np.ndarray, query: np.ndarray, found, k: int, allowed: np.ndarray) -> None:
    """`found` is a true top-k of the allowed rows: right scores, best first, nothing better left out."""
    truth = matrix @ query
    rows = [row for row, _ in found]
    assert len(rows) == min(k, allowed.size) and len(set(rows)) == len(rows) and set(rows) <= set(allowed.tolist())
    assert [s for _, s in found] == pytest.approx(truth[rows].tolist(), abs=TIE)
    assert all(a >= b - TIE for (_, a), (_, b) in zip(found, found[1:]))
    left_out = np.setdiff1d(allowed, rows)
    if left_out.size and rows:
        assert truth[left_out].max() <= found[-1][1] + TIE


# --- the same answers as FAISS ---------------------------------------------------------------------------
def test_text_queries_answer_as_on_faiss_for_every_text_model(subset_engine, milvus_engine):
    models = subset_engine.policy.models_for("text")
    assert set(models) >= {"tfidf", "minilm"}
    for model in models:
        for text in TEXT_QUERIES:
            for category in (None, "knee", "chest"):
                options = {"model": model, "k": 10, "category": category, "min_score": -1.0}
                assert_same_answer(ranking(subset_engine.search_text(text, **options)),
                                   ranking(milvus_engine.search_text(text, **options)))


def test_image_queries_answer_as_on_faiss_with_the_same_suggestion(subset_engine, milvus_engine):
    models = subset_engine.policy.models_for("image")
    assert "efficientnet-lite0" in models
    for item_id in subset_engine.catalogue.ids[::40]:
        picture = subset_engine.catalogue.image(item_id)
        for model in models:
            for category in (None, "hand"):
                options = {"model": model, "k": 10, "category": category, "min_score": -1.0}
                expected = subset_engine.search_image(picture, **options)
                got = milvus_engine.search_image(picture, **options)
                assert_same_answer(ranking(expected.hits), ranking(got.hits))
                assert got.suggestion == pytest.approx(expected.suggestion, abs=1e-4)


def test_more_like_this_answers_as_on_faiss_for_every_model(subset_engine, milvus_engine):
    for model in subset_engine.policy.models:
        for item_id in subset_engine.catalogue.ids[::9]:
            for category in (None, "fracture"):
                options = {"model": model, "k": 10, "category": category, "min_score": -1.0}
                got = milvus_engine.similar(item_id, **options)
                assert item_id not in [hit.id for hit in got]
                assert_same_answer(ranking(subset_engine.similar(item_id, **options)), ranking(got))


def test_without_ties_the_lists_are_identical(subset_engine, milvus_engine):
    """Image vectors of distinct pictures never tie: the two stores give the very same list."""
    for item_id in subset_engine.catalogue.ids[::15]:
        expected = subset_engine.similar(item_id, model="efficientnet-lite0", k=20, min_score=-1.0)
        got = milvus_engine.similar(item_id, model="efficientnet-lite0", k=20, min_score=-1.0)
        assert [hit.id for hit in got] == [hit.id for hit in expected]


def test_every_answer_is_an_exact_top_k_even_across_ties(indexed, tmp_path):
    dataset, manifest = indexed
    rng = np.random.default_rng(7)
    categories = np.asarray(dataset["category"])
    with MilvusStore(tmp_path / "exact.db") as milvus:
        milvus.sync(dataset, list(manifest.models), "exact")
        for model in manifest.models:
            matrix = np.asarray(dataset.with_format("numpy", columns=[model])[model], dtype=np.float32)
            queries = [matrix[0], matrix[57], rng.normal(size=matrix.shape[1]).astype(np.float32)]
            for query in queries:
                query = query / np.linalg.norm(query)
                for k, category, exclude in [(5, None, None), (20, "knee", None), (10, None, 57), (3, "chest", 0)]:
                    allowed = np.flatnonzero(categories == category) if category else np.arange(len(dataset))
                    allowed = allowed[allowed != exclude]
                    found = milvus.search(model, query, k, category=category, exclude=exclude)
                    assert_exact_top_k(matrix, query, found, k, allowed)


# --- filters and thresholds ------------------------------------------------------------------------------
def test_category_filter_and_min_score_behave_as_on_faiss(subset_engine, milvus_engine):
    for min_score in (0.2, 0.35, 0.99):
        for category in (None, "knee", "dental"):
            options = {"model": "minilm", "k": 20, "category": category, "min_score": min_score}
            expected = subset_engine.search_text("knee radiograph", **options)
            got = milvus_engine.search_text("knee radiograph", **options)
            assert_same_answer(ranking(expected), ranking(got))
            assert all(hit.score >= min_score for hit in got)
            assert all(hit.category == category for hit in got if category)
    assert milvus_engine.search_text("knee", model="minilm", min_score=0.99).hits == []


def filter_combinations(catalogue) -> list[dict]:
    """Several filters over the subset's own fields and values (read from the index, never pinned)."""
    values = catalogue.filter_values()
    source, licence = values["source"][0], values["license"][-1]
    views = [view for view in values["view"] if view]
    return [{"view": views[0]}, {"view": views[:2], "category": "chest"}, {"source": source},
            {"license": [licence, values["license"][0]], "label": values["label"][:3]},
            {"body_part": values["body_part"][0], "view": views}, {"category": ["knee", "hand"]}]


def test_field_filters_answer_as_on_faiss_for_every_kind_of_query(subset_engine, milvus_engine):
    """Text, image, more-like-this and refine, each under several filter combinations: the same answer."""
    catalogue = subset_engine.catalogue
    item_id = catalogue.ids[11]
    picture = catalogue.image(catalogue.ids[70])
    for filters in filter_combinations(catalogue):
        calls = [(lambda e: e.search_text("knee x-ray", model="minilm", k=10, filters=filters, min_score=-1), None),
                 (lambda e: e.search_image(picture, model="xray-lite0", k=10, filters=filters, min_score=-1), None),
                 (lambda e: e.similar(item_id, model="efficientnet-lite0", k=10, filters=filters, min_score=-1),
                  catalogue.row(item_id)),  # the row itself is left out
                 (lambda e: e.refine("chest", [item_id], [], model="tfidf", k=10, filters=filters, min_score=-1),
                  None)]
        for engine_call, exclude in calls:
            expected, got = engine_call(subset_engine), engine_call(milvus_engine)
            assert_same_answer(ranking(expected), ranking(got))
            allowed = catalogue.filters.allowed(QueryOptions(filters=filters).filters, exclude)
            assert len(got) == min(10, allowed.size)  # k results whenever k rows pass
            assert {hit.row for hit in got} <= set(allowed.tolist())


def test_a_collections_extra_fields_filter_alike_in_faiss_and_milvus(tmp_path):
    """An archive's own columns (sex, manufacturer, ...) are filters in both stores with no schema change."""
    from test_filters import archive_like_dataset

    dataset = archive_like_dataset(60)

    class Generation:  # FAISS over the Dataset's vector column, as IndexGeneration.attach_faiss does
        @staticmethod
        def attach_faiss(data, name):
            import faiss

            data.add_faiss_index(name, metric_type=faiss.METRIC_INNER_PRODUCT)

    faiss_side = faiss_store(Generation(), dataset, ["vec"])
    matrix = np.asarray(dataset["vec"], dtype=np.float32)
    with MilvusStore(tmp_path / "extras.db") as milvus:
        milvus.sync(dataset, ["vec"], "extras")
        for filters in ({"sex": ("F",)}, {"manufacturer": ("Borealis",), "age_band": ("60+", "20-39")},
                        {"view": ("lateral",), "sex": ("M",), "category": ("knee", "hand")}):
            for row in (0, 17, 44):
                expected = faiss_side.search("vec", matrix[row], 8, filters=filters, exclude=row)
                got = milvus.search("vec", matrix[row], 8, filters=filters, exclude=row)
                assert [r for r, _ in got] == [r for r, _ in expected]
                rows = RowFilter.of_dataset(dataset).allowed(filters, exclude=row)
                assert_exact_top_k(matrix, matrix[row], got, 8, rows)


def test_filter_values_are_quoted_so_they_cannot_change_the_expression(indexed, store):
    dataset, _ = indexed
    store.sync(dataset, ["tfidf"], "quoting")
    vector = store.vector("tfidf", 0)
    assert store.search("tfidf", vector, 5, category='knee" or category != "') == []
    assert store.search("tfidf", vector, 5, category="back\\slash\nline") == []
    assert store.search("tfidf", vector, 5, filters={'view"] == "" or metadata["view': ("x",)}) == []
    assert store.search("tfidf", vector, 5, filters={"view": ('PA" or id != "',)}) == []
    assert [row for row, _ in store.search("tfidf", vector, 5, category=dataset[0]["category"])][0] == 0


def test_stored_vectors_come_from_the_dataset(indexed, milvus_engine):
    dataset, _ = indexed
    for model in milvus_engine.policy.models:
        assert np.array_equal(milvus_engine.store.vector(model, 3), np.asarray(dataset[3][model], np.float32))


# --- idempotent, incremental, resumable syncs ------------------------------------------------------------
def test_syncing_again_writes_nothing_and_duplicates_nothing(indexed, store):
    dataset, manifest = indexed
    models = list(manifest.models)
    first = store.sync(dataset, models, "again")
    second = store.sync(dataset, models, "again")
    for model in models:
        assert first[model].upserted == len(dataset)
        assert (second[model].upserted, second[model].deleted, second[model].unchanged) == (0, 0, len(dataset))
        assert store.count(model) == len(dataset)


def test_a_new_row_is_one_upsert_and_a_removed_row_one_delete(indexed, store):
    dataset, _ = indexed
    store.sync(dataset.select(range(100)), ["tfidf"], "grow")
    grown = store.sync(dataset.select(range(101)), ["tfidf"], "grow")["tfidf"]
    assert (grown.upserted, grown.deleted, grown.unchanged) == (1, 0, 100)
    assert store.count("tfidf") == 101
    assert store.search("tfidf", store.vector("tfidf", 100), 1)[0][0] == 100

    shrunk = store.sync(dataset.select(range(1, 101)), ["tfidf"], "grow")["tfidf"]
    assert (shrunk.upserted, shrunk.deleted) == (0, 1)
    assert store.count("tfidf") == 100


def test_a_killed_sync_resumes_where_it_stopped(indexed, tmp_path, monkeypatch):
    dataset, _ = indexed
    with MilvusStore(tmp_path / "resume.db", batch_size=50) as store:
        upsert, calls = store._client.upsert, []

        def dies_on_the_second_batch(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed")
            return upsert(*args, **kwargs)

        monkeypatch.setattr(store._client, "upsert", dies_on_the_second_batch)
        with pytest.raises(KeyboardInterrupt):
            store.sync(dataset, ["minilm"], "resume")
        monkeypatch.setattr(store._client, "upsert", upsert)
        resumed = store.sync(dataset, ["minilm"], "resume")["minilm"]
        assert (resumed.upserted, resumed.unchanged) == (len(dataset) - 50, 50)
        assert store.count("minilm") == len(dataset)


def test_an_hnsw_index_replaces_the_flat_one_and_keeps_recall(indexed, tmp_path):
    dataset, _ = indexed
    matrix = np.asarray(dataset.with_format("numpy", columns=["minilm"])["minilm"], dtype=np.float32)
    uri = tmp_path / "hnsw.db"
    with MilvusStore(uri) as flat:
        flat.sync(dataset, ["minilm"], "hnsw")
    with MilvusStore(uri, index="HNSW") as hnsw:
        report = hnsw.sync(dataset, ["minilm"], "hnsw")["minilm"]
        assert report.upserted == 0  # only the index changed
        described = hnsw._client.describe_index(report.collection, "vector")
        assert described["index_type"] == "HNSW"
        recalls = []
        for row in range(0, len(dataset), 6):
            truth = set(np.argsort(-(matrix @ matrix[row]), kind="stable")[:10].tolist())
            truth_floor = np.sort(matrix @ matrix[row])[-10]
            found = hnsw.search("minilm", matrix[row], 10)
            recalls.append(np.mean([r in truth or s >= truth_floor - TIE for r, s in found]))
        assert np.mean(recalls) >= 0.99


# --- wiring ----------------------------------------------------------------------------------------------
def test_collection_names_follow_milvus_rules(indexed):
    _, manifest = indexed
    key = collection_key(manifest)
    assert len(key) == 8
    assert collection_name(key, "efficientnet-lite0") == f"xray_{key}_efficientnet_lite0"


def test_a_local_uri_must_be_a_db_file(tmp_path):
    with pytest.raises(RetrievalError, match=r"\.db"):
        MilvusStore(tmp_path / "milvus")


def test_the_app_reads_its_store_from_the_environment(tmp_path):
    def store_for(environ):
        return store_from_settings(load_settings(environ))

    assert store_for({}) is faiss_store
    assert store_for({"XRAY_STORE": "faiss"}) is faiss_store
    assert store_for({"XRAY_STORE": "milvus", "XRAY_MILVUS_URI": str(tmp_path / "app.db")}) is not faiss_store
    with pytest.raises(RetrievalError, match="XRAY_MILVUS_URI"):
        store_for({"XRAY_STORE": "milvus"})
    with pytest.raises(RetrievalError, match="faiss"):
        store_for({"XRAY_STORE": "elastic"})


def test_the_cli_builds_into_milvus_and_searches_it_like_faiss(real_subset, subset_index, tmp_path, capsys):
    from retrieval.cli import main

    uri = str(tmp_path / "cli.db")
    assert main(["build", "--collection", str(real_subset), "--index", str(subset_index), "--store", "milvus",
                 "--milvus-uri", uri, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert {report["upserted"] for report in built["milvus"].values()} == {built["rows"]}
    answers = {}
    for store in ("faiss", "milvus"):
        assert main(["search", "--index", str(subset_index), "--text", "knee", "--k", "10", "--store", store,
                     "--milvus-uri", uri, "--json"]) == 0
        answers[store] = [(hit["id"], hit["score"]) for hit in json.loads(capsys.readouterr().out)]
    assert_same_answer(answers["faiss"], answers["milvus"])
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)  # the CLI leaves it to process exit; a test cleans up
