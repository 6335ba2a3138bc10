"""The "no close match" judgement of an index: over its image models, where each model's scorer alone misses what
the other sees: the trained model's scorer tells a radiograph of content the collection lacks best (left-out
categories), but it takes pure noise, a page of text or a colour photo for a hand film; the ImageNet model places
those further from every row than any radiograph from another hospital ever is. No training query is a
non-radiograph, so no scorer can learn that; a plain floor on similarity says it.

The rule (`JointJudge.judge`): a query is in the collection when the content scorer says so at the joint's own
threshold AND, for every model of the joint, its nearest row is at least as similar as the nearest row of the
least similar in-collection query searched across sources (the model's `floor`: the lowest top similarity among
the in-collection examples of novelty_evidence.collect_evidence). A floor that vetoes gives `match_score` 0: nothing the
collection taught was that far from its nearest row. At most `MAX_MODELS` models join, so a query is embedded at
most once more than by its ranking model. An index of one image model gets a judge of that one model (its rule
chosen, its floor): the same choices, nothing picked by a figure that reports.

Which models join (where the index has more than `MAX_MODELS`), which one's scorer judges content and by which
threshold rule (novelty.RULES) are chosen inside the training sources (`choose`): each candidate is judged by
leaving each training source out in turn (its scorer fit, thresholds and floors from the others), and the one that
abstains on the most left-out-category queries while abstaining on at most `CEILING` of in-collection ones wins
(none does: the fewest in-collection abstentions).
`outer_figures` nests that whole choice inside each reporting source's fold, so no figure that reports judged a
choice. Tried and not kept (docs/evaluation.md): both scorers' levels chosen jointly on the training folds.
"""

from __future__ import annotations

import time
from itertools import combinations
from dataclasses import dataclass, field

import numpy as np

from .novelty import RULES, TARGET_ABSTENTION, Fits, Judgement, NoveltyModel, auroc, choose_thresholds, outer_judgements
from .novelty_evidence import Evidence, collect_evidence

VERSION = 3  # of the rule and its stored form: a different version refits (3: one model judges too; models chosen)
MAX_MODELS = 2  # each joined model embeds the query: the ranking model plus at most one more
CEILING = 0.05  # in-collection queries a choice may let abstain on the training sources (the target)


@dataclass
class JointJudge:
    """The content scorer's model and its threshold rule (chosen inside the training sources), its thresholds
    (overall, and per voted category in its scorer's category order; nan: the overall one), each joined model's
    similarity floor, and what it was fitted on (every image model's novelty digest, the candidates: a rebuild
    whose scorers are unchanged takes it over)."""

    content: str
    rule: str
    min_match: float
    category_min_match: np.ndarray
    floors: dict[str, float]
    fitted_on: dict[str, str]
    figures: dict = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return sorted(self.floors)

    @property
    def name(self) -> str:
        """What judged, as `SearchResult.judged_by` says it: the joined models, e.g. "efficientnet-lite0+xray-lite0"."""
        return "+".join(self.models)

    def judge(self, scorers: dict[str, NoveltyModel], queries: dict[str, tuple]) -> Judgement:
        """`queries`: per joined model, (unit vector, similarities of its nearest rows best first, their
        categories), as `NoveltyModel.judge` takes them."""
        judgement = scorers[self.content].judge(*queries[self.content],
                                                thresholds=(self.min_match, self.category_min_match))
        if any(len(queries[m][1]) and float(queries[m][1][0]) < self.floors[m] for m in self.models):
            return Judgement(False, 0.0, judgement.min_match)
        return judgement

    def to_json(self) -> dict:
        return {"version": VERSION, "content": self.content, "rule": self.rule,
                "min_match": round(float(self.min_match), 6),
                "category_min_match": [None if np.isnan(v) else round(float(v), 6) for v in self.category_min_match],
                "floors": {m: round(v, 6) for m, v in self.floors.items()}, "fitted_on": self.fitted_on,
                "figures": self.figures}

    @classmethod
    def from_json(cls, payload: dict) -> "JointJudge":
        """Raises ValueError for a payload of another version or without a judge (the reason it has none)."""
        if payload.get("version") != VERSION or "content" not in payload:
            raise ValueError(f"joint novelty version {payload.get('version')}, this program reads {VERSION}")
        per_category = np.asarray([np.nan if v is None else v for v in payload["category_min_match"]], dtype=np.float64)
        return cls(payload["content"], payload["rule"], float(payload["min_match"]), per_category,
                   {m: float(v) for m, v in payload["floors"].items()}, dict(payload["fitted_on"]),
                   dict(payload.get("figures", {})))


def floor_of(evidence: Evidence, chosen: np.ndarray) -> float:
    """The lowest top similarity among the `chosen` in-collection examples: no query of the collection from an
    unseen source was further from its nearest row."""
    inside = chosen & evidence.in_collection
    return float(evidence.x[inside, 0].min()) if inside.any() else -1.0


