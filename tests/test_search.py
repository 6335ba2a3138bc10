"""SearchEngine answers text, image and more-like-this queries; bad queries raise the library's own errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, build_test_index, synthetic_image
from retrieval.errors import BadImage, BadQuery, BrokenIndex, RetrievalError, UnknownEmbedder
from retrieval.evaluation_summary import DEFAULT_IMAGE_FIGURE, DEFAULT_TEXT_FIGURE, EvaluationSummary
from retrieval.schema import FIELDS
from retrieval.ranking import DUPLICATE_MARGIN
from retrieval.search import SearchEngine


@pytest.fixture
def engine(synthetic_collection, tmp_path, fake_models):
    build_test_index(synthetic_collection, tmp_path / "index", ["keywords", "brightness", "tfidf"])
    return SearchEngine(tmp_path / "index")


# --- on the real subset (20 images per category, offline models) -------------------------------------------

def test_image_neighbours_share_the_query_category(subset_engine):
    precisions = []
    for item_id in subset_engine.catalogue.ids:
        hits = subset_engine.similar(item_id, model="efficientnet-lite0", k=5, min_score=-1)
        category = subset_engine.catalogue.record(item_id)["category"]
        precisions.append(np.mean([hit.category == category for hit in hits]))
    assert np.mean(precisions) >= 0.8


def test_keyword_search_for_knee_returns_knee_rows_first(subset_engine):
    hits = subset_engine.search_text("knee", model="tfidf", k=10)
    assert len(hits) == 10 and {hit.category for hit in hits} == {"knee"}


@pytest.mark.parametrize("query, relevant, precision", [
    # a finding, on any body part; MiniLM reads "not fractured" close to "fractured", so one miss of five is allowed
    ("broken wrist", lambda hit: hit.label == "fractured", 0.8),
    ("panoramic dental x-ray", lambda hit: hit.category == "dental", 1.0),
    ("scoliosis of the spine", lambda hit: hit.category == "spine", 1.0),
    ("pneumonia", lambda hit: hit.category == "chest", 1.0)])
def test_semantic_text_search_finds_the_right_images(subset_engine, query, relevant, precision):
    hits = subset_engine.search_text(query, model="minilm", k=5)
    assert len(hits) == 5 and relevant(hits[0]) and np.mean([relevant(hit) for hit in hits]) >= precision


def test_results_are_ranked_by_score_and_carry_every_field(subset_engine):
    hits = subset_engine.similar(subset_engine.catalogue.ids[0], model="efficientnet-lite0", k=8)
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    hits = subset_engine.search_text("chest radiograph", model="minilm", k=8)  # metadata: repeats may yield
    assert hits[0].score == max(hit.score for hit in hits)
    assert all(b.score <= a.score + DUPLICATE_MARGIN for a, b in zip(hits.hits, hits.hits[1:]))
    record = hits[0].to_dict()
    assert set(record) == {"id", "rank", "score", *FIELDS}  # every field the schema declares


def test_a_category_filter_inside_faiss_still_returns_k_results(subset_engine):
    hits = subset_engine.search_text("knee", model="tfidf", k=20, category="hand", min_score=-1)
    assert len(hits) == 20 and {hit.category for hit in hits} == {"hand"}
    image_hits = subset_engine.similar(subset_engine.catalogue.ids[0], k=20, category="dental", min_score=-1)
    assert len(image_hits) == 20 and {hit.category for hit in image_hits} == {"dental"}


def test_field_filters_inside_faiss_still_return_k_results(subset_engine):
    catalogue = subset_engine.catalogue
    view, count = next((v, n) for v, n in catalogue.field_counts(catalogue.ids)["view"].items() if n >= 20)
    hits = subset_engine.search_text("knee", model="tfidf", k=20, filters={"view": view}, min_score=-1)
    assert len(hits) == 20 and {hit.view for hit in hits} == {view}
    both = {"view": view, "category": catalogue.value(int(catalogue.filters.allowed({"view": (view,)})[0]),
                                                      "category")}
    allowed = catalogue.filters.allowed({name: (value,) for name, value in both.items()})
    image_hits = subset_engine.similar(catalogue.ids[0], k=20, filters=both, min_score=-1)
    assert len(image_hits) == min(20, allowed.size - (0 in allowed)) and {hit.row for hit in image_hits} <= set(
        allowed.tolist())


def test_an_image_query_suggests_a_category_as_a_retrieval_statistic(subset_engine, collection):
    path = collection / "knee" / "oai-knee-kl_0001.jpg"
    result = subset_engine.search_image(path, k=5)
    assert result.suggested_category == "knee"
    assert abs(sum(result.suggestion.values()) - 1) < 1e-6
    assert result.hits[0].category == "knee"


def test_more_like_this_excludes_the_query_itself(subset_engine):
    item_id = subset_engine.catalogue.ids[5]
    hits = subset_engine.similar(item_id, k=20, min_score=-1)
    assert len(hits) == 20 and item_id not in [hit.id for hit in hits]


# --- on a synthetic collection with obvious answers --------------------------------------------------------

def test_exact_ranks_with_obvious_embedders(engine):
    assert [h.category for h in engine.search_text("knee", model="keywords", k=3)] == ["knee"] * 3
    result = engine.search_image(synthetic_image("stripes", seed=42), model="brightness", k=3)
    assert [h.category for h in result.hits] == ["knee"] * 3 and result.suggested_category == "knee"


def test_the_minimum_score_filters_and_an_empty_result_is_an_empty_list(engine):
    assert engine.search_text("knee", model="keywords", k=6, min_score=0.99)
    assert len(engine.search_text("knee", model="keywords", k=6, min_score=0.99)) == 3
    assert engine.search_text("elbow", model="keywords", k=5, min_score=0.5).hits == []


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.search_text("   "), BadQuery, "empty"),
    (lambda e: e.search_text("x" * 5000), BadQuery, "limit"),
    (lambda e: e.search_text("knee", model="nope"), UnknownEmbedder, "choose from"),
    (lambda e: e.search_text("knee", model="brightness"), BadQuery, "cannot embed text"),
    (lambda e: e.search_image(synthetic_image("disc"), model="keywords"), BadQuery, "cannot embed image"),
    (lambda e: e.search_text("knee", model="efficientnet-lite0"), UnknownEmbedder, "not in this index"),
    (lambda e: e.search_text("knee", k=0), BadQuery, "from 1 to 20"),
    (lambda e: e.search_text("knee", k=21), BadQuery, "from 1 to 20"),
    (lambda e: e.search_text("knee", category="elbow"), BadQuery, "Unknown category"),
    (lambda e: e.search_text("knee", min_score=2), BadQuery, "minimum score"),
    (lambda e: e.search_image(b"not an image"), BadImage, "not an image"),
    (lambda e: e.search_image(None), BadQuery, "Upload"),
    (lambda e: e.similar("chest/none"), BadQuery, "No image with id"),
])
def test_bad_queries_raise_one_clear_library_error(engine, call, error, message):
    with pytest.raises(error, match=message) as caught:
        call(engine)
    assert isinstance(caught.value, RetrievalError)


def test_a_missing_or_mismatched_index_is_detected_at_load(engine, tmp_path):
    with pytest.raises(BrokenIndex, match="build one"):
        SearchEngine(tmp_path / "nowhere")
    faiss_file = engine.generation.faiss_path("brightness")
    import faiss

    small = faiss.IndexFlatIP(3)
    small.add(np.eye(3, dtype=np.float32))
    faiss.write_index(small, str(faiss_file))
    with pytest.raises(BrokenIndex, match="rebuild"):
        SearchEngine(engine.index_dir)


def test_the_cli_search_prints_json_results(subset_index):
    result = subprocess.run([sys.executable, "-m", "retrieval", "search", "--index", str(subset_index),
                             "--text", "knee", "--model", "tfidf", "--k", "3", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and all(hit["category"] == "knee" for hit in hits)
    bad = subprocess.run([sys.executable, "-m", "retrieval", "search", "--index", str(subset_index), "--text", ""],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "empty" in bad.stderr


def test_tied_results_alternate_findings_in_a_stable_order(tmp_path, fake_models):
    rows = [{"file_name": f"knee/k{i}.png", "category": "knee", "label": label, "caption": "knee radiograph",
             "source": source, "kind": "stripes"}
            for i, (label, source) in enumerate([("kl-0", "a"), ("kl-0", "a"), ("kl-0", "b"), ("kl-4", "a")])]
    build_test_index(rows, tmp_path / "index", ["keywords"])
    engine = SearchEngine(tmp_path / "index")
    hits = engine.search_text("knee", model="keywords", k=4)
    assert len({round(hit.score, 6) for hit in hits}) == 1  # the keyword vectors of all four rows are equal
    assert [hit.id for hit in hits] == ["knee/k0", "knee/k3", "knee/k2", "knee/k1"]  # kl-0, kl-4, then source b
    assert [hit.id for hit in engine.search_text("knee", model="keywords", k=2)] == ["knee/k0", "knee/k3"]


def test_metadata_text_describes_the_image_not_its_dataset(tmp_path):
    rows = [{"file_name": "knee/k0.png", "category": "knee", "label": "kl-4", "caption": "knee radiograph",
             "source": "Severity Grading Dataset", "kind": "stripes"},
            {"file_name": "knee/k1.png", "category": "knee", "label": "kl-1", "caption": "knee radiograph",
             "source": "Severity Grading Dataset", "kind": "stripes"}]
    build_test_index(rows, tmp_path / "index", ["tfidf"])
    engine = SearchEngine(tmp_path / "index")
    assert engine.search_text("severe osteoarthritis", model="tfidf", k=2)[0].label == "kl-4"
    assert engine.search_text("grading dataset", model="tfidf", k=2).hits == []  # the source is not searched
    assert engine.catalogue.record("knee/k0")["source"] == "Severity Grading Dataset"  # but it is shown


def test_a_repeated_text_yields_to_another_text_of_the_same_finding_never_to_another_finding(tmp_path, fake_models):
    rows = [{"file_name": f"knee/a{i}.png", "category": "knee", "label": "kl-1", "caption": "knee radiograph",
             "kind": "stripes"} for i in range(3)]
    rows += [{"file_name": f"knee/{name}.png", "category": "knee", "label": label,
              "caption": "knee knee radiograph chest", "kind": "stripes"}  # 4 x knee + 1 x chest: cos 0.97
             for name, label in (("b", "kl-4"), ("c", "kl-1"))]
    build_test_index(rows, tmp_path / "index", ["keywords"])
    hits = SearchEngine(tmp_path / "index").search_text("knee", model="keywords", k=4)
    assert [hit.id for hit in hits] == ["knee/a0", "knee/c", "knee/a1", "knee/a2"]  # kl-4 never above kl-1's best
    assert hits[1].score < hits[2].score  # another caption of kl-1 shown earlier although it scores a little lower


def test_the_default_models_follow_the_evaluation_then_the_preference_order(subset_engine, monkeypatch):
    policy = subset_engine.policy
    monkeypatch.setattr(policy, "evaluation", EvaluationSummary)  # not evaluated: the registry's order
    assert policy.default_model("text") == "hybrid"  # every text model fused (retrieval/hybrid.py)
    assert policy.default_model("text", fused=False) == "minilm"  # of those with vectors: a row's own words first
    import retrieval.policy as policy_module

    cards = {"xray-lite0": {"default_image_model": True, "default_reason": "interval above zero"}}
    monkeypatch.setattr(policy_module, "training_card", lambda name: cards.get(name))
    assert policy.default_model("image") == "xray-lite0"  # its card: its outer gain's interval is above zero
    cards["xray-lite0"]["default_image_model"] = False
    assert policy.default_model("image") == "efficientnet-lite0"  # its card says no: the frozen model stays
    measured = {"models": {"efficientnet-lite0": {DEFAULT_IMAGE_FIGURE: 0.8}, "xray-lite0": {DEFAULT_IMAGE_FIGURE: 0.9}}}
    monkeypatch.setattr(policy, "evaluation", lambda: EvaluationSummary.from_dict(measured))
    assert policy.default_model("image") == "efficientnet-lite0"  # even where this index's figure favours it
    cards["xray-lite0"]["default_image_model"] = True
    assert policy.default_model("image") == "xray-lite0"  # earned, and evaluated the better one
    measured["models"]["xray-lite0"][DEFAULT_IMAGE_FIGURE] = 0.7
    assert policy.default_model("image") == "efficientnet-lite0"  # evaluated: the better one across sources


def test_the_default_model_follows_the_evaluation_summary_written_after_the_engine_loaded(engine):
    policy = engine.policy
    assert not policy.evaluation().models and policy.default_model("text") == "tfidf"  # the registry's preference
    engine.generation.write_evaluation({"models": {"keywords": {"text_category_p@5": 0.9},
                                                   "tfidf": {"text_category_p@5": 0.4, "indexes": "text"}}})
    assert policy.default_model("text") == "tfidf"  # the TEST queries' figures report; they choose nothing
    engine.generation.write_evaluation({"models": {"keywords": {"text_train_category_p@5": 0.9},
                                                   "tfidf": {"text_train_category_p@5": 0.4, "indexes": "text"}}})
    assert policy.evaluation().figure("keywords", DEFAULT_TEXT_FIGURE) == 0.9  # read again once the file changes
    assert policy.default_model("text") == "keywords"
    assert engine.search_text("knee").model == "keywords"


def test_a_hit_carries_every_schema_field_as_an_attribute(engine):
    hit = engine.search_text("knee", model="keywords", k=1)[0]
    assert {name: getattr(hit, name) for name in FIELDS} == {k: v for k, v in hit.to_dict().items() if k in FIELDS}
    assert hit.to_dict() == {"rank": 1, "score": round(hit.score, 6), **engine.catalogue.record(hit.id)}
