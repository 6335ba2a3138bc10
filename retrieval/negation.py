"""Negated words marked for word TF-IDF: "not fractured, no fracture" must not match "hip fracture".

Word TF-IDF counts "fracture" in "no fracture" like any other, so a row labelled not fractured (its category is
"fracture" too) matched "hip fracture" as well as a fractured one, and the hybrid put the intact hips first. Here,
as in NegEx (Chapman et al. 2001), the words in a negation's reach are written as other terms ("no fracture" ->
"no no_fracture"), in the rows' text and in the query alike: "knee without fracture" then matches the rows that
say "no fracture", and "hip fracture" no longer does.

The reach was fixed in advance, not fitted: after "no", "not", "without", "non" or "negative" as a word of its own
(so "non-odontogenic" and "not-fractured", single terms, stay as they are), the next MAX_REACH words that are not
English stop words, up to the end of the clause (, ; : . ( ) or "but").
"""

from __future__ import annotations

import re

CUES = frozenset({"no", "not", "without", "non", "negative"})
MAX_REACH = 3
PREFIX = "no_"
_TOKEN = re.compile(r"\w[\w\-]*|[,;:.()]")
_CLAUSE_END = frozenset({",", ";", ":", ".", "(", ")", "but"})


def mark_negation(text: str) -> str:
    """`text` lower-cased, each word in a negation's reach prefixed with PREFIX; punctuation kept as its own token
    so the vectorizer still splits there."""
    return " ".join(PREFIX + token if negated else token for token, negated in _tokens(text))


def negated_words(text: str) -> list[str]:
    """The words of `text` in a negation's reach, lower-cased, each once in order (what a query's status names)."""
    return list(dict.fromkeys(token for token, negated in _tokens(text) if negated))


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, whether it is in a negation's reach), lower-cased, punctuation as tokens of its own."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    out, reach = [], 0
    for token in _TOKEN.findall(text.lower()):
        negated = False
        if token in _CLAUSE_END:
            reach = 0
        elif token in CUES:
            reach = MAX_REACH
        elif reach and token not in ENGLISH_STOP_WORDS:
            negated, reach = True, reach - 1
        out.append((token, negated))
    return out
