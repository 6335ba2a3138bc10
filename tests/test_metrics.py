"""Retrieval metrics and the top-k ranking against examples computed by hand."""

import math

import numpy as np
import pytest

from retrieval.evaluation.metrics import (
    average_precision_at_k, confusion_matrix, hit_rate_at_k, mean_average_precision_at_k, precision_at_k,
    recall_at_k, relevance, row_normalise, top_k,
)

# ranks:       1  2  3  4  5     three relevant items exist in the collection
ONE_QUERY = [1, 0, 1, 0, 0]


def test_precision_counts_relevant_results_in_the_top_k():
    assert precision_at_k(ONE_QUERY, 1) == 1.0
    assert precision_at_k(ONE_QUERY, 3) == pytest.approx(2 / 3)
    assert precision_at_k(ONE_QUERY, 5) == pytest.approx(2 / 5)


def test_a_short_ranked_list_counts_missing_results_as_not_relevant():
    assert precision_at_k([1], 5) == pytest.approx(1 / 5)
    assert recall_at_k([1], 2, 5) == pytest.approx(1 / 2)


def test_recall_is_the_share_of_all_relevant_items_found():
    assert recall_at_k(ONE_QUERY, 3, 5) == pytest.approx(2 / 3)
    assert recall_at_k(ONE_QUERY, 3, 1) == pytest.approx(1 / 3)
    assert recall_at_k([1, 1, 1], 300, 3) == pytest.approx(3 / 300)  # bounded by k / n_relevant


def test_hit_rate_asks_whether_anything_relevant_is_in_the_top_k():
    assert hit_rate_at_k([0, 0, 0, 1], 2) == 0.0
    assert hit_rate_at_k([0, 0, 0, 1], 4) == 1.0


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3: (1/1 + 2/3) / min(5, 3)
    assert average_precision_at_k(ONE_QUERY, 3, 5) == pytest.approx((1 + 2 / 3) / 3)
    # one relevant item, found at rank 4: (1/4) / 1
    assert average_precision_at_k([0, 0, 0, 1], 1, 4) == pytest.approx(0.25)
    # all of the top k relevant is perfect even when many more relevant items exist
    assert average_precision_at_k([1, 1, 1], 10, 2) == 1.0
    assert average_precision_at_k([0, 0, 0], 2, 3) == 0.0


def test_queries_without_relevant_items_are_not_judged():
    assert math.isnan(average_precision_at_k([0, 0], 0, 2))
    assert math.isnan(recall_at_k([0, 0], 0, 2))
    relevant = np.array([[1, 0], [0, 0], [0, 1]], dtype=bool)
    # AP: 1.0, unjudged, 0.5 -> mean 0.75
    assert mean_average_precision_at_k(relevant, [1, 0, 1], 2) == pytest.approx(0.75)
    assert math.isnan(mean_average_precision_at_k(relevant, [0, 0, 0], 2))


def test_a_batch_of_queries_gives_one_value_per_query():
    relevant = np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)
    np.testing.assert_allclose(precision_at_k(relevant, 2), [0.5, 0.5])
    np.testing.assert_allclose(recall_at_k(relevant, [2, 4], 3), [1.0, 0.5])
    np.testing.assert_allclose(average_precision_at_k(relevant, [2, 2], 3), [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2])


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_must_be_a_positive_whole_number(k):
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(ONE_QUERY, k)


def test_confusion_matrix_counts_true_against_predicted():
    counts = confusion_matrix(["chest", "chest", "knee", "hand"], ["chest", "knee", "knee", "chest"],
                              ["chest", "knee", "hand"])
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_confusion_matrix_leaves_out_classes_it_was_not_given():
    counts = confusion_matrix(["chest", "skull"], ["skull", "chest"], ["chest"])
    np.testing.assert_array_equal(counts, [[0]])
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(["a"], ["a", "b"], ["a", "b"])


def test_row_normalise_turns_counts_into_shares():
    np.testing.assert_allclose(row_normalise([[1, 3], [0, 0]]), [[0.25, 0.75], [0.0, 0.0]])


def test_top_k_ranks_by_inner_product_best_first():
    index = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k(np.array([[1, 0.1]]), index, 3), [[0, 1, 2]])


def test_top_k_breaks_a_tie_at_the_cut_towards_the_lower_position_like_a_flat_index():
    index = np.zeros((40, 2), dtype=np.float32)  # forty equal scores; only three fit
    index[25] = [1, 0]
    np.testing.assert_array_equal(top_k(np.array([[1, 0]]), index, 4), [[25, 0, 1, 2]])


def test_top_k_never_returns_the_query_itself_or_an_excluded_position():
    index = np.eye(3, dtype=np.float32)
    ranked = top_k(index, index, 3, self_positions=np.array([0, -1, 2]), exclude={2: [1]})
    np.testing.assert_array_equal(ranked, [[1, 2, -1], [1, 0, 2], [0, -1, -1]])


def test_relevance_judges_ranked_positions_by_key_and_never_an_empty_key():
    ranked = np.array([[1, 2, -1], [0, 2, 1]])
    keys = np.array(["chest", "chest", "knee"], dtype=object)
    np.testing.assert_array_equal(relevance(np.array(["chest", ""], dtype=object), keys, ranked),
                                  [[True, False, False], [False, False, False]])
