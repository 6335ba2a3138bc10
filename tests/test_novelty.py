""""No close match in this collection": the novelty evidence, the nested fit, the stored scorer, and the
abstaining suggestion in the library, the CLI, the page and the API handler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import build_test_index
from retrieval.embedders import IMAGE, Availability, Embedder, EmbedderSpec, l2_normalise, register, unregister
from retrieval.layout import IndexFolder
from retrieval.novelty import NO_MATCH, NoveltyModel, auroc, learn, load_novelty, nested_figures
from retrieval.novelty_evidence import FEATURES, collect_evidence, features
from retrieval.results import SearchResult
from retrieval.search import SearchEngine

LEVELS = {"alpha": 0.1, "beta": 0.3, "gamma": 0.5, "delta": 0.7}  # a category is a grey level
NEW_LEVEL = 0.9  # content the collection lacks


def clusters(rng, centres: np.ndarray, sources: int = 2, per_source: int = 15, spread: float = 0.35):
    """Unit vectors around each centre, each source of a category shifted a little (as hospitals differ)."""
    vectors, categories, origins = [], [], []
    for c, centre in enumerate(centres):
        for s in range(sources):
            shift = rng.normal(size=centre.shape) * 0.15
            for _ in range(per_source):
                vectors.append(centre + shift + rng.normal(size=centre.shape) * spread)
                categories.append(f"c{c}")
                origins.append(f"c{c}-s{s}")
    return l2_normalise(np.asarray(vectors, dtype=np.float32)), categories, origins


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 24))
    vectors, categories, sources = clusters(rng, centres[:5])  # the sixth centre is never in the collection
    model, figures = learn(vectors, categories, sources)
    return model, figures, vectors, categories, sources, centres, rng


def judge(model: NoveltyModel, vectors, categories, query):
    """The judgement as the engine makes it: the nearest rows' scores and categories, best first."""
    query = l2_normalise(query[None, :])[0]
    scores = vectors @ query
    order = np.argsort(-scores)[:10]
    return model.judge(query, scores[order], [categories[i] for i in order])


# --- the evidence -----------------------------------------------------------------------------------------
def test_features_of_hand_made_neighbours():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], dtype=np.float32)
    codes = np.array([[0, 0, 1, 0]])
    centre = np.array([[0.7, 0.5, -np.inf]])  # category 2 is absent from the searchable rows
    evidence = dict(zip(FEATURES, features(scores, codes, centre, np.array([0.8, 0.6, 0.0]),
                                           np.array([0.05, 0.1, 1.0]))[0]))
    assert evidence["top_similarity"] == pytest.approx(0.9)
    assert evidence["mean_similarity"] == pytest.approx(0.75)
    assert evidence["vote_margin"] == pytest.approx((2.3 - 0.7) / 3.0)  # similarity-weighted shares
    assert evidence["agreement"] == pytest.approx(0.75)
    assert evidence["centre_similarity"] == pytest.approx(0.7)
    assert evidence["centre_z"] == pytest.approx((0.7 - 0.8) / 0.05)  # the voted category's own spread


def test_evidence_searches_across_sources_and_leaves_whole_categories_out():
    rng = np.random.default_rng(1)
    vectors, categories, sources = clusters(rng, rng.normal(size=(3, 8)), per_source=4)
    codes = np.asarray([int(c[1:]) for c in categories])
    evidence = collect_evidence(vectors, codes, np.asarray(sources, dtype=object), 3)
    assert evidence.in_collection.sum() == len(vectors) and (~evidence.in_collection).sum() == len(vectors)
    inside, outside = evidence.x[evidence.in_collection], evidence.x[~evidence.in_collection]
    # a query never finds its own source (else its top similarity would be its near copies)
    assert inside[:, 0].max() < 1 - 1e-4
    assert np.median(inside[:, 0]) > np.median(outside[:, 0])


def test_auroc_counts_ties_as_half():
    assert auroc(np.array([True, False]), np.array([1.0, 0.0])) == 1.0
    assert auroc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5
    assert auroc(np.array([True, True]), np.array([0.5, 0.5])) is None


# --- the fit ----------------------------------------------------------------------------------------------
def test_a_left_out_cluster_is_flagged_and_an_in_cluster_query_is_not(fitted):
    model, figures, vectors, categories, _, centres, rng = fitted
    assert figures["fitted"] and figures["auroc"] >= 0.9
    known = [judge(model, vectors, categories, centres[c] + rng.normal(size=24) * 0.35) for c in range(5)
             for _ in range(4)]
    assert sum(not j.in_collection for j in known) <= 1
    foreign = [judge(model, vectors, categories, centres[5] + rng.normal(size=24) * 0.35) for _ in range(10)]
    assert all(not j.in_collection for j in foreign)
    assert max(j.match_score for j in foreign) < min(j.match_score for j in known)


