"""The evaluation: leave-one-out ranking, near-duplicate handling, baselines, text queries, CLI outputs."""

import json

import numpy as np
import pytest

from retrieval.evaluate import (
    CATEGORY, FIGURES, LABEL, RAW_PIXELS, evaluate_index, figures, load_queries, rank_leave_one_out,
)
from retrieval.layout import IndexFolder

from conftest import synthetic_image, write_collection


def test_leave_one_out_ranks_the_other_rows_best_first_and_never_the_query():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    ranked = rank_leave_one_out(vectors, k=2)
    np.testing.assert_array_equal(ranked, [[1, 3], [0, 3], [3, 1], [2, 1]])


def test_excluded_rows_never_come_back_and_missing_ranks_are_minus_one():
    vectors = np.eye(3, dtype=np.float32)
    ranked = rank_leave_one_out(vectors, k=3, exclude={0: {1}, 1: {0}})
    assert 1 not in ranked[0] and 0 not in ranked[1]
    assert list(ranked[0]) == [2, -1, -1]  # itself and its excluded partner leave one candidate


def test_ties_break_towards_the_lower_row_like_a_flat_index():
    vectors = np.ones((4, 2), dtype=np.float32)
    assert list(rank_leave_one_out(vectors, k=3)[2]) == [0, 1, 3]


def test_figures_judge_only_queries_that_have_relevant_rows():
    relevant = np.array([[1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0] * 10], dtype=bool)
    result = figures(relevant, np.array([1, 0]))
    assert result["queries"] == 1 and result["unjudged"] == 1
    assert result["p@1"] == 1.0 and result["map@10"] == 1.0 and result["r@10"] == 1.0


def test_the_packaged_query_file_is_versioned_and_large_enough():
    version, queries = load_queries()
    assert version == 1 and len(queries) >= 30
    assert {q.category for q in queries} == {"chest", "dental", "spine", "knee", "hand", "fracture"}
    assert sum(bool(q.labels) for q in queries) >= 15


@pytest.fixture(scope="module")
def evaluation(subset_index):
    return evaluate_index(subset_index, progress=False)


def _all_figures(evaluation):
    for result in evaluation.image.values():
        for level in (CATEGORY, LABEL):
            yield result[level]
            yield result["with_near_duplicates"][level]
    for result in evaluation.text["models"].values():
        yield result[CATEGORY]
        yield result[LABEL]


def test_every_figure_is_a_share(evaluation):
    for result in _all_figures(evaluation):
        for key in FIGURES:
            value = result[key]
            assert value is None or 0.0 <= value <= 1.0, (key, value)


def test_cross_source_holds_whole_sources_out_and_judges_image_models_only(evaluation):
    cross = evaluation.cross_source
    records = [evaluation.engine.catalogue.record(i) for i in evaluation.engine.catalogue.ids]
    assert set(cross["sources"]) == {r["source"] for r in records}  # every source in exactly one fold
    assert cross["folds"] == 3 and set(cross["sources"].values()) == {0, 1, 2}
    assert set(cross["models"]) == {"efficientnet-lite0", "xray-lite0"}  # text models index metadata, not pixels
    assert "another collection" in cross["models"]["xray-lite0"]["from"]  # trained on the whole collection: said
    held_out = cross["models"]["efficientnet-lite0"]["cross_source"]
    loo = evaluation.image["efficientnet-lite0"][CATEGORY]["p@5"]
    assert 0.0 <= held_out["category"]["p@5"] <= loo  # the honest figure is never above the in-collection one
    assert held_out["category"]["queries"] + held_out["category"]["excluded_no_relevant"] == evaluation.rows
    assert evaluation.summary()["models"]["efficientnet-lite0"]["cross_source_category_p@5"] == \
        held_out["category"]["p@5"]


def test_every_model_and_both_baselines_are_in_the_same_run(evaluation):
    assert set(evaluation.image) == {"tfidf", "minilm", "efficientnet-lite0", "xray-lite0", RAW_PIXELS}
    assert set(evaluation.text["models"]) == {"tfidf", "minilm", "xray-lite0"}  # the text-capable models
    assert evaluation.image["efficientnet-lite0"][CATEGORY]["queries"] == evaluation.rows
    labelled = sum(1 for label in evaluation.engine.catalogue.column("label") if label)
    assert evaluation.image["efficientnet-lite0"][LABEL]["queries"] <= labelled < evaluation.rows


def test_the_learned_image_model_beats_chance_and_raw_pixels_by_category(evaluation):
    learned = evaluation.image["efficientnet-lite0"][CATEGORY]["p@5"]
    assert learned > evaluation.random[CATEGORY]["p@5"] + 0.3
    assert learned >= evaluation.image[RAW_PIXELS][CATEGORY]["p@5"]


def test_text_queries_find_their_category(evaluation):
    for name in ("tfidf", "minilm"):
        assert evaluation.text["models"][name][CATEGORY]["p@5"] > evaluation.text["random"][CATEGORY]["p@5"] + 0.3


def test_the_cli_writes_tables_json_plots_and_the_summary_for_the_app(subset_index, tmp_path, capsys):
    from retrieval.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--index", str(subset_index), "--out", str(out), "--models", "efficientnet-lite0",
                 "--grid-queries", "2"]) == 0
    printed = capsys.readouterr().out
    assert "leave-one-out" in printed and "random ranking" in printed and "tfidf (baseline)" in printed
    payload = json.loads((out / "evaluation.json").read_text())
    assert set(payload["image_queries"]) == {"efficientnet-lite0", "tfidf", RAW_PIXELS}
    for name in ("precision_at_k.png", "text_precision_at_k.png", "per_category.png", "confusion.png",
                 "grid_efficientnet-lite0.png", "text_grid_tfidf.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "P@1" in (out / "evaluation.txt").read_text()
    summary = IndexFolder(subset_index).current().read_evaluation()
    figures_of = summary["models"]["efficientnet-lite0"]
    assert 0.0 <= figures_of["image_category_p@5"] <= 1.0 and "image_label_p@5" in figures_of
    assert "text_category_p@5" in summary["models"]["tfidf"]
    assert "image_category_p@5" in summary["baselines"][RAW_PIXELS]


def test_near_duplicates_are_taken_out_of_each_others_results(tmp_path):
    from retrieval.index import build_index

    images = {f"chest/c{i}.png": synthetic_image("bright", seed=i) for i in range(3)}
    images["chest/copy.png"] = images["chest/c0.png"]
    images.update({f"knee/k{i}.png": synthetic_image("stripes", seed=10 + i) for i in range(3)})
    rows = [{"file_name": name, "category": name.split("/")[0], "label": "", "caption": "radiograph",
             "source": "synthetic", "license": "CC0-1.0"} for name in images]
    collection = write_collection(tmp_path / "collection", rows, images)
    build_index(collection, tmp_path / "index", models=["tfidf"], progress=False, log=lambda *_: None)

    result = evaluate_index(tmp_path / "index", progress=False)
    assert result.near_duplicates["pairs"] >= 1
    files = result.engine.catalogue.column("file_name")
    original, copy = files.index("chest/c0.png"), files.index("chest/copy.png")
    assert copy not in result.ranked[RAW_PIXELS][original]
