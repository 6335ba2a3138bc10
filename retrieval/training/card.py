"""The training card: what the model was trained on, how, and how well it does on rows it never saw."""

from __future__ import annotations

import json

DISCLAIMER = "Research and education only: trained on research-only images; not a diagnostic device."


def _f(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _protocol_table(title: str, trained: dict, frozen: dict, note: str) -> list[str]:
    lines = [f"### {title}", "", note, "",
             "| level | model | P@5 (all queries) | P@5 mean over sources | P@5 mean over categories | mAP@10 | queries | excluded (no relevant row) |",
             "|---|---|---|---|---|---|---|---|"]
    for level in ("category", "label"):
        for name, result in (("frozen efficientnet-lite0", frozen), ("xray-lite0 (this model)", trained)):
            block = result[level]
            lines.append(f"| {level} | {name} | {_f(block['p@5'])} | {_f(block.get('p@5_mean_over_sources'))} | "
                         f"{_f(block.get('p@5_mean_over_categories'))} | {_f(block['map@10'])} | {block['queries']} | "
                         f"{block['excluded_no_relevant']} |")
    lines += ["", "Per category (P@5 frozen → this model):", ""]
    lines += ["| category | category level | label level |", "|---|---|---|"]
    for category in trained["category"]["per_category"]:
        cat_f = frozen["category"]["per_category"][category]["p@5"]
        cat_t = trained["category"]["per_category"][category]["p@5"]
        lab_f = frozen["label"]["per_category"].get(category, {}).get("p@5")
        lab_t = trained["label"]["per_category"].get(category, {}).get("p@5")
        lines.append(f"| {category} | {_f(cat_f)} → {_f(cat_t)} | {_f(lab_f)} → {_f(lab_t)} |")
    lines.append("")
    return lines


def variant_rows(table: dict) -> list[str]:
    """The variant table as Markdown rows (outer folds; mean over held-out sources / pooled; gain with its 95 %
    bootstrap interval over sources)."""
    anatomy = any("body_part" in row for row in table.values())  # the same body part: reported, never chosen on
    lines = ["| variant | category P@5 (mean over sources / pooled) | label P@5 (mean / pooled) | "
             + ("anatomy P@5 (mean / pooled) | " if anatomy else "")
             + "category gain [95 % CI] | label gain [95 % CI] | query ms | own weights MB |",
             "|---|---|---|" + "---|" * anatomy + "---|---|---|---|"]
    for name, row in table.items():
        gains = row.get("gain_over_frozen")

        def gain(level):
            block = (gains or {}).get(level, {}).get("mean_over_sources")
            return "–" if not block else f"{block['gain']:+.3f} [{block['ci95'][0]:+.3f}, {block['ci95'][1]:+.3f}]"

        cost = row.get("cost", {})
        label = "frozen efficientnet-lite0 (reference)" if name == "reference" else name
        body = row.get("body_part", {})
        part = f"{_f(body.get('mean_over_sources'))} / {_f(body.get('pooled'))} | " if anatomy else ""
        lines.append(f"| {label} | {_f(row['category']['mean_over_sources'])} / {_f(row['category']['pooled'])} | "
                     f"{_f(row['label']['mean_over_sources'])} / {_f(row['label']['pooled'])} | {part}"
                     f"{gain('category')} | {gain('label')} | {cost.get('query_ms', '–')} | "
                     f"{cost.get('image_head_mb', '–')} |")
    return lines


def _selection_lines(report: dict) -> list[str]:
    sel, decision = report.get("selection"), report.get("default_image_model")
    if not sel:
        return []
    lines = ["## Nested cross-source selection", "",
             f"{sel['outer_folds']} outer folds of whole sources judge; inside each outer training set "
             f"{sel['inner_folds']} inner whole-source folds choose the variant and its epochs (criterion: category + "
             f"label P@5, each averaged over held-out sources). Intervals: bootstrap over the outer held-out sources "
             f"({sel['bootstrap']['reps']} resamples, seed {sel['bootstrap']['seed']}), gain over frozen "
             f"EfficientNet-Lite0 on the same queries.", ""]
    lines += variant_rows(sel["variants"])
    picked = sel["variants"].get("selected", {}).get("picked", [])
    lines += ["", "Picked per outer fold: " + "; ".join(f"fold {i}: {p[0]} {p[1]}" for i, p in enumerate(picked) if p),
              ""]
    if decision:
        lines += [f"**Default image model: {'yes' if decision['default'] else 'no'}** — {decision['reason']}.", ""]
    return lines


def render_card(report: dict) -> str:
    """Markdown training card from the training report (the same dict is written as training_card.json)."""
    data, hp, ev = report["data"], report["hyperparameters"], report["evaluation"]
    lines = [f"# Training card — {report['model']}", "", f"**{DISCLAIMER}**", "",
             f"Weights version (sha256 of model.safetensors): `{{version}}`", "",
             "## Data", "",
             f"* collection: `{data['collection']}`", f"* rows: {data['rows']}",
             f"* data fingerprint (sha256 over the sorted metadata rows): `{data['fingerprint']}`",
             f"* categories: {json.dumps(data['categories'])}", "", "| source | rows | categories |", "|---|---|---|"]
    for source, info in data["sources"].items():
        lines.append(f"| {source} | {info['rows']} | {', '.join(info['categories'])} |")
    lines += ["", "## Model", "", report["model_description"], "",
              f"* shipped variant: **{report['shipped']}** — {report['ship_reason']}",
              f"* seed: {report['seed']}; wall time: {report['wall_seconds']:.0f} s on {report['machine']}",
              f"* image-head hyper-parameters: `{json.dumps(hp['image_head'])}`",
              f"* text head: `{json.dumps(hp['text_head'])}`",
              f"* early stopping: {hp['early_stopping']}", "",
              *_selection_lines(report),
              "## Evaluation", "",
              "Cross-source figures come from fold models fitted without the held-out sources — never from the "
              "rows the final model was trained on. The final model is trained on every row.", ""]
    cs = ev["cross_source"]
    lines += _protocol_table(
        f"Cross-source ({cs['folds']} folds; {cs.get('referee', 'whole sources per fold')})", cs["trained"], cs["frozen"],
        "Each held-out fold's rows query an index of the other folds' rows; the head, centring and projection are "
        "fitted on the other folds only. Label level: rows with a label; relevant = same category and same label. "
        "Queries whose index holds no relevant row are excluded from the means (counted in the last column). "
        "Nested: these outer folds never took part in any choice — the variant and its epochs were chosen by inner "
        "whole-source folds inside each outer training set.")
    lines += ["Folds: " + "; ".join(f"fold {k}: {', '.join(v)}" for k, v in cs["fold_sources"].items()), "",
              "Held-out rows without any possible relevant row (excluded):", ""]
    for level, missing in cs["no_relevant"].items():
        lines.append(f"* {level}: " + ("none" if not missing else "; ".join(f"{k} ({v})" for k, v in missing.items())))
    lines.append("")
    ins = ev["in_source_out_of_fold"]
    lines += _protocol_table(f"In-source out-of-fold ({ins['folds']} stratified folds)", ins["trained"], ins["frozen"],
                             "Held-out rows (model fitted on the other folds) query the whole collection minus "
                             "themselves; same sources are in the index.")
    loo = ev["in_sample_leave_one_out"]
    lines += [f"### In-sample leave-one-out — in-sample (optimistic)", "",
              f"Final model, every row queries all others: category P@5 {_f(loo['trained']['category']['p@5'])} "
              f"(frozen {_f(loo['frozen']['category']['p@5'])}), label P@5 {_f(loo['trained']['label']['p@5'])} "
              f"(frozen {_f(loo['frozen']['label']['p@5'])}).", ""]
    text = ev.get("text_on_pixels")
    if text:
        lines += ["### Text on pixels", "",
                  f"{text['queries_file']} — text queries embedded by the text head, searched against IMAGE vectors "
                  "only (captions never read).", "",
                  "| setting | category P@5 | label P@5 | queries (cat / label) |", "|---|---|---|---|"]
        for name, block in text["settings"].items():
            lines.append(f"| {name} | {_f(block['category']['p@5'])} | {_f(block['label']['p@5'])} | "
                         f"{block['category']['queries']} / {block['label']['queries']} |")
        lines.append("")
    lines += ["## Intended use", "", DISCLAIMER,
              "Figures are retrieval statistics on this collection; other hospitals and scanners may differ.", ""]
    return "\n".join(lines)
