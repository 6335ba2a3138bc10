"""A text query says which of its words no image's text has, and what the hybrid's word search read them as: in
the result, the CLI and the API's status line."""

from __future__ import annotations

from retrieval import expansion
from retrieval.query_words import QueryWords, query_words, words_of

KNOWN = words_of(["Knee radiograph, Kellgren-Lawrence grade 4", "PA chest radiograph . pneumonia"])


def test_the_unknown_words_are_those_no_row_has_each_once_in_query_order():
    found = query_words("Knee OPG of the knee, opg AIS x", KNOWN)
    assert found.unknown == ("OPG", "AIS")  # once, as first typed; stop words and single letters left out
    assert found.read_as == {}
    sentence = found.sentence()
    assert "“OPG”, “AIS”" in sentence and "No image's text has the words" in sentence
    assert query_words("knee kellgren-lawrence pneumonia", KNOWN).unknown == ()  # tokens as TF-IDF's
    assert QueryWords().sentence() == ""
    many = query_words(" ".join(f"zz{i}" for i in range(40)), KNOWN, vocabulary={"knee"}, stop=set())
    assert len(many.unknown) == 40 and many.sentence().count("“") <= 10  # five of each kind at most


def test_what_an_unknown_word_was_read_as_is_said_and_only_where_the_vocabularies_gave_words():
    vocabulary = {"fractured", "fracture", "knee"}
    found = query_words("broken OPG knee", KNOWN, vocabulary)
    assert found.unknown == ("broken", "OPG") and set(found.read_as) == {"broken"}
    assert set(found.read_as["broken"]) <= vocabulary and "fractured" in found.read_as["broken"]  # WordNet's
    sentence = found.sentence()
    assert "“broken” → " in sentence and "No image's text has the word “OPG”" in sentence
    assert query_words("Fx", KNOWN, vocabulary).read_as == {"Fx": ("fracture",)}  # an abbreviation, as typed
    if expansion.sources()["rapidfuzz"]:
        assert query_words("fracure knee", KNOWN, vocabulary).read_as == {"fracure": ("fracture",)}  # respelled


def test_words_the_keyword_search_reads_as_negated_are_named_only_where_it_reads_negation():
    found = query_words("knee without fracture, no effusion", KNOWN, negation=True)
    assert found.negated == ("fracture", "effusion") and found.unknown == ("fracture", "effusion")
    assert found.sentence().endswith("Read as negated by the keyword search: “fracture”, “effusion”.")
    known = query_words("knee without kellgren-lawrence grade", KNOWN, negation=True)
    assert known.unknown == () and known.sentence() == (
        "Read as negated by the keyword search: “kellgren-lawrence”, “grade”.")
    assert query_words("knee without fracture", KNOWN).negated == ()  # a search that does not mark negation


def test_the_engine_names_the_words_its_collection_lacks_and_what_the_hybrid_searched_instead(subset_engine):
    assert subset_engine.search_text("knee radiograph", model="tfidf").query_words.unknown == ()
    plain = subset_engine.search_text("knee zzqxj", model="minilm")
    assert plain.query_words.unknown == ("zzqxj",) and plain.query_words.read_as == {}  # no expansion outside
    fused = subset_engine.search_text("broken zzqxj", model="hybrid")
    assert fused.query_words.unknown == ("broken", "zzqxj")
    vocabulary = subset_engine.encoder.vocabulary("tfidf")
    terms = fused.query_words.read_as["broken"]
    assert terms and all(term in vocabulary for term in terms)
    searched = subset_engine.encoder.expanded_text("tfidf", "broken zzqxj").split()
    assert set(terms) <= set(searched)  # what the note says is what the word search looked for


def test_the_cli_prints_the_sentence(subset_index, capsys):  # the API status: tests/test_app.py
    from retrieval.cli import main

    assert main(["search", "--index", str(subset_index), "--text", "knee zzqxj", "--model", "tfidf",
                 "--min-score", "0"]) == 0
    assert "No image's text has the word “zzqxj”" in capsys.readouterr().out
