""""No close match in this collection", measured per image model of a built index: the nested figures the build
stored, the cost of fitting and of judging a query, and what the program says for real and synthetic images the
collection has nothing like.

    .venv/bin/python benchmarks/novelty.py --index /tmp/ab-index [--samples ../shared/dicom-samples]
    .venv/bin/python benchmarks/novelty.py --index DIR --collection ../shared/xray-collection   # build/refresh first

With --collection the index is first built or refreshed (efficientnet-lite0 and xray-lite0 added to its models;
only vectors of changed weights are embedded again), so a rerun after retraining is this one command.

For each image model of the index (the scorer the build fitted: retrieval/novelty.py):
  - the figures stored with it: outer-fold AUROC of left-out-category queries against in-collection queries
    searched across sources, the abstention rate of each, per category (each category left out of the fit and
    of the threshold's choice, then judged);
  - the fit again from the stored vectors (seconds, and that it reproduces the stored scorer);
  - the query-time cost: `NoveltyModel.judge` alone over 500 in-collection rows' stored vectors with their 10
    nearest rows (what the engine adds to an image query), and `SearchEngine.search_image` end to end;
  - every DICOM file of --samples and three synthetic foreign pictures (a photo-like colour scene, pure noise,
    a page of text): in collection or not by this model's own scorer, the match score, the vote the suggestion
    would have shown, and what `search_image` answered (it asks the joint judge, or the index's best scorer:
    `judged_by`);
  - the joint judgement over the two image models (retrieval/joint_novelty.py): its nested outer figures as the
    build stored them (beside the content scorer's alone and the floors' alone), and its answer on every sample.
Writes results/novelty.json.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from common import REPO, save, stats_ms

QUERIES = 500
SAMPLES = REPO.parent / "shared" / "dicom-samples"


def foreign_pictures(side: int = 512, seed: int = 0) -> dict:
    """Pictures no radiograph collection holds: a photo-like colour scene, pure noise, a page of text."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    sky = np.linspace([90, 150, 230], [200, 225, 250], side // 2)[:, None, :].repeat(side, axis=1)
    field = np.linspace([60, 140, 50], [30, 90, 20], side - side // 2)[:, None, :].repeat(side, axis=1)
    scene = Image.fromarray(np.clip(np.concatenate([sky, field]) + rng.normal(0, 8, (side, side, 3)), 0,
                                    255).astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    draw.ellipse((360, 40, 450, 130), fill=(250, 220, 80))  # a sun
    draw.rectangle((80, 200, 220, 330), fill=(170, 60, 50))  # a house
    draw.polygon([(70, 200), (150, 130), (230, 200)], fill=(110, 40, 30))
    for x in range(260, 500, 40):  # trees
        draw.ellipse((x, 210, x + 50, 290), fill=(20, 100 + x % 60, 30))
    scene = scene.filter(ImageFilter.GaussianBlur(1.2))
    noise = Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), mode="L")
    page = Image.new("L", (side, side), 250)
    draw = ImageDraw.Draw(page)
    words = "the quick brown fox jumps over the lazy dog while the committee reviews the quarterly report".split()
    for line in range(30):
        draw.text((24, 16 + 16 * line), " ".join(rng.choice(words, 9)), fill=20)
    return {"photo-like colour scene": scene, "pure noise": noise, "page of text": page}


