"""The hybrid text model: fusion maths on hand-made rankings, weights fitted on training queries only, the severe
grade first, and the hybrid as the default text model of an index that has its components."""

import csv
import json

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.errors import BadQuery
from retrieval.evaluation.queries import TEST, TRAIN, TextQuery, in_split, load_queries
from retrieval.hybrid import HYBRID, Fusion, candidate_features, fit_fusion
from retrieval.ranking import spread_duplicates
from retrieval.search import SearchEngine

# --- fusion maths ----------------------------------------------------------------------------------------------

EVEN = Fusion({"a": (4.0, 2.0), "b": (4.0, 2.0)}, bias=-3.0)


def test_a_row_both_components_rank_first_is_fused_first_and_scores_are_chances():
    lists = {"a": [(7, 0.9), (3, 0.8), (5, 0.1)], "b": [(7, 0.7), (5, 0.6), (3, 0.2)]}
    fused = EVEN.fuse(lists)
    assert [row for row, _ in fused] == [7, 3, 5]  # 3 and 5 trade places between a and b; 3's lead is larger
    scores = [score for _, score in fused]
    assert all(0.0 <= score <= 1.0 for score in scores) and scores == sorted(scores, reverse=True)


def test_a_row_a_component_did_not_return_takes_that_lists_last_score():
    rows, features = candidate_features({"a": [(1, 0.9), (2, 0.5)], "b": [(3, 0.4)]}, ["a", "b"])
    assert list(rows) == [1, 2, 3]
    # per component: score, gap to its best, z-score in its list (a's scores: mean 0.7, std 0.2; b's one score: 0)
    np.testing.assert_allclose(features, [[0.9, 0.0, 1.0, 0.4, 0.0, 0.0],    # row 1: b's only (last) score, gap 0
                                          [0.5, -0.4, -1.0, 0.4, 0.0, 0.0],
                                          [0.5, -0.4, -1.0, 0.4, 0.0, 0.0]], atol=1e-5)  # row 3: a's last score


def test_weights_follow_the_component_whose_top_rows_are_relevant():
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(30):
        relevant = set(rng.choice(100, 10, replace=False).tolist())
        good = sorted(range(100), key=lambda row: (row not in relevant, row))  # relevant rows first
        noise = rng.permutation(100).tolist()
        lists = {"good": [(row, 1 - i / 100) for i, row in enumerate(good)],
                 "noise": [(row, 1 - i / 100) for i, row in enumerate(noise)]}
        examples.append((lists, relevant))
    fusion = fit_fusion(examples, ["good", "noise"])
    assert sum(fusion.weights["good"]) > 5 * abs(sum(fusion.weights["noise"]))
    assert fusion.fitted_on["examples"] == 3000 and fusion.fitted_on["relevant"] == 300


def test_a_fusion_reads_back_from_its_json_and_keeps_only_components_that_are_there():
    fusion = Fusion.from_dict(json.loads(json.dumps(EVEN.to_dict())))
    assert fusion == EVEN
    assert fusion.restricted(["a", "b", "c"]).components == ["a", "b"] and fusion.restricted(["a"]) is None
    assert Fusion.from_dict({"weights": "nonsense"}) is None


def test_a_fusion_fitted_before_the_z_feature_reads_with_a_z_weight_of_0_and_scores_as_it_did():
    old = Fusion.from_dict({"bias": -3.0, "weights": {"a": {"score": 4.0, "gap": 2.0}, "b": {"score": 4.0, "gap": 2.0}}})
    assert old.weights["a"] == (4.0, 2.0, 0.0)
    lists = {"a": [(7, 0.9), (3, 0.8), (5, 0.1)], "b": [(7, 0.7), (5, 0.6), (3, 0.2)]}
    _, features = candidate_features(lists, ["a", "b"])
    by_hand = 1 / (1 + np.exp(-(features[:, [0, 1, 3, 4]] @ [4.0, 2.0, 4.0, 2.0] - 3.0)))
    np.testing.assert_allclose(old.score(features), by_hand)


def test_a_fitted_fusion_becomes_the_shipped_default_in_one_step(tmp_path, monkeypatch):
    from retrieval import hybrid

    monkeypatch.setattr(hybrid, "SHIPPED_FUSION", tmp_path / "default_fusion.json")
    hybrid.ship_fusion(EVEN.to_dict())
    shipped = hybrid._shipped_fusion()
    assert shipped.weights == EVEN.weights and shipped.fitted_on["shipped"] is True
    with pytest.raises(ValueError, match="Not a fitted fusion"):
        hybrid.ship_fusion({"weights": "nonsense"})
    assert hybrid.DEFAULT_FUSION.searched == ["tfidf", "tfidf-chars", "minilm", "xray-lite0"]  # the shipped file
    assert hybrid.DEFAULT_FUSION.expanded == hybrid.EXPANDED == ("tfidf", "minilm")
    assert hybrid.DEFAULT_FUSION.first_pass is not None


