"""Property: whatever the options, the library answers exactly when the options are valid, with well-formed
results, and otherwise raises the error that names what is wrong."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.errors import BadQuery, RetrievalError, UnknownEmbedder
from retrieval.options import K_MAX, K_MIN, MAX_QUERY_CHARS
from retrieval.ranking import DUPLICATE_MARGIN
from retrieval.search import SearchEngine

TEXT_MODELS, IMAGE_MODELS = {"keywords", "tfidf"}, {"brightness"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, module_fake_models):
    from conftest import build_test_index

    rows = [{"file_name": f"{c}/{c}{i}.png", "category": c, "caption": f"{c} radiograph", "kind": kind}
            for c, kind in (("chest", "bright"), ("knee", "stripes"), ("hand", "disc")) for i in range(4)]
    index = tmp_path_factory.mktemp("prop") / "index"
    build_test_index(rows, index, ["keywords", "brightness", "tfidf"])
    return SearchEngine(index)


ks = st.one_of(st.integers(-5, 30), st.floats(allow_nan=True), st.none(), st.booleans(), st.text(max_size=3))
scores = st.one_of(st.none(), st.floats(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2),
                   st.text(max_size=3))
categories = st.one_of(st.none(), st.sampled_from(["", "chest", "knee", "hand", "elbow", "CHEST", "chest "]),
                       st.text(max_size=8))
models = st.one_of(st.none(), st.sampled_from(["keywords", "brightness", "tfidf", "minilm", "nope", ""]),
                   st.text(max_size=10))
texts = st.one_of(st.text(max_size=60), st.sampled_from(["knee", "chest", "  ", "☃ 🩻", "a:b OR (c*)", "x" * 2000]))


def option_error(engine, k, category, min_score):
    """The error the shared options deserve, or None when they are valid."""
    if isinstance(k, bool) or not isinstance(k, int) or not K_MIN <= k <= K_MAX:
        return BadQuery
    if category and category not in engine.catalogue.categories:
        return BadQuery
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float))
                                  or not -1.0 <= min_score <= 1.0):
        return BadQuery
    return None


def model_error(model, usable):
    if not model:
        return None  # the index's default model
    if model not in TEXT_MODELS | IMAGE_MODELS:
        return UnknownEmbedder  # not registered, or registered but not in this index
    return None if model in usable else BadQuery


def check_results(hits, k, category, min_score):
    assert len(hits) <= int(k) <= K_MAX
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    # by score, except that a repeated metadata text may yield to another one scoring a little lower
    assert all(hits[i].score >= hits[i + 1].score - DUPLICATE_MARGIN - 1e-6 for i in range(len(hits) - 1))
    assert all(math.isfinite(h.score) for h in hits)
    if category:
        assert all(h.category == category for h in hits)
    if min_score is not None:
        assert all(h.score >= min_score for h in hits)


def outcome(call):
    try:
        return call(), None
    except RetrievalError as error:
        assert str(error)  # a message a person can read
        return None, error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, model=models, k=ks, category=categories, min_score=scores)
def test_text_search_answers_valid_options_and_names_the_invalid_one(engine, text, model, k, category, min_score):
    result, error = outcome(lambda: engine.search_text(text, model=model or None, k=k, category=category,
                                                       min_score=min_score))
    words = " ".join(text.split())
    expected = (BadQuery if not words or len(words) > MAX_QUERY_CHARS else None) \
        or model_error(model, TEXT_MODELS) or option_error(engine, k, category, min_score)
    if expected is None:
        assert error is None, error
        check_results(result.hits, k, category, min_score)
    else:
        assert isinstance(error, expected), (expected, error)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.one_of(st.sampled_from(["chest/chest0", "knee/knee3", "hand/hand1"]), st.text(max_size=12)),
       model=models, k=ks, category=categories, min_score=scores)
def test_more_like_this_answers_valid_options_and_names_the_invalid_one(engine, item, model, k, category,
                                                                        min_score):
    result, error = outcome(lambda: engine.similar(item, model=model or None, k=k, category=category,
                                                   min_score=min_score))
    expected = (BadQuery if item not in engine.catalogue.ids else None) \
        or model_error(model, TEXT_MODELS | IMAGE_MODELS) or option_error(engine, k, category, min_score)
    if expected is None:
        assert error is None, error
        check_results(result.hits, k, category, min_score)
        assert item not in [h.id for h in result]
    else:
        assert isinstance(error, expected), (expected, error)


def test_a_valid_query_that_matches_nothing_is_an_empty_answer_not_an_error(engine):
    result = engine.similar("chest/chest0", model="brightness", k=5, min_score=1.0)
    stored = engine.store.vector("brightness", engine.catalogue.row("chest/chest0"))
    assert result.hits == [] and np.isfinite(stored).all()
