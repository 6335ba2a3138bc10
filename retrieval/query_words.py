"""What the collection's own words make of a text query: the query words that no row's metadata text has, where
the hybrid expanded its word TF-IDF query (expansion.py) what it read each unknown word as, and the words the word
search read as negated (negation.py).

Why: every text model answers with the nearest rows whatever the words, so "OPG" (a word no caption has) returns
chest films ranked by letter pieces and meaning, with nothing to say so. Saying which words the collection lacks,
and that "broken" was read as "fracture", lets the person judge the results and rephrase; search engines say it
the same way ("Missing: …"). Words are taken as the word TF-IDF tokenizer takes them and compared lower-cased, and
named as typed; stop words and single letters are never reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Container, Iterable

TOKEN = re.compile(r"(?u)\b\w[\w\-]*\b")  # the word TF-IDF's token_pattern (embedders/builtin.py)
SHOWN = 5  # words named in each part of the sentence at most (a long query stays one line)


@dataclass(frozen=True)
class QueryWords:
    """`unknown`: the query's words no row's text has, in query order, as first typed; `read_as`: for those
    the hybrid's word search replaced, the collection's words it searched for instead (empty where the
    vocabularies knew none); `negated`: the words the word search read as negated ("fracture" in "knee without
    fracture": it matches rows that say "no fracture", negation.py), lower-cased."""

    unknown: tuple[str, ...] = ()
    read_as: dict[str, tuple[str, ...]] = field(default_factory=dict)
    negated: tuple[str, ...] = ()

    def sentence(self) -> str:
        """One plain line for the status, the CLI and the API ("" when every word is the collection's and none
        is negated)."""
        negated = (f"Read as negated by the keyword search: {', '.join(f'“{w}”' for w in self.negated[:SHOWN])}."
                   if self.negated else "")
        if not self.unknown:
            return negated
        read = [f"“{word}” → {', '.join(self.read_as[word][:4])}" for word in self.unknown
                if self.read_as.get(word)][:SHOWN]
        missing = [f"“{word}”" for word in self.unknown if not self.read_as.get(word)][:SHOWN]
        parts = []
        if missing:
            parts.append(f"No image's text has the word{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                         "these are the nearest images by meaning, spelling and the query's other words.")
        if read:
            parts.append(f"Not words of the collection, also searched as: {'; '.join(read)} (WordNet, medical "
                         "abbreviations, spelling).")
        return " ".join(parts + [negated] if negated else parts)


def words_of(texts: Iterable[str]) -> frozenset[str]:
    """Every word of `texts`, lower-cased, as the word TF-IDF tokenizer finds them."""
    return frozenset(word for text in texts for word in TOKEN.findall(text.lower()))


def query_words(text: str, known: Container[str], vocabulary: Container[str] | None = None,
                stop: Container[str] | None = None, negation: bool = False) -> QueryWords:
    """The `text`'s words not in `known` (the collection's words, `words_of`) and not stop words, each once; with
    the hybrid's word TF-IDF `vocabulary`, what its expansion (expansion.py) searched for each of them instead;
    with `negation` (the word search marks negated words), the words in a negation's reach."""
    from .expansion import _stop_words, expansion_terms
    from .negation import negated_words

    if stop is None:
        stop = _stop_words()
    first = {}  # each word once, as first typed ("OPG", not "opg"): what the person wrote
    for word in TOKEN.findall(text):
        if len(word) > 1 and word.lower() not in known and word.lower() not in stop:
            first.setdefault(word.lower(), word)
    unknown = tuple(first.values())
    negated = tuple(negated_words(text)) if negation else ()
    if vocabulary is None:
        return QueryWords(unknown, negated=negated)
    found = {word: tuple(expansion_terms(word, vocabulary)) for word in unknown if word.lower() not in vocabulary}
    return QueryWords(unknown, {word: terms for word, terms in found.items() if terms}, negated)


__all__ = ["QueryWords", "query_words", "words_of"]
