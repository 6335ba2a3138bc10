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
    joint = generation.read_joint_novelty()
    if joint.get("figures"):
        report["joint"] = {**joint, "samples": {}}
        figures = joint["figures"]
        rows.append([" + ".join(figures["models"]), "outer folds, joint (joint_novelty.py)", "used by the app",
                     f"abstains: in collection {figures['abstain_in_collection']:.1%}, left-out categories "
                     f"{figures['abstain_left_out']:.1%} ({figures['content']} alone "
                     f"{figures['content_alone']['abstain_in_collection']:.1%} / "
                     f"{figures['content_alone']['abstain_left_out']:.1%})"])
        for label, picture in pictures.items():
            result = engine.search_image(picture, k=5)
            report["joint"]["samples"][label] = {"judged_by": result.judged_by, "in_collection": result.in_collection,
                                                 "match_score": result.match_score}
            verdict = "in collection" if result.in_collection else "NO CLOSE MATCH"
            rows.append([result.judged_by, label, f"{verdict} (match {result.match_score:.3f})", "the app's answer"])
    either = either_abstains(engine, [name for name, entry in report["models"].items() if "figures" in entry],
                             categories, sources)
    if either:
        report["either_scorer_abstains"] = either
        rows.append([" or ".join(either["models"]), "outer folds, abstain when either scorer abstains",
                     "not used by the app",
                     f"abstains: in collection {either['abstain_in_collection']:.1%}, left-out categories "
                     f"{either['abstain_left_out']:.1%} (each scorer at its own {either['target']:.0%} threshold)"])
    save("novelty", report, ["model", "query", "answer", "detail"], rows)


def refresh(collection: str, index: str) -> None:
    """Build or refresh `index` from `collection` with its models plus efficientnet-lite0 and xray-lite0."""
    from retrieval.index import build_index
    from retrieval.layout import IndexFolder

    current = IndexFolder(index).current()
    models = list(current.manifest.models) if current is not None else []
    build_index(collection, index, models=models + [m for m in ("efficientnet-lite0", "xray-lite0") if m not in models])


def either_abstains(engine, models: list[str], categories: list[str], sources: list[str]) -> dict | None:
    """The rule "abstain when any of the index's scorers abstains", judged by the same outer folds as each scorer
    (one source left out of every fit and threshold), each scorer at its own threshold: what it would cost the
    in-collection queries and gain on the left-out ones. A measurement for a next step; the app asks one scorer."""
    from retrieval.novelty import TARGET_ABSTENTION, collect_evidence, outer_judgements

    names = sorted({c for c in categories if c})
    codes = np.asarray([names.index(c) if c else -1 for c in categories])
    known = codes >= 0
    abstains, reference = [], None
    for name in models:
        evidence = collect_evidence(engine.vectors(name)[known], codes[known],
                                    np.asarray(sources, dtype=object)[known], len(names))
        if evidence is None:
            return None
        scores, thresholds, _ = outer_judgements(evidence, len(names), TARGET_ABSTENTION)
        key = (evidence.in_collection.tolist(), evidence.category.tolist(), evidence.source.tolist())
        if reference is not None and key != reference:
            raise SystemExit("the scorers' examples differ: cannot combine them")
        reference = key
        abstains.append(np.where(np.isnan(scores), np.nan, scores < thresholds))
    if len(abstains) < 2:
        return None
    stacked = np.stack(abstains)
    judged = ~np.isnan(stacked).any(axis=0)
    either = np.nansum(stacked, axis=0)[judged] > 0
    inside = np.asarray(reference[0])[judged]
    return {"models": models, "target": TARGET_ABSTENTION, "queries": int(judged.sum()),
            "abstain_in_collection": round(float(either[inside].mean()), 4),
            "abstain_left_out": round(float(either[~inside].mean()), 4)}


if __name__ == "__main__":
    main()
