"""The evaluation as text: the tables `python -m retrieval evaluate` prints and writes to evaluation.txt."""

from __future__ import annotations

import math

import numpy as np

from . import metrics
from .evaluate import CATEGORY, FIGURES, K, KS, LABEL, LEVELS, Evaluation, display_name
from .tables import format_table


def evaluation_text(self: Evaluation) -> str:
    """Every table of one evaluation run, as plain text."""

    duplicates = self.near_duplicates
    lines = [f"Evaluation of {self.index_dir} ({self.rows} rows, generation {self.generation}, "
             f"{self.created_at}, {self.seconds:.0f} s)",
             f"Near duplicates (pHash distance <= {duplicates['max_bits']} bits): {duplicates['pairs']} pairs "
             f"over {duplicates['rows']} rows, taken out of each other's ranked lists.", ""]
    header = ["model", "input", "queries", *(f"P@{k}" for k in KS), f"mAP@{K}", f"R@{K}", f"hit@{K}"]
    for level in LEVELS:
        title = "same category" if level == CATEGORY else "same (category, label), labelled rows only"
        lines.append(f"Leave-one-out (each row queries the others with its stored vector; input = what the "
                     f"vector encodes), relevant = {title}:")
        rows = [[display_name(name), result["input"], *_cells(result[level])]
                for name, result in self.image.items()]
        rows.append(["random ranking (expected)", "-", *_cells(self.random[level])])
        lines += [format_table(header, rows), ""]
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
        lines.append(f"Text to image, {self.text['queries']} queries from {self.text['file']} "
                     f"(version {self.text['version']}):")
        rows = []
        for name, result in self.text["models"].items():
            for level in LEVELS:
                rows.append([display_name(name), result["searches"], level, *_cells(result[level])])
        for level in LEVELS:
            rows.append(["random ranking (expected)", "-", level, *_cells(self.text["random"][level])])
        lines += [format_table(["model", "searches", "level", *header[2:]], rows), ""]
    return "\n".join(lines).rstrip() + "\n"

@staticmethod

def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _cells(figures: dict) -> list[str]:
    return [str(figures.get("queries", "-")), *(_fmt(figures.get(key)) for key in FIGURES)]