def candidates(scorers: dict[str, dict]) -> list[str]:
    """The image models a judge chooses among: those whose stored scorer is fitted (`scorers`: model -> its
    stored JSON)."""
    return sorted(m for m, p in scorers.items() if "coef" in p)


def groups_of(models) -> list[tuple[str, ...]]:
    """The sets of models that may join: every `MAX_MODELS` of them (all, where there are fewer)."""
    return list(combinations(sorted(models), min(MAX_MODELS, len(models))))


def learn_joint(vectors: dict[str, np.ndarray], digests: dict[str, str], categories: list[str],
                sources: list[str], target: float = TARGET_ABSTENTION) -> JointJudge:
    """Fit the judge of the `vectors` (model -> stored vectors in row order; one model or more) on the rows'
    categories and sources: the joined models, the content scorer and its rule chosen on every source (`choose`),
    then its thresholds and the joined models' floors; with its nested figures (`outer_figures`)."""
    began = time.perf_counter()
    names = sorted({c for c in categories if c})
    codes = np.asarray([names.index(c) if c else -1 for c in categories], dtype=np.int64)
    known = codes >= 0
    origin = np.asarray(sources, dtype=object)[known]
    evidence = {m: collect_evidence(np.asarray(v, dtype=np.float32)[known], codes[known], origin, len(names))
                for m, v in vectors.items()}  # the same rows in the same order for every model
    fits = {m: Fits(e) for m, e in evidence.items()}
    everything = np.ones(len(next(iter(evidence.values())).x), dtype=bool)
    group, content, rule, inner = choose(evidence, fits, everything, len(names), target)
    min_match, category_min_match = choose_thresholds(evidence[content], everything, target, len(names), rule,
                                                      fits[content])
    floors = {m: floor_of(evidence[m], everything) for m in group}
    figures = {**outer_figures(evidence, names, target, fits), "chosen_on_every_source": inner,
               "seconds": round(time.perf_counter() - began, 3)}
    return JointJudge(content, rule, min_match, category_min_match, floors, dict(digests), figures)


def choose(evidence: dict[str, Evidence], fits: dict[str, Fits], chosen: np.ndarray, width: int,
           target: float) -> tuple[tuple[str, ...], str, str, dict]:
    """(joined models, content model, threshold rule, each candidate's figures) chosen on the `chosen` sources
    alone: each of them left out in turn of the candidate scorer's fit and thresholds and of the floors, then
    judged (as `outer_figures` judges the reporting sources). The most left-out-category queries abstaining, with
    at most `CEILING` of in-collection ones; if no candidate holds that, the fewest in-collection abstentions."""
    inside = next(iter(evidence.values())).in_collection
    alone = {}
    for content in sorted(evidence):
        for rule in RULES:
            scores, thresholds, _ = outer_judgements(evidence[content], width, target, rule, chosen, fits[content])
            judged = ~np.isnan(scores)
            alone[(content, rule)] = judged, judged & (scores < np.where(judged, thresholds, 0.0))
    vetoes = {m: _vetoes(e, chosen) for m, e in evidence.items()}
    groups = groups_of(evidence)
    candidates = {}
    for group in groups:
        vetoed = np.any([vetoes[m] for m in group], axis=0)
        for content in group:
            for rule in RULES:
                judged, abstains = alone[(content, rule)]
                candidates[(group, content, rule)] = _rates(inside[judged], (abstains | vetoed)[judged])
    best = pick(candidates)
    return (*best, {_label(key, len(groups) > 1): rates for key, rates in candidates.items()})


def _label(key: tuple, with_group: bool) -> str:
    """"content rule", or "a+b: content rule" where the joined models were a choice too."""
    group, content, rule = key
    return f"{'+'.join(group)}: {content} {rule}" if with_group else f"{content} {rule}"


def pick(candidates: dict) -> object:
    """The key of the candidate (its rates, as `_rates` gives them) that abstains on the most left-out queries
    among those abstaining on at most `CEILING` of in-collection ones; none such: the fewest in-collection
    abstentions. Ties: the first."""
    inside = lambda key: candidates[key]["abstain_in_collection"] or 0.0  # noqa: E731
    held = [key for key in candidates if inside(key) <= CEILING]
    if held:
        return max(held, key=lambda key: candidates[key]["abstain_left_out"] or 0.0)
    return min(candidates, key=inside)


def _vetoes(evidence: Evidence, chosen: np.ndarray) -> np.ndarray:
    """Which `chosen` examples one model's floor vetoes, each source's by a floor from the other chosen sources."""
    vetoed = np.zeros(len(evidence.x), dtype=bool)
    for source in np.unique(evidence.source[chosen]):
        train, test = chosen & (evidence.source != source), chosen & (evidence.source == source)
        vetoed[test] = evidence.x[test, 0] < floor_of(evidence, train)
    return vetoed