def test_the_threshold_of_a_reporting_fold_never_sees_that_fold(fitted):
    _, _, vectors, categories, sources, _, _ = fitted
    names = sorted(set(categories))
    codes = np.asarray([names.index(c) for c in categories])
    evidence = collect_evidence(vectors, codes, np.asarray(sources, dtype=object), len(names))
    before = nested_figures(evidence, names, 0.03)["per_source"]
    reporting = evidence.source == "c0-s0"
    evidence.x[reporting] = np.random.default_rng(2).normal(size=(int(reporting.sum()), len(FEATURES)))
    after = nested_figures(evidence, names, 0.03)["per_source"]
    assert after["c0-s0"]["min_match"] == before["c0-s0"]["min_match"]  # chosen on the other sources only
    assert any(after[name]["min_match"] != before[name]["min_match"] for name in before if name != "c0-s0")


def test_too_few_categories_give_no_scorer_and_say_why():
    rng = np.random.default_rng(3)
    vectors, categories, sources = clusters(rng, rng.normal(size=(2, 8)), per_source=3)
    model, figures = learn(vectors, categories, sources)
    assert model is None and not figures["fitted"] and "categories" in figures["reason"]
    model, figures = learn(*clusters(rng, rng.normal(size=(4, 8)), sources=1, per_source=3))
    assert model is None and "two sources" in figures["reason"]


def test_the_stored_form_round_trips(fitted):
    model, *_ = fitted
    again = NoveltyModel.from_json(json.loads(json.dumps(model.to_json())), model.centres)
    evidence = np.random.default_rng(4).normal(size=(5, len(FEATURES)))
    assert np.allclose(again.match_scores(evidence), model.match_scores(evidence), atol=1e-5)
    with pytest.raises(ValueError, match="version"):
        NoveltyModel.from_json({**model.to_json(), "version": -1}, model.centres)


# --- an index: stored at build, reused, judged at query time ----------------------------------------------
class GreyEmbedder(Embedder):
    """A picture's mean grey level as a bump over 11 levels: equal greys are close, greys 0.2 apart are not."""

    dim = 11

    def embed_images(self, images):
        levels = np.asarray([np.asarray(image.convert("L"), dtype=np.float32).mean() / 255 for image in images])
        return l2_normalise(np.exp(-(levels[:, None] - np.linspace(0, 1, 11)[None, :]) ** 2 / (2 * 0.06 ** 2)))


def grey(level: float, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0, 4, (32, 32))
    return Image.fromarray(np.clip(level * 255 + noise, 0, 255).astype(np.uint8), mode="L")


@pytest.fixture(scope="module")
def grey_index(tmp_path_factory):
    register(EmbedderSpec("grey", "test", (IMAGE,), IMAGE, 11, "tests", "grey level", GreyEmbedder,
                          lambda: Availability(True, "defined in tests"), version="grey:1"))
    try:
        root = tmp_path_factory.mktemp("grey")
        rows, images = [], {}
        for category, level in LEVELS.items():
            for source, offset in (("north", -0.015), ("south", 0.015)):
                for i in range(6):
                    name = f"{category}/{source}-{i}.png"
                    rows.append({"file_name": name, "category": category, "label": "", "caption": category,
                                 "source": f"{source} hospital", "license": "CC0-1.0"})
                    images[name] = grey(level + offset + 0.004 * (i - 3), seed=len(rows))
        from conftest import write_collection

        collection = write_collection(root / "collection", rows, images)
        build_test_index(collection, root / "index", ["grey"])
        yield root / "index", collection
    finally:
        unregister("grey")


def test_the_build_stores_the_scorer_and_a_rebuild_reuses_it(grey_index):
    index, collection = grey_index
    generation = IndexFolder(index).require_current()
    entry = generation.manifest.models["grey"]
    assert entry.novelty_digest and generation.has_novelty("grey")
    payload, centres = generation.read_novelty("grey")
    assert payload["figures"]["fitted"] and centres.shape == (len(LEVELS), 11)
    assert payload["categories"] == sorted(LEVELS)
    build_test_index(collection, index, ["grey"], force=True)
    again = IndexFolder(index).require_current()
    assert again.folder != generation.folder and again.manifest.models["grey"].novelty_digest == entry.novelty_digest
    assert again.read_novelty("grey")[0] == payload


