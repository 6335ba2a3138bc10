"""The hybrid's text components: letter-n-gram TF-IDF finds a misspelt word that word TF-IDF cannot, and the
hybrid encodes a query with MiniLM once (xray-lite0's text head reads the minilm component's vectors), giving the
vectors the separate path gives."""

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.embedders import embedder_spec, get_embedder
from retrieval.search import SearchEngine

ROWS = ([{"file_name": f"spine/s{i}.png", "category": "spine", "label": "scoliosis", "caption": "whole spine film",
          "kind": "stripes"} for i in range(3)]
        + [{"file_name": f"chest/c{i}.png", "category": "chest", "label": "pneumonia", "caption": "chest radiograph",
            "kind": "bright"} for i in range(3)]
        + [{"file_name": f"knee/k{i}.png", "category": "knee", "label": "kl-2", "caption": "knee radiograph",
            "kind": "disc"} for i in range(3)])


@pytest.fixture
def text_engine(tmp_path):
    build_test_index(ROWS, tmp_path / "index", ["tfidf", "tfidf-chars"])
    return SearchEngine(tmp_path / "index")


@pytest.mark.parametrize("typed, category", [("scolliosis", "spine"), ("pnuemonia", "chest"), ("knea", "knee")])
def test_a_misspelt_word_finds_its_rows_by_letter_n_grams_where_word_tfidf_finds_none(text_engine, typed, category):
    found = text_engine.search_text(typed, model="tfidf-chars", k=3)
    assert [hit.category for hit in found] == [category] * 3
    assert text_engine.search_text(typed, model="tfidf", k=3).hits == []  # no word of it is in the vocabulary


def test_the_spelled_word_still_ranks_its_rows_first_and_nonsense_finds_nothing(text_engine):
    assert [hit.label for hit in text_engine.search_text("scoliosis", model="tfidf-chars", k=3)] == ["scoliosis"] * 3
    assert text_engine.search_text("zzqx", model="tfidf-chars", k=3).hits == []  # no shared letter pieces


def test_letter_n_grams_are_a_component_the_hybrid_fuses_and_their_state_round_trips(text_engine, tmp_path):
    from retrieval.evaluation.index_access import IndexAccess

    assert IndexAccess(text_engine).fusion_components() == ["tfidf", "tfidf-chars"]
    fitted = get_embedder("tfidf-chars")
    fitted.fit(["whole spine film scoliosis", "chest radiograph pneumonia"])
    fitted.save_state(tmp_path / "state")
    restored = embedder_spec("tfidf-chars").factory()
    restored.load_state(tmp_path / "state")
    texts = ["scolliosis", "chest film"]
    np.testing.assert_allclose(restored.embed_texts(texts), fitted.embed_texts(texts), atol=1e-6)
    assert embedder_spec("tfidf-chars").version != embedder_spec("tfidf").version


# --- one MiniLM encoding per hybrid query ------------------------------------------------------------------------

QUERIES = ["severe knee osteoarthritis", "scolliosis", "broken wrist", "CXR"]


@pytest.mark.usefixtures("real_models")
def test_the_text_head_reads_the_minilm_components_vectors_and_gives_the_separate_paths_vectors():
    xray, minilm = get_embedder("xray-lite0"), get_embedder("minilm")
    assert xray.text_input == "minilm"
    shared = xray.embed_text_vectors(minilm.embed_texts(QUERIES))
    separate = xray.embed_texts(QUERIES)
    assert shared.shape == separate.shape and shared.dtype == np.float32
    assert np.min(np.sum(shared * separate, axis=1)) > 0.999  # bf16 MiniLM beside fp32: the same direction


@pytest.mark.usefixtures("real_models")
def test_a_hybrid_query_encodes_minilm_once(tmp_path, monkeypatch):
    from retrieval.embedders import xray_lite0

    build_test_index(ROWS, tmp_path / "index", ["tfidf"])
    encoder = SearchEngine(tmp_path / "index").encoder
    calls = []
    original = xray_lite0.encode_texts
    monkeypatch.setattr(xray_lite0, "encode_texts", lambda texts: calls.append(texts) or original(texts))
    models = ["tfidf", "xray-lite0", "minilm"]
    vectors = encoder.text_per_model(models, QUERIES[0])
    assert list(vectors) == models and calls == []  # xray-lite0 never encoded the text itself
    np.testing.assert_array_equal(vectors["minilm"], encoder.texts("minilm", [QUERIES[0]]))
    np.testing.assert_array_equal(vectors["tfidf"], encoder.texts("tfidf", [QUERIES[0]]))
    alone = encoder.text_per_model(["tfidf", "xray-lite0"], QUERIES[0])  # no minilm listed: it reads the text
    assert len(calls) == 1
    assert float(alone["xray-lite0"][0] @ vectors["xray-lite0"][0]) > 0.999
