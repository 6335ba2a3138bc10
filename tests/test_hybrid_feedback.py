"""The hybrid's pseudo-relevance feedback: the first pass's top rows' TF-IDF vectors, weighted by fused score and
mixed with the query's, are searched as one more fused list; both fits come from the training queries; a fusion
keeps feedback only where its model and a first pass remain; the engine ranks with it."""

import json

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.hybrid import FEEDBACK, FEEDBACK_MIX, FEEDBACK_ROWS, Fusion, feedback_list, fit_with_feedback
from retrieval.policy import model_rows
from retrieval.search import SearchEngine


def test_the_feedback_query_mixes_the_query_with_the_score_weighted_mean_of_the_top_rows():
    vectors = {0: [1.0, 0.0, 0.0], 1: [0.0, 1.0, 0.0], 2: [0.0, 0.0, 1.0]}
    asked = {}

    def nearest(model, vector, n):
        asked.update(model=model, vector=vector, n=n)
        return [(9, 0.5)]

    rows = lambda model, wanted: np.asarray([vectors[row] for row in wanted])  # noqa: E731
    first = [(0, 0.6), (1, 0.2)] + [(2, 0.1)] * FEEDBACK_ROWS  # only the top FEEDBACK_ROWS rows feed back
    assert feedback_list(first, np.asarray([0.0, 0.0, 1.0]), rows, nearest, 50) == [(9, 0.5)]
    mean = np.asarray([0.6, 0.2, 0.1 * (FEEDBACK_ROWS - 2)]) / (0.6 + 0.2 + 0.1 * (FEEDBACK_ROWS - 2))
    expected = (1 - FEEDBACK_MIX) * np.asarray([0.0, 0.0, 1.0]) + FEEDBACK_MIX * mean / np.linalg.norm(mean)
    np.testing.assert_allclose(asked["vector"], expected / np.linalg.norm(expected), atol=1e-6)
    assert asked["model"] == "tfidf" and asked["n"] == 50
    assert feedback_list([], np.ones(3), rows, nearest, 50) == []  # nothing ranked: nothing to feed back
    assert feedback_list(first, None, rows, nearest, 50) == []  # no query vector of the feedback model


def test_both_fits_come_from_the_training_queries_and_the_feedback_list_weighs_in_where_it_finds_the_rows():
    rng = np.random.default_rng(1)
    examples, relevant_of = [], []
    for _ in range(20):
        relevant = set(rng.choice(60, 6, replace=False).tolist())
        noise = [(int(row), 1 - i / 60) for i, row in enumerate(rng.permutation(60))]
        examples.append(({"tfidf": noise, "minilm": noise[::-1]}, relevant))
        relevant_of.append(relevant)
    found = lambda i, first: [(row, 1.0 - j / 60) for j, row in enumerate(  # noqa: E731 - feedback finds them
        sorted(range(60), key=lambda row: (row not in relevant_of[i], row)))]
    fusion = fit_with_feedback(examples, ["tfidf", "minilm"], found)
    assert fusion.components == ["tfidf", "minilm", FEEDBACK] and fusion.searched == ["tfidf", "minilm"]
    assert fusion.first_pass.components == ["tfidf", "minilm"] and fusion.first_pass.first_pass is None
    assert sum(fusion.weights[FEEDBACK]) > 5 * abs(sum(fusion.weights["tfidf"]))
    assert Fusion.from_dict(json.loads(json.dumps(fusion.to_dict()))) == fusion
    assert Fusion.from_dict({**fusion.to_dict(), "first_pass": {"weights": "nonsense"}}) is None


def test_feedback_stays_only_while_its_model_and_a_first_pass_do():
    first = Fusion({"tfidf": (1, 1), "minilm": (1, 1), "xray": (1, 1)}, -1.0)
    fusion = Fusion({"tfidf": (1, 1), "minilm": (1, 1), "xray": (1, 1), FEEDBACK: (2, 2)}, -1.0, first_pass=first)
    kept = fusion.restricted(["tfidf", "minilm"])
    assert kept.components == ["tfidf", "minilm", FEEDBACK] and kept.first_pass.components == ["tfidf", "minilm"]
    without = fusion.restricted(["minilm", "xray"])  # no TF-IDF: no feedback
    assert without.components == ["minilm", "xray"] and without.first_pass is None
    assert fusion.restricted(["tfidf"]) is None  # feedback alone is not a second component


ROWS = ([{"file_name": f"chest/c{i}.png", "category": "chest", "label": "normal", "caption": "chest radiograph",
          "kind": "bright"} for i in range(3)]  # the chest rows first: ties among unmatched rows list them first
        + [{"file_name": f"knee/k{i}.png", "category": "knee", "label": "kl-2", "caption": caption, "kind": "stripes"}
           for i, caption in enumerate(["knee radiograph", "knee radiograph", "knee radiograph, narrowing"])])


@pytest.mark.parametrize("with_feedback", [False, True])
def test_the_engine_ranks_with_the_feedback_list(tmp_path, fake_models, with_feedback):
    build_test_index(ROWS, tmp_path / "index", ["keywords", "tfidf", "brightness"])
    engine = SearchEngine(tmp_path / "index")
    first = Fusion({"keywords": (0.0, 0.0, 0.0), "tfidf": (5.0, 5.0, 0.0)}, bias=-2.0)
    fusion = Fusion({**first.weights, FEEDBACK: (5.0, 5.0, 0.0)}, bias=-2.0, first_pass=first)
    engine.generation.write_fusion((fusion if with_feedback else first).to_dict())
    found = engine.search_text("narrowing", model="hybrid", k=3, min_score=0)
    assert found.hits[0].id == "knee/k2"  # the one row whose words match
    knees = [hit.category for hit in found].count("knee")
    assert knees == 3 if with_feedback else knees < 3  # feedback brings the rows like it; without, ties decide
    detail = next(row["detail"] for row in model_rows(engine.policy) if row["name"] == "hybrid")
    assert detail.startswith("fuses keywords, tfidf") and ("feeds back" in detail) == with_feedback


def test_the_feedback_rows_vectors_are_the_stored_ones_in_the_order_asked(tmp_path, fake_models):
    build_test_index(ROWS, tmp_path / "index", ["keywords", "tfidf", "brightness"])
    engine = SearchEngine(tmp_path / "index")  # its dataset has the FAISS indexes attached
    rows = [4, 0, 4, 2]
    for model in ("tfidf", "brightness"):
        assert np.array_equal(engine.row_vectors(model, rows), engine.vectors(model)[rows])
    selection = engine.generation.load_dataset().select([5, 3, 1])  # row numbers of a selection are its own
    assert np.array_equal(engine.generation.row_vectors("tfidf", [0, 2], selection), engine.vectors("tfidf")[[5, 1]])