# --- the diversity rule never lifts another finding above an exact match ---------------------------------------

class _Catalogue:
    def __init__(self, rows):
        self.texts = [text for text, _ in rows]
        self._labels = [label for _, label in rows]

    def value(self, row, name):
        return "knee" if name == "category" else self._labels[row]


def test_severe_returns_the_severe_grade_first_even_when_a_milder_grade_scores_within_the_margin():
    catalogue = _Catalogue([("severe, left", "kl-4")] * 3 + [("moderate", "kl-3"), ("severe, right", "kl-4")])
    found = [(0, 0.80), (1, 0.80), (2, 0.80), (3, 0.78), (4, 0.77)]
    ordered = spread_duplicates(found, catalogue, k=4)
    assert [catalogue.value(row, "label") for row, _ in ordered] == ["kl-4"] * 4
    assert [row for row, _ in ordered][:2] == [0, 4]  # another caption of the severe grade is still spread up


# --- the query file ------------------------------------------------------------------------------------------

def test_the_query_file_has_a_train_and_a_test_split_in_every_category():
    version, queries = load_queries()
    assert version == 2 and len(queries) >= 120
    for category in {q.category for q in queries}:
        splits = {q.split for q in queries if q.category == category}
        assert splits == {TRAIN, TEST}, category
    assert set(in_split(queries, TRAIN)).isdisjoint(in_split(queries, TEST))
    assert len(in_split(queries, TRAIN)) + len(in_split(queries, TEST)) == len(queries)


