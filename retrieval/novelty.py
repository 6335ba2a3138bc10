"""Is an image query's content in the collection at all? A small calibrated scorer that says when it is not, so the
suggested category can abstain instead of answering "hand 100 %" for a film the collection has nothing like.

Why learned, and from what: similarity alone does not say it (a chest film from a new hospital and a knee
prosthesis both score "fairly close" to something), but the pattern of the evidence does: six numbers read from a
query's nearest rows and the category centres (novelty_evidence.py: top and mean similarity, vote margin,
agreement, similarity to the nearest and to the voted category's centre).

The examples come from the index's own stored vectors, no re-embedding: every row is searched twice, with its
own source removed from the searchable rows (an in-collection query from an unseen hospital: a negative,
when its category has another source) and with its own source and its whole category removed (content the
collection lacks: a positive). A logistic regression over the standardised features gives `match_score` =
P(in collection); the threshold keeps `TARGET_ABSTENTION` of in-collection queries abstaining, chosen on
out-of-fold scores of the training folds only, one threshold per suggested (voted) category where enough of its
in-collection queries say where it lies (chest films from another hospital still look much alike; children's
and adults' hands do not), else one for all. The figures are nested over sources: each source in turn is left
out of the fit and of the thresholds' choice, and its queries report (`learn`). Features are computed by the same
function at query time (`NoveltyModel.judge`), from the neighbours the vote already fetched and one product with
the centres.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from .novelty_evidence import FEATURES, Evidence, centres_of, collect_evidence, features

VERSION = 2  # of the features and the fit: a different version refits
TARGET_ABSTENTION = 0.03  # in-collection queries the threshold lets abstain (inner folds); the target is <= 5 %
MIN_PER_CATEGORY = 30  # in-collection queries voted to a category that give it a threshold of its own
# How the threshold is read from the training sources' out-of-fold in-collection scores (`choose_thresholds`):
#   per-category: TARGET_ABSTENTION of them pooled, per voted category where it has MIN_PER_CATEGORY of them;
#   every-source: one threshold, the lowest of each source's own TARGET_ABSTENTION quantile (a source with
#                 MIN_PER_SOURCE of them), so that no training hospital abstains on more than the target.
RULES = ("per-category", "every-source")
MIN_PER_SOURCE = 20
MIN_CATEGORIES = 3  # fewer: no fold structure to learn from (a category left out, two left to fit)
REGULARISATION = 1.0  # sklearn's C on standardised features
NO_MATCH = "No close match in this collection"


def no_match_sentence(match_score: float, judged_by: str | None = None) -> str:
    """What the program says instead of a suggested category when a query is judged not in the collection
    (`judged_by`: what judged it, SearchResult.judged_by; a DICOM's modality has its own reason)."""
    from .modalities import sentence

    return sentence(judged_by or "") or (
        f"{NO_MATCH}: the nearest images are shown, but the evidence (match score {match_score:.2f}) says the "
        "collection holds nothing like this image, so no category is suggested.")


@dataclass
class Judgement:
    """Whether a query's content is in the collection: `match_score` = P(in collection), in 0..1, and the
    threshold it was compared with."""

    in_collection: bool
    match_score: float
    min_match: float


@dataclass
class NoveltyModel:
    """The fitted scorer of one image model: category centres and their spread, the logistic regression and
    the threshold, and the nested figures that judge it."""

    categories: list[str]
    centres: np.ndarray  # (categories, dim) unit vectors, rows in `categories` order
    centre_mean: np.ndarray  # (categories,) mean similarity of a category's members to its centre
    centre_std: np.ndarray
    mean: np.ndarray  # (features,) standardisation
    scale: np.ndarray
    coef: np.ndarray  # (features,) logistic regression on the standardised features; positive: in collection
    intercept: float
    min_match: float  # the threshold where a category has none of its own
    category_min_match: np.ndarray  # (categories,) the threshold of a query voted to each; nan: min_match
    figures: dict = field(default_factory=dict)

    def match_scores(self, evidence: np.ndarray) -> np.ndarray:
        """P(in collection) of each row of `evidence` (queries, features)."""
        return _sigmoid(((evidence - self.mean) / self.scale) @ self.coef + self.intercept)

    def judge(self, vector: np.ndarray, scores: np.ndarray, categories: list[str],
              thresholds: tuple[float, np.ndarray] | None = None) -> Judgement:
        """The judgement of one query: its unit `vector` (dim,), and the similarity `scores` (best first) and
        `categories` of its nearest rows (as the vote saw them). `thresholds`: (overall, per category) to
        compare with instead of this scorer's own (a joint judge chooses its own rule: joint_novelty.py)."""
        position = {name: i for i, name in enumerate(self.categories)}
        codes = np.asarray([[position.get(name, -1) for name in categories]], dtype=np.int64)
        centre = (self.centres @ np.asarray(vector, dtype=np.float32))[None, :]
        evidence, voted = features(np.asarray(scores, dtype=np.float32)[None, :], codes, centre,
                                   self.centre_mean, self.centre_std, with_vote=True)
        match = float(self.match_scores(evidence)[0])
        overall, per_category = thresholds or (self.min_match, self.category_min_match)
        threshold = float(_thresholds_of(overall, per_category, voted)[0])
        return Judgement(match >= threshold, match, threshold)

    def to_json(self) -> dict:
        """Everything but the centres (stored beside it as an array, layout.IndexGeneration.write_novelty)."""
        return {"version": VERSION, "features": list(FEATURES), "categories": self.categories,
                "centre_mean": _floats(self.centre_mean), "centre_std": _floats(self.centre_std),
                "mean": _floats(self.mean), "scale": _floats(self.scale), "coef": _floats(self.coef),
                "intercept": round(float(self.intercept), 6), "min_match": round(float(self.min_match), 6),
                "category_min_match": [None if np.isnan(v) else round(float(v), 6) for v in self.category_min_match],
                "figures": self.figures}

    @classmethod
    def from_json(cls, payload: dict, centres: np.ndarray) -> "NoveltyModel":
        """Raises ValueError for a payload of another version or shape."""
        if payload.get("version") != VERSION or payload.get("features") != list(FEATURES):
            raise ValueError(f"novelty version {payload.get('version')}, this program reads {VERSION}")
        array = lambda key: np.asarray(payload[key], dtype=np.float32)
        model = cls(list(payload["categories"]), np.asarray(centres, dtype=np.float32), array("centre_mean"),
                    array("centre_std"), array("mean"), array("scale"), array("coef"), float(payload["intercept"]),
                    float(payload["min_match"]),
                    np.asarray([np.nan if v is None else v for v in payload["category_min_match"]], dtype=np.float64),
                    dict(payload.get("figures", {})))
        if (model.centres.shape[0] != len(model.categories) or model.coef.shape != (len(FEATURES),)
                or model.category_min_match.shape != (len(model.categories),)):
            raise ValueError(f"novelty model of {model.centres.shape[0]} centres for {len(model.categories)} "
                             f"categories, {model.coef.shape} coefficients")
        return model


# --- the fit ----------------------------------------------------------------------------------------------
def _fit(x: np.ndarray, y: np.ndarray):
    """(mean, scale, coef, intercept) of a class-balanced, L2-penalised logistic regression on standardised
    features (Newton's method: six features, a few thousand examples, a few milliseconds, no sklearn import)."""
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    design = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    y = np.asarray(y, dtype=np.float64)
    weight = np.where(y > 0, len(y) / (2 * max(y.sum(), 1)), len(y) / (2 * max(len(y) - y.sum(), 1)))
    penalty = np.diag([1.0 / REGULARISATION] * x.shape[1] + [0.0])  # the intercept is not penalised
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (weight * (p - y)) + penalty @ beta
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, beta[:-1], float(beta[-1])


def auroc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: P(a positive scores above a negative), ties counting half (Mann-Whitney)."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    for start, end in zip(starts, ends):  # tied scores share their mean rank
        ranks[order[start:end]] = (start + end + 1) / 2
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _score(fitted, x: np.ndarray) -> np.ndarray:
    mean, scale, coef, intercept = fitted
    return _sigmoid(((x - mean) / scale) @ coef + intercept)


class Fits:
    """The scorer fitted on each set of training sources of one `Evidence`, fitted once: the nested choices
    (joint_novelty.py) fit the same source sets again and again."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence, self._fitted = evidence, {}

    def scores(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Match scores of the `test` examples by the fit on the `train` examples (whole sources)."""
        key = tuple(sorted(np.unique(self.evidence.source[train])))
        if key not in self._fitted:
            self._fitted[key] = _fit(self.evidence.x[train], self.evidence.in_collection[train])
        return _score(self._fitted[key], self.evidence.x[test])


def _out_of_fold(evidence: Evidence, chosen: np.ndarray, fits: Fits | None = None) -> np.ndarray:
    """Match scores of the `chosen` examples, each source's scored by a fit on the other chosen sources."""
    fits = fits or Fits(evidence)
    scores = np.full(len(evidence.x), np.nan)
    for source in np.unique(evidence.source[chosen]):
        train, test = chosen & (evidence.source != source), chosen & (evidence.source == source)
        if np.unique(evidence.in_collection[train]).size < 2:
            continue
        scores[test] = fits.scores(train, test)
    return scores


def choose_thresholds(evidence: Evidence, chosen: np.ndarray, target: float, width: int, rule: str = RULES[0],
                fits: Fits | None = None) -> tuple[float, np.ndarray]:
    """From the `chosen` (training) sources alone, their out-of-fold in-collection match scores (leave one
    source out inside `chosen`) read by `rule` (RULES): an overall threshold and one per voted category (nan:
    the overall one; per-category: where at least `MIN_PER_CATEGORY` in-collection queries were voted to it)."""
    scores = _out_of_fold(evidence, chosen, fits)
    inside = chosen & evidence.in_collection & ~np.isnan(scores)
    overall = float(np.quantile(scores[inside], target)) if inside.any() else 0.5
    per_category = np.full(width, np.nan)
    if rule == "every-source":
        levels = [np.quantile(scores[inside & (evidence.source == source)], target)
                  for source in np.unique(evidence.source[inside])
                  if (inside & (evidence.source == source)).sum() >= MIN_PER_SOURCE]
        return (float(min(levels)) if levels else overall), per_category
    if rule != "per-category":
        raise ValueError(f"unknown threshold rule {rule!r} (one of {RULES})")
    for code in range(width):
        voted = inside & (evidence.voted == code)
        if voted.sum() >= MIN_PER_CATEGORY:
            per_category[code] = float(np.quantile(scores[voted], target))
    return overall, per_category


def _thresholds_of(overall: float, per_category: np.ndarray, voted: np.ndarray) -> np.ndarray:
    chosen = per_category[voted]
    return np.where(np.isnan(chosen), overall, chosen)


def learn(vectors: np.ndarray, categories: list[str], sources: list[str],
          target: float = TARGET_ABSTENTION) -> tuple[NoveltyModel | None, dict]:
    """Fit the scorer of one image model on its stored vectors and the rows' categories and sources.

    Returns (model, figures); the model is None, with the reason in the figures, where the collection cannot
    teach it (fewer than `MIN_CATEGORIES` categories, or no category with two sources). The figures are the
    nested outer folds: each source left out of the fit and of the thresholds' choice, then judged."""
    began = time.perf_counter()
    names = sorted({c for c in categories if c})
    position = {name: i for i, name in enumerate(names)}
    codes = np.asarray([position.get(c, -1) for c in categories], dtype=np.int64)
    sources = np.asarray(sources, dtype=object)
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(names) < MIN_CATEGORIES:
        return None, {"fitted": False, "reason": f"{len(names)} categories; it needs {MIN_CATEGORIES}"}
    evidence = collect_evidence(vectors[codes >= 0], codes[codes >= 0], sources[codes >= 0], len(names))
    if evidence is None or evidence.in_collection.all() or not evidence.in_collection.any():
        return None, {"fitted": False, "reason": "no category has two sources: no in-collection query can be "
                                                 "searched across sources"}
    figures = {"fitted": True, **nested_figures(evidence, names, target)}
    everything = np.ones(len(evidence.x), dtype=bool)
    min_match, category_min_match = choose_thresholds(evidence, everything, target, len(names))
    mean, scale, coef, intercept = _fit(evidence.x, evidence.in_collection)
    centres, centre_mean, centre_std = centres_of(vectors[codes >= 0], codes[codes >= 0], len(names))
    figures["seconds"] = round(time.perf_counter() - began, 3)
    return NoveltyModel(names, centres, centre_mean, centre_std, mean, scale, coef, intercept, min_match,
                        category_min_match, figures), figures


def outer_judgements(evidence: Evidence, width: int, target: float, rule: str = RULES[0],
                     chosen: np.ndarray | None = None, fits: Fits | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each source (of the `chosen` examples; default all) in turn is the outer fold: a fit and thresholds
    (`rule`) on the other chosen sources' queries (the thresholds from their own leave-one-source-out scores),
    then the left-out source's queries are scored. Returns every example's outer match score and threshold (nan
    where its source was not chosen or could not be judged) and each source's overall threshold."""
    chosen = np.ones(len(evidence.x), dtype=bool) if chosen is None else chosen
    fits = fits or Fits(evidence)
    scores, thresholds = np.full(len(evidence.x), np.nan), np.full(len(evidence.x), np.nan)
    overall_of = {}
    for source in np.unique(evidence.source[chosen]):
        train, test = chosen & (evidence.source != source), chosen & (evidence.source == source)
        if np.unique(evidence.in_collection[train]).size < 2:
            continue
        overall, per_category = choose_thresholds(evidence, train, target, width, rule, fits)
        scores[test] = fits.scores(train, test)
        thresholds[test] = _thresholds_of(overall, per_category, evidence.voted[test])
        overall_of[str(source)] = overall
    return scores, thresholds, overall_of


def nested_figures(evidence: Evidence, names: list[str], target: float) -> dict:
    """The outer judgements (`outer_judgements`) summed up: the left-out source's queries searched with their
    category absent (should abstain) and with it present in other sources (should not)."""
    scores, thresholds, overall_of = outer_judgements(evidence, len(names), target)
    per_source = {source: {"min_match": round(overall, 4),
                           **_rates(evidence.in_collection[evidence.source == source],
                                    scores[evidence.source == source], thresholds[evidence.source == source])}
                  for source, overall in overall_of.items()}
    judged = ~np.isnan(scores)
    inside = evidence.in_collection[judged]
    area = auroc(~inside, -scores[judged])  # how well a low match score finds the left-out category's queries
    per_category = {names[code]: _rates(inside[evidence.category[judged] == code],
                                        scores[judged][evidence.category[judged] == code],
                                        thresholds[judged][evidence.category[judged] == code])
                    for code in np.unique(evidence.category[judged])}
    return {"protocol": "outer folds: one source each, left out of the fit and the thresholds; thresholds: "
                        f"{target:.0%} of the training sources' out-of-fold in-collection queries, per voted "
                        f"category with at least {MIN_PER_CATEGORY} of them",
            "auroc": None if area is None else round(area, 4),
            **_rates(inside, scores[judged], thresholds[judged]), "per_category": per_category,
            "per_source": per_source}


def _rates(in_collection: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict:
    abstains = scores < thresholds
    share = lambda mask: round(float(abstains[mask].mean()), 4) if mask.any() else None
    return {"in_collection_queries": int(in_collection.sum()), "left_out_queries": int((~in_collection).sum()),
            "abstain_in_collection": share(in_collection), "abstain_left_out": share(~in_collection)}


def stored_form(model: NoveltyModel | None, figures: dict) -> tuple[dict, np.ndarray | None]:
    """What the build stores: the JSON and the centres; without a model, why there is none."""
    if model is None:
        return {"version": VERSION, "features": list(FEATURES), "figures": figures}, None
    return model.to_json(), model.centres


def is_current(generation, model: str) -> bool:
    """True when `generation` stores a scorer of `model` written by this version of the fit (else a build
    refits it, reusing every vector)."""
    from .errors import RetrievalError

    try:
        return generation.has_novelty(model) and generation.read_novelty(model)[0].get("version") == VERSION
    except RetrievalError:
        return False


def load_novelty(generation, model: str) -> NoveltyModel | None:
    """The stored scorer of `model` in an `IndexGeneration`, or None where there is none (a text model, an
    index built before it existed, a collection it could not be fitted on, another version)."""
    from .errors import RetrievalError

    try:
        if not generation.has_novelty(model):
            return None
        payload, centres = generation.read_novelty(model)
        return None if centres is None else NoveltyModel.from_json(payload, centres)
    except (RetrievalError, ValueError, KeyError, TypeError):
        return None  # the search answers without the judgement rather than failing


def novelty_key(vectors: np.ndarray, categories: list[str], sources: list[str]) -> str:
    """What a fitted scorer is a function of: the vectors in row order, each row's category and source, and
    this module's version (equal keys: the stored scorer is still right)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(f"novelty {VERSION} target {TARGET_ABSTENTION} shape={vectors.shape}\n".encode())
    digest.update(vectors.tobytes())
    digest.update("\n".join(f"{c}\x1f{s}" for c, s in zip(categories, sources)).encode("utf-8"))
    return digest.hexdigest()


def _sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _floats(values) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values).ravel()]


__all__ = ["NoveltyModel", "Judgement", "Fits", "RULES", "choose_thresholds", "learn", "load_novelty", "is_current",
           "stored_form", "novelty_key", "outer_judgements", "nested_figures", "NO_MATCH", "no_match_sentence", "auroc",
           "TARGET_ABSTENTION", "VERSION"]
