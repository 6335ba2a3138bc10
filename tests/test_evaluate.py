"""The evaluation: leave-one-out ranking, near-duplicate handling, baselines, text queries, CLI outputs, the
summary the app reads, and one P@k shared with the training protocols."""

import json

import numpy as np
import pytest

from retrieval.evaluation.figures import CATEGORY, FIGURES, LABEL, figures
from retrieval.evaluation.metrics import rank_leave_one_out
from retrieval.evaluation.queries import load_queries
from retrieval.evaluation.run import RAW_PIXELS, evaluate_index
from retrieval.evaluation_summary import DEFAULT_IMAGE_FIGURE, DEFAULT_TEXT_FIGURE, EvaluationSummary
from retrieval.layout import IndexFolder

from conftest import build_test_index, synthetic_image, write_collection


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
    assert version == 2 and len(queries) >= 120
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
    records = evaluation.index.records
    assert set(cross["sources"]) == {r["source"] for r in records}  # every source in exactly one fold
    assert cross["folds"] == 3 and set(cross["sources"].values()) == {0, 1, 2}
    assert set(cross["models"]) == {"efficientnet-lite0", "xray-lite0"}  # text models index metadata, not pixels
    assert "another collection" in cross["models"]["xray-lite0"]["from"]  # trained on the whole collection: said
    held_out = cross["models"]["efficientnet-lite0"]["cross_source"]
    loo = evaluation.image["efficientnet-lite0"][CATEGORY]["p@5"]
    assert 0.0 <= held_out["category"]["p@5"] <= loo  # the honest figure is never above the in-collection one
    assert held_out["category"]["queries"] + held_out["category"]["excluded_no_relevant"] == evaluation.rows
    assert evaluation.summary().figure("efficientnet-lite0", DEFAULT_IMAGE_FIGURE) == held_out["category"]["p@5"]
    named = sum(1 for record in records if record["body_part"])  # anatomy: judged where a row names its body part
    assert 0 < held_out["body_part"]["queries"] <= named
    anatomy = evaluation.summary().figure("efficientnet-lite0", "cross_source_body_part_p@5")
    assert anatomy == held_out["body_part"]["p@5"]


def test_every_model_and_both_baselines_are_in_the_same_run(evaluation):
    assert set(evaluation.image) == {"tfidf", "minilm", "efficientnet-lite0", "xray-lite0", RAW_PIXELS}
    assert set(evaluation.text["models"]) == {"tfidf", "minilm", "xray-lite0", "hybrid"}  # text-capable, fused
    assert evaluation.image["efficientnet-lite0"][CATEGORY]["queries"] == evaluation.rows
    labelled = sum(1 for record in evaluation.index.records if record["label"])
    assert evaluation.image["efficientnet-lite0"][LABEL]["queries"] <= labelled < evaluation.rows


def test_the_learned_image_model_beats_chance_and_raw_pixels_by_category(evaluation):
    learned = evaluation.image["efficientnet-lite0"][CATEGORY]["p@5"]
    assert learned > evaluation.random[CATEGORY]["p@5"] + 0.3
    assert learned >= evaluation.image[RAW_PIXELS][CATEGORY]["p@5"]