def judge_cost(engine, name: str, scorer) -> dict:
    """`judge` alone on stored vectors of rows (their 10 nearest rows found first, untimed)."""
    vectors = engine.vectors(name)
    rows = np.random.default_rng(0).choice(len(vectors), size=min(QUERIES, len(vectors)), replace=False)
    prepared = []
    for row in rows:
        found = engine.store.search(name, vectors[row], 10)
        prepared.append((vectors[row], [s for _, s in found], [engine.catalogue.value(r, "category") for r, _ in found]))
    for item in prepared[:20]:
        scorer.judge(*item)
    seconds = []
    for item in prepared:
        began = time.perf_counter()
        scorer.judge(*item)
        seconds.append(time.perf_counter() - began)
    return stats_ms(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--samples", default=str(SAMPLES), help="folder of DICOM files to try")
    parser.add_argument("--collection", help="build or refresh the index from this collection first")
    args = parser.parse_args()
    if args.collection:
        refresh(args.collection, args.index)

    from retrieval.embedders import IMAGE
    from retrieval.novelty import learn, load_novelty
    from retrieval.search import SearchEngine

    engine = SearchEngine(args.index)
    generation = engine.generation
    pictures = {path.name: path for path in sorted(Path(args.samples).glob("*.dcm"))}
    pictures.update(foreign_pictures())
    categories, sources = engine.catalogue.column("category"), engine.catalogue.column("source")
    report = {"index": str(args.index), "rows": len(engine), "models": {}}
    rows = []
    for name in engine.policy.models_for(IMAGE):
        if engine.policy.entries[name].indexes != IMAGE:
            continue
        scorer = load_novelty(generation, name)
        if scorer is None:
            report["models"][name] = {"scorer": "none stored"}
            continue
        began = time.perf_counter()
        refit, _ = learn(engine.vectors(name), categories, sources)
        fit_seconds = time.perf_counter() - began
        entry = {"figures": scorer.figures, "min_match": scorer.min_match,
                 "coefficients": dict(zip(["intercept", *refit.to_json()["features"]],
                                          [round(scorer.intercept, 3), *np.round(scorer.coef, 3).tolist()])),
                 "fit_seconds_here": round(fit_seconds, 2),
                 "build_novelty_seconds": generation.manifest.models[name].novelty_seconds,
                 "refit_reproduces": bool(abs(refit.min_match - scorer.min_match) < 1e-4),
                 "judge_ms": judge_cost(engine, name, scorer), "samples": {}}
        timings = []
        for label, picture in pictures.items():
            began = time.perf_counter()
            result = engine.search_image(picture, model=name, k=5)  # judged by the index's best scorer
            timings.append(time.perf_counter() - began)
            vector = engine.encoder.image(name, picture)[0]  # and by this model's own scorer
            neighbours = engine.store.search(name, vector, 10)
            own = scorer.judge(vector, [score for _, score in neighbours],
                               [engine.catalogue.value(row, "category") for row, _ in neighbours])
            entry["samples"][label] = {"in_collection": own.in_collection, "match_score": round(own.match_score, 4),
                                       "vote": {c: round(s, 3) for c, s in list(result.suggestion.items())[:3]},
                                       "nearest": [h.category for h in result.hits],
                                       "search_judged_by": result.judged_by,
                                       "search_in_collection": result.in_collection}
        entry["search_image_ms"] = stats_ms(timings[1:])  # the first one loads the model
        report["models"][name] = entry
        figures = scorer.figures
        rows.append([name, "outer folds", f"AUROC {figures['auroc']}",
                     f"abstains: in collection {figures['abstain_in_collection']:.1%}, left-out categories "
                     f"{figures['abstain_left_out']:.1%}; judge {entry['judge_ms']['median_ms']} ms, "
                     f"fit {fit_seconds:.2f} s"])
        for label, sample in entry["samples"].items():
            verdict = "in collection" if sample["in_collection"] else "NO CLOSE MATCH"
            top = ", ".join(f"{c} {s:.0%}" for c, s in sample["vote"].items())
            rows.append([name, label, f"{verdict} (match {sample['match_score']:.3f})", f"vote: {top}"])
    joint = joint_report(engine, pictures, rows)
    if joint:
        report["joint"] = joint
    scored = [name for name, entry in report["models"].items() if "figures" in entry]
    for key, variant in variants(engine, scored, categories, sources).items():
        report[key] = variant
        rows.append([" or ".join(variant["models"]), f"outer folds, {variant['rule']}", "not used by the app",
                     f"abstains: in collection {variant['abstain_in_collection']:.1%}, left-out categories "
                     f"{variant['abstain_left_out']:.1%}"])
    save("novelty", report, ["model", "query", "answer", "detail"], rows)


def joint_report(engine, pictures: dict, rows: list) -> dict | None:
    """The joint judge's stored nested figures and the app's answer (`search_image`, default model) per sample."""
    joint = engine.generation.read_joint_novelty()
    if not joint.get("figures"):
        return None
    figures, samples = joint["figures"], {}
    rows.append([" + ".join(figures["models"]), "outer folds, joint (joint_novelty.py)", "used by the app",
                 f"abstains: in collection {figures['abstain_in_collection']:.1%}, left-out categories "
                 f"{figures['abstain_left_out']:.1%}, AUROC {figures['auroc']} (content scorer now "
                 f"{joint['content']} {joint['rule']}; chosen per outer fold {figures['chosen_in_outer_folds']}; alone "
                 f"{figures['content_alone']['abstain_in_collection']:.1%} / "
                 f"{figures['content_alone']['abstain_left_out']:.1%})"])
    for label, picture in pictures.items():
        result = engine.search_image(picture, k=5)
        samples[label] = {"judged_by": result.judged_by, "in_collection": result.in_collection,
                          "match_score": result.match_score}
        verdict = "in collection" if result.in_collection else "NO CLOSE MATCH"
        rows.append([result.judged_by, label, f"{verdict} (match {result.match_score:.3f})", "the app's answer"])
    return {**joint, "samples": samples}


def refresh(collection: str, index: str) -> None:
    """Build or refresh `index` from `collection` with its models plus efficientnet-lite0 and xray-lite0."""
    from retrieval.index import build_index
    from retrieval.layout import IndexFolder

    current = IndexFolder(index).current()
    models = list(current.manifest.models) if current is not None else []
    build_index(collection, index, models=models + [m for m in ("efficientnet-lite0", "xray-lite0") if m not in models])


def variants(engine, models: list[str], categories: list[str], sources: list[str]) -> dict:
    """Rules over two scorers tried and not used by the app, judged by the same outer folds as each scorer (one
    source left out of every fit, threshold and floor): what each costs the in-collection queries and gains on
    the left-out ones.
      either_scorer_abstains: each scorer at its own threshold, abstain when either does;
      jointly_chosen_levels: both scorers' levels (off, or 0-5 % of the training sources' out-of-fold
        in-collection scores, per voted category) chosen together on the training sources, to abstain on the
        most left-out queries there with at most TARGET_ABSTENTION of in-collection ones, plus the floors."""
    from retrieval.joint_novelty import floor_of
    from retrieval.novelty import TARGET_ABSTENTION, outer_judgements
    from retrieval.novelty_evidence import collect_evidence

    if len(models) < 2:
        return {}
    names = sorted({c for c in categories if c})
    codes = np.asarray([names.index(c) if c else -1 for c in categories])
    known, origin = codes >= 0, np.asarray(sources, dtype=object)
    evidence = {name: collect_evidence(engine.vectors(name)[known], codes[known], origin[known], len(names))
                for name in models}
    reference = next(iter(evidence.values()))
    inside = reference.in_collection
    either = np.zeros(len(inside), dtype=bool)
    for e in evidence.values():
        scores, thresholds, _ = outer_judgements(e, len(names), TARGET_ABSTENTION)
        either |= scores < thresholds  # nan (a source that could not be judged) never abstains
    chosen = np.zeros(len(inside), dtype=bool)
    for source in np.unique(reference.source):
        train, test = reference.source != source, reference.source == source
        chosen[test] = _jointly_chosen(evidence, train, test, len(names), TARGET_ABSTENTION)
        for e in evidence.values():
            chosen[test] |= e.x[test, 0] < floor_of(e, train)
    rate = lambda abstains, mask: round(float(abstains[mask].mean()), 4)  # noqa: E731
    return {key: {"models": models, "rule": rule, "target": TARGET_ABSTENTION, "queries": len(inside),
                  "abstain_in_collection": rate(abstains, inside), "abstain_left_out": rate(abstains, ~inside)}
            for key, rule, abstains in (
                ("either_scorer_abstains", "abstain when either scorer abstains (each at its own threshold)", either),
                ("jointly_chosen_levels", "both scorers' levels chosen jointly on the training sources + floors",
                 chosen))}


LEVELS = [None, *np.round(np.arange(0, 0.0501, 0.0025), 4)]  # None: the scorer does not veto


def _jointly_chosen(evidence: dict, train: np.ndarray, test: np.ndarray, width: int, target: float) -> np.ndarray:
    """Whether the `test` queries abstain by the pair of levels chosen on the `train` sources' out-of-fold scores
    (fits on the training sources only, thresholds as novelty.py chooses them at each level)."""
    from retrieval.novelty import MIN_PER_CATEGORY, _fit, _out_of_fold, _score, _thresholds_of

    def thresholds(e, scores, level, voted):
        inside = train & e.in_collection & ~np.isnan(scores)
        per = np.full(width, np.nan)
        for code in range(width):
            mask = inside & (e.voted == code)
            if mask.sum() >= MIN_PER_CATEGORY:
                per[code] = np.quantile(scores[mask], level)
        return _thresholds_of(float(np.quantile(scores[inside], level)), per, voted)

    inner = {m: _out_of_fold(e, train) for m, e in evidence.items()}
    veto = {m: {level: (np.zeros(len(e.x), dtype=bool) if level is None else
                        inner[m] < thresholds(e, inner[m], level, e.voted)) for level in LEVELS}
            for m, e in evidence.items()}
    inside = next(iter(evidence.values())).in_collection
    judged = train & np.all([~np.isnan(scores) for scores in inner.values()], axis=0)
    best, best_gain = None, -1.0
    for levels in itertools.product(LEVELS, repeat=len(evidence)):
        abstains = np.any([veto[m][level] for m, level in zip(evidence, levels)], axis=0)
        if abstains[judged & inside].mean() <= target + 1e-9 and abstains[judged & ~inside].mean() > best_gain:
            best, best_gain = levels, abstains[judged & ~inside].mean()
    result = np.zeros(int(test.sum()), dtype=bool)
    for (m, e), level in zip(evidence.items(), best or ()):
        if level is not None:
            scores = _score(_fit(e.x[train], e.in_collection[train]), e.x[test])
            result |= scores < thresholds(e, inner[m], level, e.voted[test])
    return result


if __name__ == "__main__":
    main()
