"""Negated words marked for word TF-IDF: "not fractured, no fracture" must not match "hip fracture".

Word TF-IDF counts "fracture" in "no fracture" like any other, so a row labelled not fractured (its category is
"fracture" too) matched "hip fracture" as well as a fractured one, and the hybrid put the intact hips first. Here,
as in NegEx (Chapman et al. 2001), the words in a negation's reach are written as other terms ("no fracture" ->
"no no_fracture"), in the rows' text and in the query alike: "knee without fracture" then matches the rows that
say "no fracture", and "hip fracture" no longer does.

The hybrid also reads it as one fused feature (hybrid.py, `Fusion.conflict`): whether a row denies a word the query
affirms. MiniLM reads "not fractured" much as "fractured", so without it "hand with a broken bone" listed intact
hands first; the feature's weight is fitted with the others, on the train queries.

The reach was fixed in advance, not fitted: after "no", "not", "without", "non" or "negative" as a word of its own
(so "non-odontogenic" and "not-fractured", single terms, stay as they are), the next MAX_REACH words that are not
English stop words, up to the end of the clause (, ; : . ( ) or "but").
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import numpy as np

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


def affirmed_words(text: str) -> frozenset[str]:
    """The words `text` names outside every negation's reach (not the cues, not English stop words): what a
    query asks for."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(token for token, negated in _tokens(text) if not negated and token not in CUES
                     and token not in _CLAUSE_END and token not in ENGLISH_STOP_WORDS)


def denied_words(text: str) -> frozenset[str]:
    """The words `text` names only in a negation's reach, never outside one: what a row denies ("hand, not
    fractured" denies "fractured"; "fracture. not fractured, no fracture" denies "fractured" but not "fracture",
    which it also names as its category)."""
    tokens = _tokens(text)
    return frozenset(token for token, negated in tokens if negated) - {token for token, negated in tokens
                                                                       if not negated}


class Denials:
    """The findings each row of a collection denies: the words of its text in a negation's reach and nowhere
    else (`denied_words`) that are words of the collection's labels, read the first time a query asks; and the
    hybrid's contradiction feature from them.

    Only label words, because a negation's reach also covers what is not denied: "no lung nodule" denies the
    nodule, not the lung, and "(measured, not read from the film)" denies nothing a person searches for."""

    def __init__(self, texts: Sequence[str], labels: Iterable[str]):
        self._texts = texts
        self.findings = frozenset(word for label in labels for word in re.findall(r"[a-z0-9]+", str(label).lower())
                                  if word not in CUES)
        self._denied: dict[int, frozenset[str]] = {}

    def denied(self, row: int) -> frozenset[str]:
        found = self._denied.get(row)
        if found is None:
            found = self._denied[row] = denied_words(self._texts[row]) & self.findings
        return found

    def conflicts(self, asked: Iterable[str]) -> Callable[[np.ndarray], np.ndarray]:
        """rows -> (len(rows),) 1.0 where the row denies one of the words `asked` (what a query affirms, with
        the words its expansion reads them as), else 0.0."""
        asked = frozenset(asked) & self.findings
        return lambda rows: np.fromiter((not asked.isdisjoint(self.denied(int(row))) for row in rows),
                                        dtype=np.float64, count=len(rows))


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