def test_the_hybrid_is_fitted_on_train_queries_and_every_text_model_judged_on_test_queries(evaluation):
    _, queries = load_queries()
    test = [q for q in queries if q.split == "test"]
    text = evaluation.text
    assert text["fusion"]["fitted_on"]["split"] == "train"
    assert text["fusion"]["fitted_on"]["queries"] == len(queries) - len(test)
    assert text["judged_on"] == "test" and text["judged_queries"] == len(test)
    for result in text["models"].values():  # headline figures: test queries only; all queries beside them
        assert result[CATEGORY]["queries"] + result[CATEGORY]["unjudged"] == len(test)
        assert result["all_queries"][CATEGORY]["queries"] + result["all_queries"][CATEGORY]["unjudged"] == len(queries)
    assert text["models"]["hybrid"]["searches"] == "fusion"
    summary = evaluation.summary()
    assert summary.figure("hybrid", "text_category_p@5") == text["models"]["hybrid"][CATEGORY]["p@5"]
    # what chooses among text models is read on the TRAIN queries, never the TEST ones that report; the hybrid,
    # fitted on the TRAIN queries, has no such figure (it leads by design: policy.py)
    train = len(queries) - len(test)
    assert summary.figure("hybrid", DEFAULT_TEXT_FIGURE) is None and "train_queries" not in text["models"]["hybrid"]
    for name in ("tfidf", "minilm"):
        chosen_on = text["models"][name]["train_queries"][CATEGORY]
        assert chosen_on["queries"] + chosen_on["unjudged"] == train
        assert summary.figure(name, DEFAULT_TEXT_FIGURE) == chosen_on["p@5"]
    assert evaluation.index.generation.read_fusion() == text["fusion"]  # the engine serves what was judged


def test_the_best_model_per_query_in_hindsight_bounds_every_single_model_from_above(evaluation):
    ceiling = evaluation.text["best_model_per_query"]
    singles = [name for name in evaluation.text["models"] if name != "hybrid"]
    assert ceiling["models"] == singles
    assert ceiling["queries"] == evaluation.text["models"]["tfidf"][CATEGORY]["queries"]
    for name in singles:
        assert ceiling["category_p@5"] >= evaluation.text["models"][name][CATEGORY]["p@5"]
        assert ceiling["label_p@5"] >= evaluation.text["models"][name]["label"]["p@5"] - 1e-9


def test_text_queries_find_their_category(evaluation):
    for name in ("tfidf", "minilm", "hybrid"):
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
    typed = EvaluationSummary.read(IndexFolder(subset_index).current())
    assert typed.figure("tfidf", DEFAULT_TEXT_FIGURE) == summary["models"]["tfidf"]["text_train_category_p@5"]
    assert typed.figure("efficientnet-lite0", DEFAULT_IMAGE_FIGURE) == figures_of["cross_source_category_p@5"]


@pytest.fixture(scope="module")
def near_duplicate_index(tmp_path_factory):
    """A TF-IDF index of six synthetic images and a byte copy of one of them: (collection, index folder)."""
    root = tmp_path_factory.mktemp("near-duplicates")
    images = {f"chest/c{i}.png": synthetic_image("bright", seed=i) for i in range(3)}
    images["chest/copy.png"] = images["chest/c0.png"]
    images.update({f"knee/k{i}.png": synthetic_image("stripes", seed=10 + i) for i in range(3)})
    rows = [{"file_name": name, "category": name.split("/")[0], "label": "", "caption": "radiograph",
             "source": "synthetic", "license": "CC0-1.0"} for name in images]
    collection = write_collection(root / "collection", rows, images)
    build_test_index(collection, root / "index", ["tfidf"])
    return collection, root / "index"


def test_near_duplicates_are_taken_out_of_each_others_results(near_duplicate_index):
    result = evaluate_index(near_duplicate_index[1], progress=False)
    assert result.near_duplicates["pairs"] >= 1
    names = [record["file_name"] for record in result.index.records]
    original, copy = names.index("chest/c0.png"), names.index("chest/copy.png")
    assert copy not in result.ranked[RAW_PIXELS][original]


def _with_phash_column(index_dir, hashes_of) -> None:
    """Give the index's dataset a `phash` column (as a build that stores it does), `hashes_of(file_name)`."""
    import shutil

    import datasets

    generation = IndexFolder(index_dir).current()
    dataset = datasets.load_from_disk(str(generation.dataset_path))
    if "phash" in dataset.column_names:
        dataset = dataset.remove_columns("phash")
    dataset = dataset.add_column("phash", [hashes_of(name) for name in dataset["file_name"]])
    staged = generation.folder / "dataset.staged"
    dataset.save_to_disk(str(staged))
    del dataset
    shutil.rmtree(generation.dataset_path)
    staged.rename(generation.dataset_path)


