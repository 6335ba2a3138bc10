"""Property: whatever the options, the library answers well-formed results or raises its own clear error."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import register_fakes
from retrieval.errors import RetrievalError
from retrieval.index import build_index
from retrieval.search import K_MAX, SearchEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from conftest import synthetic_image, write_collection

    register_fakes()
    rows = [{"file_name": f"{c}/{c}{i}.png", "category": c, "caption": f"{c} radiograph", "kind": kind}
            for c, kind in (("chest", "bright"), ("knee", "stripes"), ("hand", "disc")) for i in range(4)]
    root = write_collection(tmp_path_factory.mktemp("prop") / "collection", rows)
    index = tmp_path_factory.mktemp("prop-index") / "index"
    build_index(root, index, models=["keywords", "brightness", "tfidf"], progress=False, log=lambda *_: None)
    return SearchEngine(index)


ks = st.one_of(st.integers(-5, 30), st.floats(allow_nan=True), st.none(), st.booleans(), st.text(max_size=3))
scores = st.one_of(st.none(), st.floats(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2),
                   st.text(max_size=3))
categories = st.one_of(st.none(), st.sampled_from(["", "chest", "knee", "hand", "elbow", "CHEST", "chest "]),
                       st.text(max_size=8))
models = st.one_of(st.none(), st.sampled_from(["keywords", "brightness", "tfidf", "minilm", "nope", ""]),
                   st.text(max_size=10))
texts = st.one_of(st.text(max_size=60), st.sampled_from(["knee", "chest", "  ", "☃ 🩻", "a:b OR (c*)", "x" * 2000]))


def check_results(hits, k, category, min_score):
    assert len(hits) <= int(k) <= K_MAX
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(hits[i].score >= hits[i + 1].score - 1e-6 for i in range(len(hits) - 1))
    assert all(math.isfinite(h.score) for h in hits)
    if category:
        assert all(h.category == category for h in hits)
    if isinstance(min_score, (int, float)) and min_score is not None:
        assert all(h.score >= min_score for h in hits)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, model=models, k=ks, category=categories, min_score=scores)
def test_text_search_options(engine, text, model, k, category, min_score):
    try:
        hits = engine.search_text(text, model=model or None, k=k, category=category, min_score=min_score)
    except RetrievalError as error:
        assert str(error)  # a message a person can read
        return
    check_results(hits, k, category, min_score)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.one_of(st.sampled_from(["chest/chest0", "knee/knee3", "hand/hand1"]), st.text(max_size=12)),
       model=models, k=ks, category=categories, min_score=scores)
def test_more_like_this_options(engine, item, model, k, category, min_score):
    try:
        hits = engine.similar(item, model=model or None, k=k, category=category, min_score=min_score)
    except RetrievalError as error:
        assert str(error)
        return
    check_results(hits, k, category, min_score)
    assert item not in [h.id for h in hits]
