""""No close match" judged over the index's image models: the joined models, a content scorer and its threshold rule,
chosen inside the training sources, and every joined model's similarity floor; nested so that no reporting source
judged a choice; stored with the index (one image model gets a judge of its own), refitted when stale, used by the
engine whichever model ranks, and the ranking model's own scorer where a joined model cannot embed here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import build_test_index
from retrieval import joint_novelty
from retrieval.embedders import IMAGE, Availability, EmbedderSpec, l2_normalise, register, unregister
from retrieval.joint_novelty import CEILING, VERSION, JointJudge, choose, load_joint, outer_figures, pick
from retrieval.layout import IndexFolder
from retrieval.novelty import RULES, Fits, _out_of_fold, choose_thresholds
from retrieval.novelty_evidence import collect_evidence
from retrieval.search import SearchEngine
from test_novelty import LEVELS, GreyEmbedder, clusters, grey, grey_index  # noqa: F401 - grey_index: a fixture



def stripes() -> Image.Image:
    """Black and white stripes: as light on average as the "gamma" grey, and nothing like a flat grey."""
    return Image.fromarray(np.tile(np.repeat(np.array([0, 255], dtype=np.uint8), 2), (32, 8)), mode="L")


class TextureEmbedder(GreyEmbedder):
    """The grey level's bump, scaled down by the picture's contrast (pixel spread), which gets an axis of its own:
    a flat grey picture embeds as by "grey", a contrasty one far from every flat grey row."""

    dim = 12

    def embed_images(self, images):
        contrast = np.asarray([np.asarray(image.convert("L"), dtype=np.float32).std() / 127.5 for image in images])
        bumps = super().embed_images(images) * (1 - contrast)[:, None]
        return l2_normalise(np.hstack([bumps, contrast[:, None]]))


@pytest.fixture(scope="module")
def two_model_index(grey_index, tmp_path_factory):  # noqa: F811
    register(EmbedderSpec("texture", "test", (IMAGE,), IMAGE, 12, "tests", "grey level and contrast", TextureEmbedder,
                          lambda: Availability(True, "defined in tests"), version="texture:1"))
    try:
        index = tmp_path_factory.mktemp("joint") / "index"
        build_test_index(grey_index[1], index, ["grey", "texture"])
        yield index, grey_index[1]
    finally:
        unregister("texture")


def two_views(seed: int = 0, per_source: int = 15):
    """Two models' evidence over the same rows: the clusters, and the clusters seen through extra noise."""
    rng = np.random.default_rng(seed)
    vectors, categories, sources = clusters(rng, rng.normal(size=(5, 24)), per_source=per_source)
    names = sorted(set(categories))
    codes = np.asarray([names.index(c) for c in categories])
    other = l2_normalise(vectors + rng.normal(size=vectors.shape).astype(np.float32) * 0.05)
    origin = np.asarray(sources, dtype=object)
    return {"a": collect_evidence(vectors, codes, origin, len(names)),
            "b": collect_evidence(other, codes, origin, len(names))}, names


def test_no_floor_that_judges_a_source_was_chosen_on_that_source(monkeypatch):
    evidence, names = two_views()
    seen, real = [], joint_novelty.floor_of
    monkeypatch.setattr(joint_novelty, "floor_of",
                        lambda e, chosen: seen.append(set(e.source[chosen])) or real(e, chosen))
    before = outer_figures(evidence, names, 0.03)["per_source"]
    everyone = set(evidence["a"].source)
    assert all(everyone - chosen for chosen in seen)  # every floor leaves a source out (two, inside a choice)
    assert {next(iter(everyone - chosen)) for chosen in seen if len(everyone - chosen) == 1} == everyone
    for view in evidence.values():  # the reporting source's own queries now look nothing like the collection
        view.x[view.source == "c0-s0", 0] = -1.0
    after = outer_figures(evidence, names, 0.03)["per_source"]
    assert after["c0-s0"]["floors"] == before["c0-s0"]["floors"]  # chosen without it
    assert after["c0-s0"]["abstain_in_collection"] == 1.0  # and it is judged by them
    assert all(after[s]["floors"]["a"] == -1.0 for s in before if s != "c0-s0")  # the others saw it