def outer_figures(evidence: dict[str, Evidence], names: list[str], target: float,
                  fits: dict[str, Fits] | None = None) -> dict:
    """Each source in turn left out of everything (the choice of joined models, content scorer and rule, that
    scorer's fit and thresholds, every floor), then its queries judged: the joint rule's abstention beside the
    content scorer's alone and the floors' alone, overall, per category and per source (with what was chosen
    without it), and the AUROC of the match scores it answered (a veto answers 0)."""
    fits = fits or {m: Fits(e) for m, e in evidence.items()}
    reference = next(iter(evidence.values()))
    size = len(reference.x)
    match, alone, vetoed = np.full(size, np.nan), np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    per_source, chosen_counts = {}, {}
    for source in np.unique(reference.source):
        train, test = reference.source != source, reference.source == source
        if np.unique(reference.in_collection[train]).size < 2:
            continue
        group, content, rule, _ = choose(evidence, fits, train, len(names), target)
        overall, per_category = choose_thresholds(evidence[content], train, target, len(names), rule, fits[content])
        match[test] = fits[content].scores(train, test)
        thresholds = np.where(np.isnan(per_category[evidence[content].voted[test]]), overall,
                              per_category[evidence[content].voted[test]])
        alone[test] = match[test] < thresholds
        floors = {m: floor_of(evidence[m], train) for m in group}
        for m in group:
            vetoed[test] |= evidence[m].x[test, 0] < floors[m]
        label = _label((group, content, rule), len(evidence) > MAX_MODELS)
        chosen_counts[label] = chosen_counts.get(label, 0) + 1
        per_source[str(source)] = {"models": list(group), "content": content, "rule": rule,
                                   "floors": {m: round(v, 4) for m, v in floors.items()},
                                   **_rates(reference.in_collection[test], (alone | vetoed)[test])}
    judged = ~np.isnan(match)
    joint, inside = (alone | vetoed)[judged], reference.in_collection[judged]
    answered = np.where(vetoed, 0.0, match)[judged]
    area = auroc(~inside, -answered)
    category = reference.category[judged]
    return {"protocol": "outer folds: one source each, left out of the choice of joined models, content scorer and "
                        "threshold rule (made by leaving each training source out in turn), of that scorer's fit "
                        "and thresholds and of every floor; abstain when the content scorer abstains or any "
                        "model's top similarity is below its floor (the lowest of the training sources' "
                        "in-collection queries)",
            "models": sorted(evidence), "chosen_in_outer_folds": chosen_counts,
            "auroc": None if area is None else round(area, 4), **_rates(inside, joint),
            "content_alone": _rates(inside, alone[judged]), "floors_alone": _rates(inside, vetoed[judged]),
            "per_category": {names[c]: _rates(inside[category == c], joint[category == c])
                             for c in np.unique(category)},
            "per_source": per_source}


def _rates(in_collection: np.ndarray, abstains: np.ndarray) -> dict:
    share = lambda mask: round(float(abstains[mask].mean()), 4) if mask.any() else None
    return {"in_collection_queries": int(in_collection.sum()), "left_out_queries": int((~in_collection).sum()),
            "abstain_in_collection": share(in_collection), "abstain_left_out": share(~in_collection)}


def joint_key(digests: dict[str, str], scorers: dict[str, dict]) -> dict[str, str]:
    """{model: novelty digest} of the models a judge chooses among ({}: no fitted scorer), from each image model's
    digest and stored scorer JSON: what a stored judge must have been fitted on to be current."""
    return {m: digests[m] for m in candidates(scorers)}


def fitted_on(generation) -> dict[str, str]:
    """`joint_key` of a published `generation`."""
    models = generation.manifest.models
    names = [n for n, e in models.items() if e.novelty_digest is not None and generation.has_novelty(n)]
    return joint_key({n: models[n].novelty_digest for n in names}, {n: generation.read_novelty(n)[0] for n in names})


def is_current(generation) -> bool:
    """True when `generation` needs no judge (no fitted scorer) or stores one of this version
    fitted on the scorers it holds (else a build refits it, reusing every vector)."""
    from .errors import RetrievalError

    try:
        expected = fitted_on(generation)
        if not expected:
            return True
        payload = generation.read_joint_novelty()
        return bool(payload) and payload.get("version") == VERSION and payload.get("fitted_on") == expected
    except RetrievalError:
        return False


def load_joint(generation) -> JointJudge | None:
    """The stored judge when it is current, else None (the ranking model's own scorer judges)."""
    from .errors import RetrievalError

    try:
        if not is_current(generation) or not fitted_on(generation):
            return None
        return JointJudge.from_json(generation.read_joint_novelty())
    except (RetrievalError, ValueError, KeyError, TypeError, AttributeError):
        return None


__all__ = ["JointJudge", "learn_joint", "choose", "pick", "CEILING",
           "load_joint", "is_current", "fitted_on", "joint_key", "candidates", "groups_of", "floor_of",
           "outer_figures", "VERSION", "MAX_MODELS"]