def test_the_query_file_covers_every_category_and_label_of_the_collection(collection):
    with (collection / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    _, queries = load_queries()
    asked = {(q.category, label) for q in queries for label in q.labels}
    assert {q.category for q in queries} == {row["category"] for row in rows}
    assert {(row["category"], row["label"]) for row in rows if row["label"]} <= asked


@pytest.mark.parametrize("name", ["text_queries_fresh.json", "text_queries_fresh_b.json",
                                  "text_queries_fresh_c.json", "text_queries_fresh_d.json"])
def test_a_fresh_query_set_only_judges_and_shares_no_query_with_the_packaged_file(name, collection):
    """The fresh sets were written after the hybrid's choices to measure it on queries nothing was chosen on:
    every query is a test query, none repeats a packaged query or another fresh set's, and each asks for labels
    the collection has."""
    import re

    from retrieval.evaluation.queries import QUERIES_FILE

    def words(text):
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    _, fresh = load_queries(QUERIES_FILE.with_name(name))
    others = [q for other in QUERIES_FILE.parent.glob("*.json") if other.name != name
              for q in load_queries(other)[1]]
    assert {q.split for q in fresh} == {TEST} and len(fresh) >= 60
    assert not {words(q.text) for q in fresh} & {words(q.text) for q in others}
    with (collection / "metadata.csv").open(newline="") as handle:
        held = {(row["category"], row["label"]) for row in csv.DictReader(handle)}
    assert {(q.category, label) for q in fresh for label in q.labels} <= held
    assert {q.category for q in fresh} == {category for category, _ in held}


def test_a_version_1_file_still_reads_and_a_version_2_query_needs_a_split(tmp_path):
    old = tmp_path / "v1.json"
    old.write_text(json.dumps({"version": 1, "queries": [{"text": "knee", "category": "knee"}]}))
    assert load_queries(old) == (1, [TextQuery("knee", "knee")])
    bad = tmp_path / "v2.json"
    bad.write_text(json.dumps({"version": 2, "queries": [{"text": "knee", "category": "knee"}]}))
    with pytest.raises(Exception, match="split"):
        load_queries(bad)


# --- fitted on train queries only, and the default text model -------------------------------------------------

KNEE_ROWS = [{"file_name": f"knee/k{grade}{i}.png", "category": "knee", "label": f"kl-{grade}",
              "caption": "knee radiograph", "kind": "stripes"} for grade in (3, 4) for i in range(3)]
CHEST_ROWS = [{"file_name": f"chest/c{i}.png", "category": "chest", "label": "normal", "caption": "chest radiograph",
               "kind": "bright"} for i in range(4)]


@pytest.fixture
def hybrid_engine(tmp_path, fake_models):
    """Keywords and TF-IDF over ten rows, with a fusion fitted on a train split written into the generation."""
    build_test_index(KNEE_ROWS + CHEST_ROWS, tmp_path / "index", ["keywords", "tfidf", "brightness"])
    return SearchEngine(tmp_path / "index")


def _fit(engine, queries, tmp_path):
    from retrieval.evaluation.hybrid_fit import fit_hybrid
    from retrieval.evaluation.index_access import IndexAccess

    index = IndexAccess(engine)
    categories = np.asarray([r["category"] for r in index.records], dtype=object)
    labels = np.asarray([r["label"] for r in index.records], dtype=object)
    return fit_hybrid(index, queries, categories, labels, "test queries")


TRAIN_QUERIES = [TextQuery("severe knee osteoarthritis", "knee", ("kl-4",), TRAIN),
                 TextQuery("moderate knee osteoarthritis", "knee", ("kl-3",), TRAIN),
                 TextQuery("chest", "chest", (), TRAIN)]


def test_the_fusion_is_fitted_on_train_queries_only(hybrid_engine, tmp_path):
    first = _fit(hybrid_engine, TRAIN_QUERIES + [TextQuery("knee", "knee", (), TEST)], tmp_path)
    changed = _fit(hybrid_engine, TRAIN_QUERIES + [TextQuery("chest film", "knee", ("kl-3",), TEST)], tmp_path)
    assert first.components == ["keywords", "tfidf", "feedback"] and first.fitted_on["queries"] == 3
    assert first.first_pass.components == ["keywords", "tfidf"]  # whose top rows feed back, fitted first
    assert first.weights == changed.weights and first.bias == changed.bias  # test queries never move a weight
    assert hybrid_engine.generation.read_fusion() == changed.to_dict()  # written into the index generation


def test_the_hybrid_is_the_default_text_model_and_the_single_models_still_answer(hybrid_engine, tmp_path):
    policy = hybrid_engine.policy
    assert policy.fusion() is None and HYBRID not in policy.models_for("text")  # the shipped fusion fuses tfidf only
    _fit(hybrid_engine, TRAIN_QUERIES, tmp_path)
    assert policy.models_for("text")[0] == HYBRID and policy.default_model("text") == HYBRID
    result = hybrid_engine.search_text("severe knee osteoarthritis", k=3)
    assert result.model == HYBRID and [hit.label for hit in result] == ["kl-4"] * 3  # the severe grade first
    assert all(0.0 <= hit.score <= 1.0 for hit in result)
    assert hybrid_engine.search_text("severe knee osteoarthritis", k=3, min_score=result[1].score).hits == \
        [hit for hit in result.hits if hit.score >= result[1].score]
    assert hybrid_engine.search_text("chest", k=2, category="knee").hits[0].category == "knee"  # filters apply
    assert hybrid_engine.search_text("knee", model="tfidf", k=2).model == "tfidf"
    assert hybrid_engine.refine("knee", relevant=["knee/k40"]).model in ("keywords", "tfidf")  # has vectors
    assert hybrid_engine.similar("knee/k40").model == "brightness"
    with pytest.raises(BadQuery, match="no vectors of its own"):
        hybrid_engine.similar("knee/k40", model=HYBRID)


def test_after_evaluation_the_hybrid_leads_and_the_train_queries_weigh_label_as_much_as_category(hybrid_engine,
                                                                                                  tmp_path):
    _fit(hybrid_engine, TRAIN_QUERIES, tmp_path)
    train = {"keywords": (0.87, 0.60), "tfidf": (0.80, 0.70)}  # keywords: the better category, the worse mean
    test = {"hybrid": (0.80, 0.50), "keywords": (0.97, 0.65), "tfidf": (0.74, 0.49)}  # these report, never choose
    hybrid_engine.generation.write_evaluation({"models": {
        name: {"text_category_p@5": test[name][0], "text_label_p@5": test[name][1],
               **({"text_train_category_p@5": train[name][0], "text_train_label_p@5": train[name][1]}
                  if name in train else {})} for name in test}})
    assert hybrid_engine.policy.default_model("text") == HYBRID  # by design, whatever the test queries say
    assert hybrid_engine.policy.default_model("text", fused=False) == "tfidf"  # 0.75 beats 0.735 on train
    hybrid_engine.generation.write_evaluation({"models": {
        name: {"text_train_category_p@5": category, "text_train_label_p@5": label + 0.06 * (name == "keywords")}
        for name, (category, label) in train.items()}})
    assert hybrid_engine.policy.default_model("text", fused=False) == "keywords"  # now 0.765 beats 0.75