def test_the_content_scorer_and_its_rule_are_chosen_without_the_source_they_judge(monkeypatch):
    evidence, names = two_views(1)
    calls, real = [], joint_novelty.choose
    monkeypatch.setattr(joint_novelty, "choose",
                        lambda e, fits, chosen, *rest: calls.append(set(e["a"].source[chosen]))
                        or real(e, fits, chosen, *rest))
    before = outer_figures(evidence, names, 0.03)
    everyone = set(evidence["a"].source)
    assert sorted(next(iter(everyone - chosen)) for chosen in calls) == sorted(everyone)  # one choice per fold
    assert sum(before["chosen_in_outer_folds"].values()) == len(everyone)
    for view in evidence.values():  # the reporting source changes beyond recognition: its choice does not
        view.x[view.source == "c0-s0"] = np.random.default_rng(5).normal(size=(int((view.source == "c0-s0").sum()), 6))
    after = outer_figures(evidence, names, 0.03)["per_source"]
    assert (after["c0-s0"]["content"], after["c0-s0"]["rule"]) == (before["per_source"]["c0-s0"]["content"],
                                                                    before["per_source"]["c0-s0"]["rule"])


def hard_source(seed: int = 2, source: str = "c1-s0"):
    """Evidence in which one source's in-collection queries look half novel (a hospital unlike the others)."""
    evidence, names = two_views(seed, per_source=25)  # enough in-collection queries for a source's own quantile
    view = evidence["a"]
    hard = (view.source == source) & view.in_collection
    novel = view.x[~view.in_collection].mean(axis=0)
    view.x[hard] = 0.35 * view.x[hard] + 0.65 * novel
    return view, names, source


def test_the_every_source_rule_holds_each_training_source_under_the_target_where_pooling_does_not():
    view, names, hard = hard_source()
    everything = np.ones(len(view.x), dtype=bool)
    scores = _out_of_fold(view, everything)
    inside = view.in_collection & ~np.isnan(scores)
    share = lambda level, source: float((scores[inside & (view.source == source)] < level).mean())  # noqa: E731
    pooled, per_category = choose_thresholds(view, everything, 0.03, len(names), "per-category")
    level, none = choose_thresholds(view, everything, 0.03, len(names), "every-source")
    assert np.isnan(none).all() and level < pooled
    # 3 % of a source's 25 queries lies between its lowest and second lowest: at most one abstains
    assert all(share(level, source) <= 1 / 25 for source in np.unique(view.source[inside]))
    by_category = np.where(np.isnan(per_category[view.voted]), pooled, per_category[view.voted])
    assert float((scores < by_category)[inside & (view.source == hard)].mean()) > 0.03  # pooled: it abstains more


def test_the_choice_abstains_most_within_the_ceiling_and_else_least_in_the_collection():
    rates = lambda inside, left_out: {"abstain_in_collection": inside, "abstain_left_out": left_out}  # noqa: E731
    assert pick({"strict": rates(0.01, 0.20), "eager": rates(0.10, 0.60), "fair": rates(CEILING, 0.45)}) == "fair"
    assert pick({"eager": rates(0.10, 0.60), "less eager": rates(0.08, 0.30)}) == "less eager"


def test_the_choice_reads_every_candidate_on_the_training_sources_alone():
    evidence, names = two_views(3, per_source=25)
    evidence["a"] = hard_source(3)[0]
    train = evidence["a"].source != "c0-s0"
    group, content, rule, figures = choose(evidence, {m: Fits(e) for m, e in evidence.items()}, train, len(names),
                                           0.03)
    assert group == ("a", "b") and set(figures) == {f"{m} {r}" for m in evidence for r in RULES}
    assert all(f["in_collection_queries"] == int((train & evidence["a"].in_collection).sum()) for f in figures.values())
    assert f"{content} {rule}" == pick(figures)


def three_views(seed: int = 4):
    """Three models' evidence: two views of the clusters, and a third that sees only noise."""
    evidence, names = two_views(seed, per_source=25)
    blind = evidence["a"]
    evidence["c"] = type(blind)(np.random.default_rng(seed).normal(size=blind.x.shape), blind.in_collection,
                                blind.category, blind.source, blind.voted)
    return evidence, names


