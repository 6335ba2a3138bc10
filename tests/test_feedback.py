"""Refining a search by marking results (Rocchio), image + text queries, and what evaluation says feedback gains."""

from collections import Counter

import numpy as np
import pytest

from retrieval.errors import BadQuery
from retrieval.evaluation.leave_one_out import feedback_gain
from retrieval.evaluation.metrics import rank_leave_one_out
from retrieval.feedback import ALPHA, BETA, GAMMA, rocchio, rocchio_rows

MODELS = ["efficientnet-lite0", "xray-lite0"]


def _labelled(engine, label_of=lambda record: record["label"]):
    groups: dict[tuple, list[str]] = {}
    for item in engine.catalogue.ids:
        record = engine.catalogue.record(item)
        if record["label"]:
            groups.setdefault((record["category"], label_of(record)), []).append(item)
    return groups


def test_rocchio_moves_the_query_toward_the_relevant_and_away_from_the_irrelevant():
    query, good, bad = np.eye(3, dtype=np.float32)
    moved = rocchio(query, good[None], bad[None])
    assert np.isclose(np.linalg.norm(moved), 1.0)
    assert moved[0, 1] > 0 > moved[0, 2]
    expected = ALPHA * query + BETA * good - GAMMA * bad
    assert np.allclose(moved[0], expected / np.linalg.norm(expected))
    assert np.allclose(rocchio(query, np.empty((0, 3)), np.empty((0, 3))), query)


def test_the_batched_rounds_equal_one_round_at_a_time():
    vectors = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    judged = np.array([[1, 2, 3], [4, 5, 6]])
    relevant = np.array([[True, False, True], [False, False, False]])
    batched = rocchio_rows(vectors, np.array([0, 7]), judged, relevant)
    for i, query in enumerate((0, 7)):
        single = rocchio(vectors[query], vectors[judged[i][relevant[i]]], vectors[judged[i][~relevant[i]]])
        assert np.allclose(batched[i], single[0], atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_marking_rows_of_another_label_relevant_moves_the_results_toward_that_label(subset_engine, model):
    engine = subset_engine
    groups = _labelled(engine)
    moved = []
    for (category, label), members in groups.items():
        others = [(key, rows) for key, rows in groups.items() if key[0] == category and key[1] != label
                  and len(rows) >= 4]
        if len(members) < 1 or not others:
            continue
        (_, target), rows = others[0]
        query, relevant = members[0], rows[:3]
        before = Counter(hit.label for hit in engine.similar(query, model=model, k=10) if hit.id not in relevant)
        after = Counter(hit.label for hit in engine.refine(query, relevant, model=model, k=10, exclude_judged=True))
        moved.append(after[target] - before[target])  # rows of the target label other than the ones marked
    assert moved, "the real subset has categories with several labels"
    assert sum(moved) > 0 and sum(change < 0 for change in moved) <= len(moved) // 4, moved


def test_refine_takes_a_text_an_id_or_an_image_and_can_leave_out_what_was_judged(subset_engine):
    engine = subset_engine
    first = engine.search_text("knee radiograph", model="minilm", k=10)
    relevant, irrelevant = [first[0].id, first[1].id], [first[-1].id]
    refined = engine.refine("knee radiograph", relevant, irrelevant, model="minilm", k=10)
    assert refined.model == "minilm" and len(refined) == 10
    fresh = engine.refine("knee radiograph", relevant, irrelevant, model="minilm", k=10, exclude_judged=True)
    assert not {hit.id for hit in fresh} & {*relevant, *irrelevant}

    item = engine.catalogue.ids[0]
    by_id = engine.refine(item, [engine.similar(item, model="xray-lite0", k=1)[0].id], model="xray-lite0",
                          exclude_judged=True)
    assert item not in {hit.id for hit in by_id}
    by_image = engine.refine(engine.catalogue.image(item), relevant, model="xray-lite0")
    assert by_image.model == "xray-lite0" and len(by_image) > 0


@pytest.mark.parametrize("relevant, irrelevant, message", [
    ([], [], "Mark at least one"),
    (["no-such-id"], [], "No image with id"),
    ("one-id", [], "must be a list"),
])
def test_refine_rejects_bad_judgements_clearly(subset_engine, relevant, irrelevant, message):
    with pytest.raises(BadQuery, match=message):
        subset_engine.refine("knee", relevant, irrelevant, model="minilm")


def test_an_image_cannot_be_both_relevant_and_irrelevant(subset_engine):
    item = subset_engine.catalogue.ids[0]
    with pytest.raises(BadQuery, match="both"):
        subset_engine.refine("knee", [item], [item], model="minilm")


def test_image_and_text_with_weight_zero_is_the_plain_image_query(subset_engine):
    engine = subset_engine
    picture = engine.catalogue.image(engine.catalogue.ids[0])
    plain = engine.search_image(picture, model="xray-lite0", k=10)
    with_words = engine.search_image(picture, model="xray-lite0", k=10, text="severe arthritis", text_weight=0.0)
    assert [(h.id, h.score) for h in plain] == [(h.id, h.score) for h in with_words]


def test_words_steer_an_image_query_toward_their_category(subset_engine):
    engine = subset_engine
    catalogue = engine.catalogue
    picture = catalogue.image(next(i for i in catalogue.ids if catalogue.record(i)["category"] == "chest"))
    plain = Counter(hit.category for hit in engine.search_image(picture, model="xray-lite0", k=10))
    steered = Counter(hit.category for hit in engine.search_image(picture, model="xray-lite0", k=10,
                                                                  text="knee radiograph", text_weight=0.8))
    assert steered["knee"] > plain["knee"]


def test_only_models_that_embed_both_take_words(subset_engine):
    assert subset_engine.policy.models_for_image_and_text() == ["xray-lite0"]
    picture = subset_engine.catalogue.image(subset_engine.catalogue.ids[0])
    with pytest.raises(BadQuery, match="cannot add words"):
        subset_engine.search_image(picture, model="efficientnet-lite0", text="knee", text_weight=0.5)
    with pytest.raises(BadQuery, match="text weight"):
        subset_engine.search_image(picture, model="xray-lite0", text="knee", text_weight=1.5)


def test_feedback_gain_is_measured_against_the_plain_ranking_on_the_same_queries():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    key = np.repeat(np.array(["a", "b", "c"], dtype=object), 20)
    vectors = centres[np.repeat(np.arange(3), 20)] + rng.normal(scale=1.5, size=(60, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ranked = rank_leave_one_out(vectors, 10, {})
    result = feedback_gain(vectors, ranked, key, {})
    plain = np.mean(key[ranked[:, :5]] == key[:, None])
    assert result["queries"] == 60 and result["label_p@5"] == pytest.approx(plain, abs=1e-4)
    assert result["refined_label_p@5"] > result["label_p@5"]  # marked-relevant rows pull the query to its cluster
    assert result["gain"] == pytest.approx(result["refined_label_p@5"] - result["label_p@5"], abs=1e-3)
    assert 0.0 <= result["refined_residual_label_p@5"] <= 1.0
