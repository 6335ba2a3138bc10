"""Negated words in word TF-IDF: "hip fracture" finds the fractured hips, not the rows that say "no fracture", and
"hip without fracture" finds those; the marking reaches a few words to the clause's end, leaves hyphenated label
codes alone, and an index built before it is read as it was built."""

import json

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.embedders import embedder_spec
from retrieval.negation import mark_negation
from retrieval.search import SearchEngine


@pytest.mark.parametrize("text, marked", [
    ("not fractured, no fracture", "not no_fractured , no no_fracture"),
    ("trauma film of the leg, negative for fracture", "trauma film of the leg , negative for no_fracture"),
    ("no acute cardiopulmonary disease seen", "no no_acute no_cardiopulmonary no_disease seen"),
    ("knee without arthritis but with effusion", "knee without no_arthritis but with effusion"),
    ("Normal knee, No osteoarthritis (grade 0)", "normal knee , no no_osteoarthritis ( grade 0 )"),
])
def test_words_in_a_negations_reach_are_marked_up_to_three_words_and_the_clauses_end(text, marked):
    assert mark_negation(text) == marked


def test_a_negation_word_is_never_looked_up_nor_named_as_a_word_the_collection_lacks():
    """WordNet would read "negative" as "positive": the cue is the query's grammar, not a word to search for."""
    from retrieval.expansion import expansion_terms
    from retrieval.query_words import query_words

    vocabulary = {"fracture", "positive", "leg"}
    assert expansion_terms("leg, negative for fracture", vocabulary) == []
    found = query_words("leg, negative for fracture", {"leg", "fracture"}, vocabulary, negation=True)
    assert found.unknown == () and found.read_as == {} and found.negated == ("fracture",)


def test_hyphenated_codes_and_text_without_a_negation_are_left_as_they_are():
    assert mark_negation("non-odontogenic lesion, not-fractured") == "non-odontogenic lesion , not-fractured"
    assert mark_negation("hip fracture") == "hip fracture"


ROWS = ([{"file_name": f"fracture/hip{i}.png", "category": "fracture", "label": "fractured", "body_part": "hip",
          "caption": "Hip radiograph (frontal view), fractured", "kind": "disc"} for i in range(3)]
        + [{"file_name": f"fracture/intact{i}.png", "category": "fracture", "label": "not-fractured",
            "body_part": "hip", "caption": "Hip radiograph (frontal view), not fractured", "kind": "bright"}
           for i in range(3)])


@pytest.fixture
def fracture_engine(tmp_path):
    build_test_index(ROWS, tmp_path / "index", ["tfidf", "tfidf-chars"])
    return SearchEngine(tmp_path / "index")


def test_a_fracture_query_finds_the_fractured_rows_and_a_negated_one_the_others(fracture_engine):
    found = fracture_engine.search_text("hip fracture", model="tfidf", k=3, min_score=-1.0)
    assert [hit.label for hit in found] == ["fractured"] * 3
    found = fracture_engine.search_text("hip without fracture", model="tfidf", k=3, min_score=-1.0)
    assert [hit.label for hit in found] == ["not-fractured"] * 3
    assert found.query_words.negated == ("fracture",) and "negated" in found.query_words.sentence()
    letters = fracture_engine.search_text("hip without fracture", model="tfidf-chars", k=3, min_score=-1.0)
    assert letters.query_words.negated == ()  # letter pieces read "fracture" as it is: nothing to say


TEXTS = ["hip radiograph, fractured", "hip radiograph, not fractured, no fracture"]


def test_the_marking_is_saved_with_the_state_and_a_state_saved_without_it_is_read_without_it(tmp_path):
    marked = embedder_spec("tfidf").factory()
    marked.fit(TEXTS)
    marked.save_state(tmp_path / "now")
    assert json.loads((tmp_path / "now" / "tfidf.json").read_text())["negation"] is True
    restored = embedder_spec("tfidf").factory()
    restored.load_state(tmp_path / "now")
    assert restored.marks_negation
    np.testing.assert_allclose(restored.embed_texts(["hip fracture"]), marked.embed_texts(["hip fracture"]))

    before = embedder_spec("tfidf").factory()
    before.marks_negation = False
    before.__init__()
    before.fit(TEXTS)
    before.save_state(tmp_path / "before")
    state = json.loads((tmp_path / "before" / "tfidf.json").read_text())
    del state["negation"]  # as an index built before the marking wrote it
    (tmp_path / "before" / "tfidf.json").write_text(json.dumps(state))
    old = embedder_spec("tfidf").factory()
    old.load_state(tmp_path / "before")
    assert not old.marks_negation  # what the status line asks (encoder.marks_negation)
    assert "no_fracture" not in old.vocabulary and "no_fracture" in marked.vocabulary
    np.testing.assert_allclose(old.embed_texts(["hip fracture"]), before.embed_texts(["hip fracture"]))


def test_letter_n_grams_are_not_marked():
    chars = embedder_spec("tfidf-chars").factory()
    chars.fit(TEXTS)
    assert not any("no_" in term for term in chars.vocabulary)