def test_with_more_models_than_join_the_joined_ones_are_chosen_inside_too():
    evidence, names = three_views()
    train = evidence["a"].source != "c0-s0"
    group, content, rule, figures = choose(evidence, {m: Fits(e) for m, e in evidence.items()}, train, len(names),
                                           0.03)
    assert len(group) == joint_novelty.MAX_MODELS and content in group
    assert set(figures) == {f"{'+'.join(g)}: {m} {r}" for g in [("a", "b"), ("a", "c"), ("b", "c")] for m in g
                            for r in RULES}  # every pair, each of its models' scorers, each rule
    assert content != "c"  # the blind model's scorer tells nothing
    outer = outer_figures(evidence, names, 0.03)
    assert all(len(s["models"]) == 2 and s["content"] in s["models"] for s in outer["per_source"].values())
    assert sum(outer["chosen_in_outer_folds"].values()) == len(outer["per_source"])


def test_a_judge_of_one_model_chooses_its_rule_inside_and_keeps_its_floor():
    evidence, names = two_views(5, per_source=25)
    one = {"a": evidence["a"]}
    train = one["a"].source != "c0-s0"
    group, content, rule, figures = choose(one, {"a": Fits(one["a"])}, train, len(names), 0.03)
    assert (group, content) == (("a",), "a") and set(figures) == {f"a {r}" for r in RULES}
    outer = outer_figures(one, names, 0.03)
    assert all(s["models"] == ["a"] and set(s["floors"]) == {"a"} for s in outer["per_source"].values())
    rng = np.random.default_rng(5)
    vectors, categories, sources = clusters(rng, rng.normal(size=(5, 24)), per_source=25)
    judge = joint_novelty.learn_joint({"a": vectors}, {"a": "digest"}, categories, sources)
    assert judge.models == ["a"] and judge.content == "a" and judge.fitted_on == {"a": "digest"}
    names = sorted(set(categories))
    everything = collect_evidence(vectors, np.asarray([names.index(c) for c in categories]),
                                  np.asarray(sources, dtype=object), len(names))
    assert judge.floors == {"a": pytest.approx(float(everything.x[everything.in_collection, 0].min()))}


def test_the_joint_judge_compares_the_content_score_with_its_own_thresholds(two_model_index):
    engine = SearchEngine(two_model_index[0])
    joint = load_joint(engine.generation)
    query = grey(LEVELS["gamma"] + 0.01, seed=96)
    judgements = {}
    for level in (0.0, 1.01):  # nothing abstains / everything abstains, whatever the scorer's own threshold
        joint.min_match, joint.category_min_match = level, np.full(len(joint.category_min_match), np.nan)
        engine._joint = joint
        judgements[level] = engine.search_image(query, k=3)
    assert judgements[0.0].in_collection is True and judgements[1.01].in_collection is False
    assert judgements[0.0].match_score == judgements[1.01].match_score > 0  # the same score, another threshold


def test_the_joint_judge_abstains_where_any_model_s_nearest_row_is_beyond_its_floor(two_model_index):
    engine = SearchEngine(two_model_index[0])
    striped = engine.search_image(stripes(), k=3)
    assert striped.judged_by == "grey+texture" and striped.in_collection is False and striped.match_score == 0.0
    assert striped.suggested_category is None and len(striped.hits) == 3
    known = engine.search_image(grey(LEVELS["gamma"] + 0.01, seed=95), k=3)
    assert known.judged_by == "grey+texture" and known.in_collection is True and known.suggested_category == "gamma"
    # the ranking model's own scorer ("grey", the default) takes the stripes for a gamma grey
    generation = IndexFolder(two_model_index[0]).require_current()
    joint = load_joint(generation)
    assert joint.content in ("grey", "texture") and joint.rule in RULES and joint.models == ["grey", "texture"]
    generation.joint_novelty_path().rename(generation.joint_novelty_path().with_suffix(".off"))
    try:
        alone = SearchEngine(two_model_index[0]).search_image(stripes(), k=3)
        assert alone.judged_by == "grey" and alone.in_collection is True
    finally:
        generation.joint_novelty_path().with_suffix(".off").rename(generation.joint_novelty_path())


