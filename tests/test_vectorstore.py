"""The FAISS store searches a model whose vectors are nearly all zeros (TF-IDF) as a sparse matrix: the same rows
and scores as FAISS's flat index, with filters and exclusions, while a dense model stays in FAISS."""

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.search import SearchEngine

# a vocabulary large enough that each row's TF-IDF vector is mostly zeros, as on a real collection
WORDS = ["fracture", "knee", "chest", "scoliosis", "caries", "normal", "lateral", "severe", "mild", "hip",
         *(f"term{i}" for i in range(300))]


def collection_rows():  # the same rows for every index here
    rng = np.random.default_rng(0)
    return [{"file_name": f"{part}/r{i}.png", "category": part, "label": "", "view": ["PA", "lateral"][i % 2],
             "caption": " ".join([*rng.choice(WORDS[:10], size=2), *rng.choice(WORDS[10:], size=4)]), "kind": "disc"}
            for part in ("chest", "knee", "spine") for i in range(12)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, module_fake_models):
    index = tmp_path_factory.mktemp("store") / "index"
    build_test_index(collection_rows(), index, ["tfidf", "brightness"])
    return SearchEngine(index)


def faiss_answer(engine, model, query, k, allowed=None):
    """What FAISS's flat index itself answers (the store's path for dense models)."""
    import faiss

    params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    scores, rows = engine.store._dataset.search(model, query, k=k, params=params)
    return [(int(r), float(s)) for s, r in zip(scores, rows) if r >= 0]


@pytest.mark.parametrize("text", ["severe hip fracture", "knee", "chest lateral normal", "zzz unknown"])
def test_tfidf_is_searched_as_a_sparse_matrix_with_faiss_s_rows_and_scores(engine, text):
    query = engine.encoder.texts("tfidf", [text])[0]
    store = engine.store
    for k, filters, exclude in ((5, None, None), (36, None, None), (50, None, None), (4, {"view": "lateral"}, None),
                                (30, {"category": "knee"}, [12, 13]), (3, None, 0)):
        found = store.search("tfidf", query, k, filters=filters, exclude=exclude)
        allowed = store._rows.allowed(filters, exclude)
        expected = faiss_answer(engine, "tfidf", query, k, allowed)
        assert len(found) == len(expected) == min(k, 36 if allowed is None else len(allowed))
        np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-6)
        # the same rows, ties apart (FAISS orders equal scores its own way): here each row in id order
        assert {r for r, s in found if s > expected[-1][1] + 1e-6} == {r for r, s in expected
                                                                      if s > expected[-1][1] + 1e-6}
        assert all(a[1] > b[1] or (a[1] == b[1] and a[0] < b[0]) for a, b in zip(found, found[1:]))
    assert store._sparse["tfidf"] is not None and store._sparse["tfidf"].nnz < 0.5 * np.prod(
        store._sparse["tfidf"].shape)


def test_the_sparse_matrix_made_block_by_block_holds_every_row(engine, monkeypatch):
    from retrieval import vectorstore

    monkeypatch.setattr(vectorstore, "BLOCK", 7)  # 36 rows: six blocks, the last one short
    fresh = SearchEngine(engine.index_dir)
    query = fresh.encoder.texts("tfidf", ["severe hip fracture"])[0]
    found = fresh.store.search("tfidf", query, 36)
    assert fresh.store._sparse["tfidf"].shape[0] == 36
    np.testing.assert_allclose([s for _, s in found], [s for _, s in faiss_answer(fresh, "tfidf", query, 36)],
                               atol=1e-6)


def test_the_engine_s_warm_up_makes_the_sparse_matrix_before_the_first_query(tmp_path, module_fake_models):
    build_test_index(collection_rows(), tmp_path / "index", ["tfidf"])
    warm = SearchEngine(tmp_path / "index")
    assert "tfidf" not in warm.store._sparse
    warm.warm_up()
    assert warm.store._sparse["tfidf"] is not None


def test_a_dense_model_stays_in_faiss_and_an_empty_filter_finds_nothing(engine):
    from conftest import synthetic_image

    found = engine.search_image(synthetic_image("disc"), model="brightness", k=5, min_score=-1)
    assert len(found) == 5 and engine.store._sparse["brightness"] is None
    query = engine.encoder.texts("tfidf", ["knee"])[0]
    assert engine.store.search("tfidf", query, 5, exclude=list(range(36))) == []