def test_the_engine_abstains_on_a_grey_the_collection_lacks(grey_index):
    engine = SearchEngine(grey_index[0])
    known = engine.search_image(grey(LEVELS["gamma"] + 0.01, seed=99), k=3)
    assert known.in_collection is True and known.suggested_category == "gamma"
    assert known.records()[0]["query_in_collection"] is True
    foreign = engine.search_image(grey(NEW_LEVEL, seed=98), k=3)
    assert foreign.in_collection is False and foreign.suggested_category is None
    assert foreign.suggestion and len(foreign.hits) == 3  # the vote and the nearest images are still there
    assert foreign.match_score < known.match_score
    assert all(r["query_in_collection"] is False and r["query_match_score"] == foreign.match_score
               for r in foreign.records())


class CoarseGreyEmbedder(GreyEmbedder):
    """The grey level misread by up to a category's width, as a wide bump over 3 levels: it ranks greys roughly
    and tells a new grey poorly."""

    dim = 3

    def embed_images(self, images):
        pixels = [np.asarray(image.convert("L"), dtype=np.float32) for image in images]
        levels = np.asarray([p.mean() / 255 + np.random.default_rng(int(p.sum()) % 2**32).normal(0, 0.15)
                             for p in pixels])
        return l2_normalise(np.exp(-(levels[:, None] - np.linspace(0, 1, 3)[None, :]) ** 2 / (2 * 0.5 ** 2)))


def test_without_a_current_judge_an_image_search_is_judged_by_its_ranking_model_s_own_scorer(grey_index, tmp_path):
    register(EmbedderSpec("coarse-grey", "test", (IMAGE,), IMAGE, 3, "tests", "coarse grey", CoarseGreyEmbedder,
                          lambda: Availability(True, "defined in tests"), version="coarse-grey:1"))
    try:
        index = tmp_path / "index"
        build_test_index(grey_index[1], index, ["coarse-grey", "grey"])
        generation = IndexFolder(index).require_current()
        assert SearchEngine(index).search_image(grey(NEW_LEVEL, seed=98), k=3).judged_by == "coarse-grey+grey"
        generation.joint_novelty_path().unlink()  # as an index built before the judge existed
        engine = SearchEngine(index)
        for model in ("coarse-grey", "grey"):  # no model is picked by the figures its folds report
            foreign = engine.search_image(grey(NEW_LEVEL, seed=98), model=model, k=3)
            known = engine.search_image(grey(LEVELS["beta"] + 0.01, seed=97), model=model, k=3)
            assert foreign.model == known.model == model and foreign.judged_by == known.judged_by == model
            assert known.in_collection is True
        assert engine.search_image(grey(NEW_LEVEL, seed=98), model="grey", k=3).in_collection is False
    finally:
        unregister("coarse-grey")


def test_an_index_without_a_scorer_answers_without_a_judgement(grey_index, tmp_path):
    generation = IndexFolder(grey_index[0]).require_current()
    assert load_novelty(generation, "no-such-model") is None
    result = SearchResult([], "text-model", {})
    assert result.in_collection is None and result.records() == []


def test_the_cli_prints_the_sentence(grey_index, tmp_path, capsys):
    from retrieval.cli import main

    path = tmp_path / "foreign.png"
    grey(NEW_LEVEL, seed=5).save(path)
    assert main(["search", "--index", str(grey_index[0]), "--image", str(path), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{NO_MATCH}:" in out and "Suggested category" not in out and "Match score" in out


def test_the_handler_abstains_with_the_sentence_and_carries_the_field(grey_index, tmp_path):
    import app
    from ui import render

    handlers = app.Handlers(SearchEngine(grey_index[0]))
    path = tmp_path / "foreign.png"
    grey(NEW_LEVEL, seed=6).save(path)
    gallery, records, suggestion, status = handlers.search_image(str(path), k=4)
    assert suggestion == NO_MATCH and status.startswith(f"**{NO_MATCH}:") and "4 results" in status
    assert len(gallery) == 4 and all(r["query_in_collection"] is False for r in records)
    assert "query_" not in render.details_markdown(records[0])  # it belongs to the query, not to the result
    grey(LEVELS["beta"], seed=7).save(path)
    _, records, suggestion, status = handlers.search_image(str(path), k=4)
    assert suggestion["beta"] > 0.5 and NO_MATCH not in status and records[0]["query_in_collection"] is True
    assert f"Match score {records[0]['query_match_score']:.2f}" in status  # the evidence, beside the suggestion


def test_a_collection_too_small_to_learn_from_says_why_instead_of_failing():
    vectors = np.eye(3, 4, dtype=np.float32)  # three rows, three categories, one source each: nothing to learn
    model, figures = learn(vectors, ["chest", "knee", "leg"], ["a", "b", "c"])
    assert model is None and figures["fitted"] is False and "two sources" in figures["reason"]