def test_the_stored_phash_is_read_and_computed_only_where_missing(near_duplicate_index, tmp_path):
    import shutil

    import imagehash

    from retrieval.images import load_image

    collection, built = near_duplicate_index
    index_dir = tmp_path / "index"
    shutil.copytree(built, index_dir, symlinks=True)
    computed = evaluate_index(index_dir, progress=False).near_duplicates  # no column: every pHash computed

    _with_phash_column(index_dir, lambda name: str(imagehash.phash(load_image(collection / name))))
    stored = evaluate_index(index_dir, progress=False).near_duplicates
    assert stored == computed  # the stored hashes are the ones evaluation would compute

    # a column that says every image looks alike is believed (so it was read), a malformed entry is recomputed
    _with_phash_column(index_dir, lambda name: "" if name == "knee/k0.png" else "0" * 16)
    believed = evaluate_index(index_dir, progress=False).near_duplicates
    assert believed["pairs"] == 15 and believed["rows"] == 6  # the 6 rows with the same stored hash, pairwise


def test_the_training_protocols_and_evaluate_judge_with_one_precision_at_k():
    """Rows on a circle (angle in degrees): cosine order is angular order, so every top 5 is known by hand.
    chest at 0, 10, 22 and 100 (a chest row that looks like knee); knee at 90, 94, 107, 115. Seven rows find 3
    of their category in their top 5, the chest row at 100 degrees finds 1: P@5 = (7 * 0.6 + 0.2) / 8 = 0.55."""
    from retrieval.evaluation.leave_one_out import judge
    from retrieval.evaluation.protocols import in_sample_leave_one_out
    from retrieval.evaluation.rows import Item

    angles = np.radians([0, 10, 22, 100, 90, 94, 107, 115])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    categories = ["chest"] * 4 + ["knee"] * 4
    items = [Item(str(i), f"{c}/{i}.png", "", c, "", "s", "") for i, c in enumerate(categories)]
    keys = {CATEGORY: np.asarray(categories, dtype=object), LABEL: np.asarray([""] * 8, dtype=object)}

    by_evaluate = judge(rank_leave_one_out(vectors, 10), keys, {})[CATEGORY]["p@5"]
    by_training = in_sample_leave_one_out(items, vectors).summary(items)[CATEGORY]["p@5"]
    assert by_evaluate == by_training == 0.55


def test_anatomy_is_judged_by_body_part_beside_category_and_never_chosen_on():
    """Children's hand films (category hand) whose nearest rows from another source are fractured hands (category
    fracture, body part hand) found the right anatomy: category P@5 says 0, anatomy P@5 says 1. A row that names
    no body part is neither right nor wrong about anatomy (the fracture film at 11 degrees is passed over, not
    counted as a miss) and is not judged by it; what selection scores is the same with or without body parts."""
    from dataclasses import replace

    from retrieval.evaluation.figures import ANATOMY
    from retrieval.evaluation.protocols import cross_source
    from retrieval.evaluation.rows import Item
    from retrieval.training.selection import score

    rows = ([("children", "hand", "hand", a) for a in (0, 2, 4, 6, 8, 10)]
            + [("adults", "fracture", "hand", a) for a in (1, 3, 5, 7, 9)]
            + [("adults", "fracture", "", 11), ("adults", "hand", "hand", 60)]
            + [("knees", "knee", "knee", a) for a in (90, 92, 94, 96, 98, 100)])
    items = [Item(str(i), f"{c}/{i}.png", "", c, "", source, "", body_part=part)
             for i, (source, c, part, _) in enumerate(rows)]
    angles = np.radians([a for *_, a in rows])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    folds = np.asarray([("children", "adults", "knees").index(item.source) for item in items])
    summary = cross_source(items, lambda train: vectors, folds).summary(items)
    assert summary[CATEGORY]["per_source"]["children"]["p@5"] == 0.0  # five fractured hands, no hand category
    assert summary[ANATOMY]["per_source"]["children"]["p@5"] == 1.0  # ...all of them hands
    assert summary[ANATOMY]["queries"] == 12  # children's 6 and adults' 6 hands; no body part, or no knee elsewhere
    unnamed = [replace(item, body_part="") for item in items]
    assert ANATOMY not in cross_source(unnamed, lambda train: vectors, folds).summary(unnamed)
    assert score(summary) == score(cross_source(unnamed, lambda train: vectors, folds).summary(unnamed))


