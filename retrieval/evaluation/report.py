"""The evaluation as text: the tables `python -m retrieval evaluate` prints and writes to evaluation.txt."""

from __future__ import annotations

import math

import numpy as np

from ..tables import format_table
from . import metrics
from .figures import ANATOMY, CATEGORY, FIGURES, K, KS, LABEL, LEVELS
from .run import Evaluation, display_name


def evaluation_text(self: Evaluation) -> str:
    """Every table of one evaluation run, as plain text."""

    duplicates = self.near_duplicates
    lines = [f"Evaluation of {self.index_dir} ({self.rows} rows, generation {self.generation}, "
             f"{self.created_at}, {self.seconds:.0f} s)",
             f"Near duplicates (pHash distance <= {duplicates['max_bits']} bits): {duplicates['pairs']} pairs "
             f"over {duplicates['rows']} rows, taken out of each other's ranked lists.", ""]
    lines += cross_source_text(self.cross_source)
    header = ["model", "input", "queries", *(f"P@{k}" for k in KS), f"mAP@{K}", f"R@{K}", f"hit@{K}"]
    for level in LEVELS:
        title = "same category" if level == CATEGORY else "same (category, label), labelled rows only"
        lines.append(f"Leave-one-out (each row queries the others with its stored vector; input = what the "
                     f"vector encodes), relevant = {title}:")
        rows = [[display_name(name) + (" (in-sample: trained on these rows, optimistic)" if result.get("in_sample")
                                       else ""), result["input"], *_cells(result[level])]
                for name, result in self.image.items()]
        rows.append(["random ranking (expected)", "-", *_cells(self.random[level])])
        lines += [format_table(header, rows), ""]
    lines += feedback_text(self)
    lines.append("Near duplicates left in (how much they would inflate the figures):")
    rows = [[display_name(name), level, result["with_near_duplicates"][level]["p@1"],
             result[level]["p@1"], result["with_near_duplicates"][level][f"map@{K}"], result[level][f"map@{K}"]]
            for name, result in self.image.items() for level in LEVELS]
    lines += [format_table(["model", "level", "P@1 with", "P@1 without", f"mAP@{K} with", f"mAP@{K} without"],
                           [[r[0], r[1], *(_fmt(v) for v in r[2:])] for r in rows]), ""]
    lines.append("Per category, leave-one-out P@5 (same category / same label):")
    rows = []
    for category in self.categories:
        cells = [category]
        for result in self.image.values():
            figures = result["per_category"].get(category, {})
            cells.append(f"{_fmt(figures.get(CATEGORY, {}).get('p@5'))} / "
                         f"{_fmt(figures.get(LABEL, {}).get('p@5'))}")
        rows.append(cells)
    lines += [format_table(["category", *(display_name(n) for n in self.image)], rows), ""]
    for name, result in self.image.items():
        confusion = result["confusion"]
        lines.append(f"Category confusion, {display_name(name)} (query category -> categories of its top "
                     f"{K}, share of row):")
        shares = metrics.row_normalise(np.asarray(confusion["counts"]))
        lines += [format_table(["query \\ result", *confusion["categories"]],
                               [[c, *(f"{v:.2f}" for v in row)] for c, row in
                                zip(confusion["categories"], shares)]), ""]
    if self.text.get("models"):
        lines += hybrid_text(self.text)
        judged = ("all" if self.text.get("judged_on", "all") == "all"
                  else f"the {self.text['judged_queries']} {self.text['judged_on']}")
        lines.append(f"Text to image, {self.text['queries']} queries from {self.text['file']} "
                     f"(version {self.text['version']}), judged on {judged} queries:")
        rows = []
        for name, result in self.text["models"].items():
            for level in LEVELS:
                seen = " (its images in-sample)" if name in self.trained_here else ""
                rows.append([display_name(name) + seen, result["searches"], level, *_cells(result[level])])
        for level in LEVELS:
            rows.append(["random ranking (expected)", "-", level, *_cells(self.text["random"][level])])
        lines += [format_table(["model", "searches", "level", *header[2:]], rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def hybrid_text(text: dict) -> list[str]:
    """Held-out P@5 of every text model beside the hybrid that fuses them (fitted on the TRAIN queries)."""
    models = text["models"]
    rows = [[display_name(name), result["searches"], *(_fmt(result[level]["p@5"]) for level in LEVELS),
             *(_fmt(result["all_queries"][level]["p@5"]) for level in LEVELS)] for name, result in models.items()]
    judged, fusion = text.get("judged_on", "all"), text.get("fusion")
    counted = (f"all {text['queries']} queries" if judged == "all"
               else f"the {text.get('judged_queries', text['queries'])} {judged} queries")
    fitted = ("the hybrid's fusion fitted on the train queries only" if isinstance(fusion, dict)
              else "the hybrid with the fusion the index serves: the file has no train queries to fit one")
    lines = [f"Text models side by side, P@5 on {counted} ({fitted}), and on all {text['queries']}:",
             format_table(["model", "searches", f"category ({judged})", f"label ({judged})", "category (all)",
                           "label (all)"], rows)]
    hindsight = text.get("best_model_per_query")
    if hindsight:
        lines.append(f"  best single model per query, known only in hindsight (the ceiling of fusing these models): "
                     f"category {_fmt(hindsight['category_p@5'])}, label {_fmt(hindsight['label_p@5'])}")
    if isinstance(fusion, dict):
        weights = ", ".join(f"{name} " + "/".join(f"{value:+.2f}" for value in w.values())
                            for name, w in fusion["weights"].items())
        named = "/".join(next(iter(fusion["weights"].values()), {}))
        lines.append(f"  hybrid: {fusion['method']}; weights ({named}) {weights}; bias {fusion['bias']:+.2f}; "
                     f"fitted on {fusion['fitted_on'].get('queries')} {fusion['fitted_on'].get('split')} queries")
    return lines + [""]


def feedback_text(self: Evaluation) -> list[str]:
    """One round of relevance feedback beside the plain leave-one-out label P@5, per image model."""
    rows = []
    for name, result in self.image.items():
        feedback = result.get("feedback") or {}
        if feedback.get("queries"):
            seen = " (in-sample, optimistic)" if result.get("in_sample") else ""
            rows.append([display_name(name) + seen, feedback["queries"], *(_fmt(feedback[key]) for key in (
                "label_p@5", "refined_label_p@5", "gain", "residual_label_p@5", "refined_residual_label_p@5",
                "residual_gain"))])
    if not rows:
        return []
    judged = next(r["feedback"]["judged"] for r in self.image.values() if (r.get("feedback") or {}).get("queries"))
    return [f"Relevance feedback (Rocchio, one round): each labelled row's top {judged} judged by label, the query "
            f"moved, ranked again. Residual = the judged rows left out of both rankings:",
            format_table(["model", "queries", "label P@5", "refined", "gain", "residual P@5", "refined residual",
                          "residual gain"], rows), ""]


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def cross_source_text(cross: dict) -> list[str]:
    """The honest measure first: whole sources held out, P@5 per category and per source."""
    if not cross.get("models"):
        return [f"Cross-source: {cross.get('skipped', 'no image model')}.", ""]
    origin = f": {cross['assignment']}" if cross.get("assignment") else ""
    lines = [f"Cross-source ({cross['folds']} folds of whole sources{origin}; each held-out image queries an index of "
             f"the OTHER folds' rows only; queries with no relevant row there are left out), P@5:"]
    names = list(cross["models"])
    levels = ("category", "label", ANATOMY)  # anatomy: the same body part, reported only
    header = ["", *(f"{display_name(n)} {level[:4]}" for n in names for level in levels)]

    def cells(pick) -> list[str]:
        return [_fmt(pick(cross["models"][n]["cross_source"][level]) if level in cross["models"][n]["cross_source"]
                     else None) for n in names for level in levels]

    rows = [["all queries", *cells(lambda block: block["p@5"])],
            ["mean over sources", *cells(lambda block: block["p@5_mean_over_sources"])]]
    categories = sorted({c for n in names for c in cross["models"][n]["cross_source"]["category"]["per_category"]})
    rows += [[f"  {c}", *cells(lambda block, c=c: block["per_category"].get(c, {}).get("p@5"))] for c in categories]
    sources = sorted(cross["sources"])
    rows += [[f"  fold {cross['sources'][s]}: {s[:48]}", *cells(lambda block, s=s: block["per_source"].get(s, {}).get("p@5"))]
             for s in sources]
    lines += [format_table(header, rows)]
    lines += [f"  {display_name(n)}: {cross['models'][n]['from']}" for n in names]
    nested = cross.get("default_rule_nested")
    if nested:  # the pretrained default's figure on sources its choice never read
        picks = ", ".join(f"fold {f['fold']}: {display_name(f['picked'])}" for f in nested["per_fold"])
        lines.append(f"  default image model by the app's rule, run nested (chosen on the other folds only, judged "
                     f"on the held-out one): category P@5 {_fmt(nested['nested']['category']['p@5'])}, label "
                     f"{_fmt(nested['nested']['label']['p@5'])} (picked {picks})")
    for name in names:  # a model trained here: the variants its training compared, both protocols
        entry = cross["models"][name]
        for protocol, title in (("compared", "cross-source"), ("in_source_out_of_fold", "in-source out-of-fold")):
            if entry.get(protocol):
                lines += ["", f"{display_name(name)}, training card, {title} P@5 (category / label, all queries):"]
                lines.append(format_table(["variant", "category", "label"], [
                    [variant, _fmt(figures["category"]["p@5"]), _fmt(figures["label"]["p@5"])]
                    for variant, figures in entry[protocol].items()]))
    return lines + [""]


def _cells(figures: dict) -> list[str]:
    return [str(figures.get("queries", "-")), *(_fmt(figures.get(key)) for key in FIGURES)]