def test_the_build_stores_the_joint_judge_with_its_nested_figures(two_model_index):
    generation = IndexFolder(two_model_index[0]).require_current()
    payload = generation.read_joint_novelty()
    assert payload["version"] == VERSION and payload["content"] in ("grey", "texture") and payload["rule"] in RULES
    assert f"{payload['content']} {payload['rule']}" in payload["figures"]["chosen_on_every_source"]
    assert payload["fitted_on"] == {m: generation.manifest.models[m].novelty_digest for m in ("grey", "texture")}
    figures = payload["figures"]
    assert figures["abstain_in_collection"] is not None and figures["content_alone"]["abstain_left_out"] is not None
    assert set(figures["per_source"]) == set(generation.load_dataset()["source"])
    assert sum(figures["chosen_in_outer_folds"].values()) == len(figures["per_source"])
    assert 0.5 <= figures["auroc"] <= 1.0
    again = JointJudge.from_json(payload)
    assert again.floors == load_joint(generation).floors and again.name == "grey+texture"


def test_a_single_model_index_stores_a_judge_of_its_one_model(grey_index):  # noqa: F811
    generation = IndexFolder(grey_index[0]).require_current()
    judge = load_joint(generation)
    assert judge.models == ["grey"] and judge.content == "grey" and judge.rule in RULES
    assert judge.fitted_on == {"grey": generation.manifest.models["grey"].novelty_digest}
    assert set(judge.figures["per_source"]) == set(generation.load_dataset()["source"])
    engine = SearchEngine(grey_index[0])
    result = engine.search_image(stripes(), k=3)
    assert result.judged_by == "grey" and result.in_collection is True  # one model cannot see the stripes
    engine._joint.floors["grey"] = 1.01  # a floor no row reaches: the one model's floor vetoes every query
    vetoed = engine.search_image(grey(LEVELS["beta"], seed=92), k=3)
    assert vetoed.judged_by == "grey" and vetoed.in_collection is False and vetoed.match_score == 0.0


def test_an_engine_without_one_of_the_joined_models_falls_back_to_the_ranking_model_s_own_scorer(two_model_index):
    for model in ("grey", "texture"):
        engine = SearchEngine(two_model_index[0], models=[model])
        assert engine.search_image(grey(LEVELS["beta"], seed=94), k=3).judged_by == model


def test_a_stale_joint_judge_is_refitted_by_the_next_build_without_embedding_again(two_model_index, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(two_model_index[0], index, symlinks=True)
    generation = IndexFolder(index).require_current()
    stored = generation.read_joint_novelty()
    generation.write_joint_novelty({**stored, "version": VERSION - 1})  # as written by an older program
    assert load_joint(generation) is None and SearchEngine(index).search_image(
        grey(LEVELS["beta"], seed=93), k=3).judged_by == "grey"  # the ranking model's own scorer meanwhile
    report = build_test_index(two_model_index[1], index, ["grey", "texture"])
    rebuilt = IndexFolder(index).require_current()
    assert not report.up_to_date and all(m.embedded == 0 for m in report.models.values())
    refitted = rebuilt.read_joint_novelty()
    assert refitted["version"] == VERSION and refitted["floors"] == stored["floors"]  # the same fit again
    assert refitted["figures"]["per_source"] == stored["figures"]["per_source"]
    unchanged = build_test_index(two_model_index[1], index, ["grey", "texture"])
    assert unchanged.up_to_date  # now current: nothing to do
    build_test_index(two_model_index[1], index, ["grey", "texture"], force=True)
    assert IndexFolder(index).require_current().read_joint_novelty() == refitted  # taken over, not refitted


def test_with_the_real_models_noise_is_no_close_match_and_a_collection_film_is_in_it(subset_index, real_subset):
    import csv
    from collections import Counter

    engine = SearchEngine(subset_index)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8), mode="L")
    for model in ("efficientnet-lite0", "xray-lite0"):  # whichever model ranks
        result = engine.search_image(noise, model=model, k=3)
        assert result.judged_by == "efficientnet-lite0+xray-lite0" and result.in_collection is False
    with open(real_subset / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    common = Counter(row["category"] for row in rows).most_common(1)[0][0]
    film = engine.search_image(real_subset / next(r for r in rows if r["category"] == common)["file_name"], k=3)
    assert film.judged_by == "efficientnet-lite0+xray-lite0" and film.in_collection is True