def test_a_figure_name_round_trips_through_the_summary(tmp_path):
    from retrieval.evaluation_summary import MODEL_FIGURES, ModelFigures
    from retrieval.layout import IndexGeneration

    generation = IndexGeneration(tmp_path)
    first = EvaluationSummary(rows=8, models={
        "image-model": ModelFigures({**dict.fromkeys(MODEL_FIGURES), DEFAULT_IMAGE_FIGURE: 0.8}, "image")})
    first.write(generation)
    EvaluationSummary(rows=8, models={"text-model": ModelFigures({DEFAULT_TEXT_FIGURE: 0.61}, "text")}).write(generation)

    stored = json.loads(generation.evaluation_path.read_text())
    assert stored["models"]["image-model"]["cross_source_category_p@5"] == 0.8  # the key the file has always had
    assert list(stored["models"]["image-model"]) == [*MODEL_FIGURES, "indexes"]  # headline figures first
    summary = EvaluationSummary.read(generation)  # a later run merges: the first model's figures stay
    assert summary.figure("image-model", DEFAULT_IMAGE_FIGURE) == 0.8
    assert summary.figure("text-model", DEFAULT_TEXT_FIGURE) == 0.61
    assert summary.figure("text-model", DEFAULT_IMAGE_FIGURE) is None and summary.figure("absent", "x") is None
    assert summary.models["image-model"].indexes == "image" and summary.measured_keys()[0] == DEFAULT_IMAGE_FIGURE


def test_a_summary_written_by_an_older_program_or_damaged_still_reads(tmp_path):
    from retrieval.layout import IndexGeneration

    generation = IndexGeneration(tmp_path)
    generation.evaluation_path.write_text(json.dumps({"models": {
        "tfidf": {"indexes": "text", "image_category_p@5": None, "text_category_p@5": 0.61, "old_figure": 0.5},
        "broken": "not a dict", "flag": {"text_category_p@5": True}}}))
    summary = EvaluationSummary.read(generation)
    assert summary.figure("tfidf", "text_category_p@5") == 0.61 and summary.figure("tfidf", "old_figure") == 0.5
    assert summary.figure("tfidf", DEFAULT_TEXT_FIGURE) is None  # an older file: nothing to choose text models by
    assert "broken" not in summary.models and summary.figure("flag", "text_category_p@5") is None
    generation.evaluation_path.write_text("{ not json")
    assert EvaluationSummary.read(generation).models == {}


def test_the_text_report_says_whether_the_hybrid_was_fitted_here_or_served_as_the_index_had_it():
    from retrieval.evaluation.report import hybrid_text

    level = {"p@5": 0.5}
    model = {"searches": "fusion", CATEGORY: level, LABEL: level, "all_queries": {CATEGORY: level, LABEL: level}}
    fitted = {"queries": 10, "judged_on": "test", "judged_queries": 4, "models": {"hybrid": model},
              "fusion": {"method": "m", "bias": 0.0, "weights": {"a": {"score": 1.0}},
                         "fitted_on": {"queries": 6, "split": "train"}}}
    fresh = {"queries": 7, "judged_on": "all", "judged_queries": 7, "models": {"hybrid": model},
             "fusion": "default (no training queries)"}
    assert "on the 4 test queries (the hybrid's fusion fitted on the train queries only)" in hybrid_text(fitted)[0]
    assert hybrid_text(fresh)[0].startswith("Text models side by side, P@5 on all 7 queries (the hybrid with the "
                                            "fusion the index serves: the file has no train queries to fit one)")
