"""The evaluation summary of an index generation: per-model figures under named keys in evaluation.json, written
by `python -m retrieval evaluate` (retrieval/evaluation/) and read by the app's model policy; the names of the
figures, and of those that pick the app's default models, are declared here, below both.

    {"created_at": ..., "rows": ..., "near_duplicate_pairs": ..., "text_queries": ...,
     "models": {name: {"cross_source_category_p@5": ..., ...,  # MODEL_FIGURES, in that order, null where a
                       "indexes": "image" | "text"}},            # figure does not apply
     "baselines": {"raw-pixels": {...the same keys...}}}

Every model lists every key of MODEL_FIGURES, headline figures first, so the first few make aligned columns.
A file written by an older program reads as well (unknown keys are kept, missing ones read as None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layout import IndexGeneration

KS = (1, 5, 10)  # the cut-offs of P@k
K = max(KS)  # and of mAP, recall and hit rate
FIGURES = tuple(f"p@{k}" for k in KS) + (f"map@{K}", f"r@{K}", f"hit@{K}")
CATEGORY, LABEL = "category", "label"  # relevant: same category; same (category, label), labelled rows only
LEVELS = (CATEGORY, LABEL)
# Relevant: the same body part (rows that name one). `category` mixes anatomy with one finding (fracture): a
# child's hand film that finds fractured hands found the right anatomy. Reported by the image protocols beside
# the two levels; nothing is chosen on it (selection, gains and defaults read LEVELS).
ANATOMY = "body_part"

# What a figure measures (the first part of its key).
CROSS_SOURCE = "cross_source"  # image model, whole sources held out (the honest image figure)
IMAGE = "image"  # image model, leave-one-out over the index
TEXT = "text"  # text query file through `search_text` (the TEST queries where the file has splits)
TEXT_TRAIN = "text_train"  # the same on the TRAIN queries: what chooses among text models (the TEST ones report)
METADATA = "metadata"  # text-indexed model, leave-one-out over the rows' metadata vectors
INDEXES = "indexes"  # not a figure: what the model's stored vectors encode, "image" or "text"


def figure_key(measure: str, level: str, figure: str = "p@5") -> str:
    """The summary key of one figure, e.g. figure_key(CROSS_SOURCE, CATEGORY) == "cross_source_category_p@5"."""
    return f"{measure}_{level}_{figure}"


# The figures that choose a modality's default model: image models by how they do on sources they have not
# seen (never by in-collection figures), text models by the query file's TRAIN queries, never by the TEST queries
# that report (the hybrid, fitted on the TRAIN queries, has no such figure: it leads by design, policy.py).
DEFAULT_IMAGE_FIGURE = figure_key(CROSS_SOURCE, CATEGORY)
DEFAULT_TEXT_FIGURE = figure_key(TEXT_TRAIN, CATEGORY)
TEXT_LABEL_FIGURE = figure_key(TEXT_TRAIN, LABEL)  # text models: the mean of the two (label when measured) decides
FEEDBACK_GAIN = "feedback_gain_label_p@5"  # one round of relevance feedback, what the person sees
FEEDBACK_RESIDUAL_GAIN = "feedback_residual_gain_label_p@5"  # the same on rows not judged yet
HEADLINE = tuple(figure_key(measure, level) for measure in (CROSS_SOURCE, IMAGE, TEXT) for level in LEVELS)
MODEL_FIGURES = tuple(dict.fromkeys([
    *HEADLINE, figure_key(CROSS_SOURCE, ANATOMY), DEFAULT_TEXT_FIGURE, TEXT_LABEL_FIGURE,
    *(figure_key(measure, level, figure) for level in LEVELS for measure in (IMAGE, TEXT) for figure in FIGURES),
    *(figure_key(METADATA, level, figure) for level in LEVELS for figure in FIGURES),
    FEEDBACK_GAIN, FEEDBACK_RESIDUAL_GAIN]))


def is_figure(value) -> bool:
    """A measured figure: a finite number (not None, not a flag)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class ModelFigures:
    """One model's (or baseline's) figures: key -> value (None where it does not apply), and what it indexes."""

    figures: dict[str, float | None] = field(default_factory=dict)
    indexes: str | None = None

    def figure(self, key: str) -> float | None:
        value = self.figures.get(key)
        return float(value) if is_figure(value) else None

    def to_dict(self) -> dict:
        return {**self.figures, **({INDEXES: self.indexes} if self.indexes is not None else {})}

    @classmethod
    def from_dict(cls, payload: dict) -> "ModelFigures":
        figures = {str(key): value for key, value in payload.items() if key != INDEXES}
        indexes = payload.get(INDEXES)
        return cls(figures, indexes if isinstance(indexes, str) else None)


@dataclass
class EvaluationSummary:
    """What `evaluate` leaves for the app: per-model figures, baselines and a few counts of the run."""

    created_at: str = ""
    rows: int = 0
    near_duplicate_pairs: int = 0
    text_queries: int = 0
    models: dict[str, ModelFigures] = field(default_factory=dict)
    baselines: dict[str, ModelFigures] = field(default_factory=dict)

    def figure(self, model: str, key: str) -> float | None:
        """Figure `key` of `model` (a model or a baseline), or None when not measured."""
        entry = self.models.get(model) or self.baselines.get(model)
        return entry.figure(key) if entry else None

    def measured_keys(self) -> list[str]:
        """The figure keys some model has a value for, in the stored order (headline figures first)."""
        keys = dict.fromkeys(key for entry in self.models.values() for key in entry.figures)
        return [key for key in keys if any(entry.figure(key) is not None for entry in self.models.values())]

    def to_dict(self) -> dict:
        return {"created_at": self.created_at, "rows": self.rows, "near_duplicate_pairs": self.near_duplicate_pairs,
                "text_queries": self.text_queries,
                "models": {name: entry.to_dict() for name, entry in self.models.items()},
                "baselines": {name: entry.to_dict() for name, entry in self.baselines.items()}}

    @classmethod
    def from_dict(cls, payload: dict) -> "EvaluationSummary":
        """A summary from its JSON form; anything malformed reads as absent."""
        payload = payload if isinstance(payload, dict) else {}

        def entries(key: str) -> dict[str, ModelFigures]:
            found = payload.get(key)
            return {str(name): ModelFigures.from_dict(entry) for name, entry in found.items()
                    if isinstance(entry, dict)} if isinstance(found, dict) else {}

        def count(key: str) -> int:
            value = payload.get(key)
            return int(value) if is_figure(value) else 0

        return cls(created_at=str(payload.get("created_at") or ""), rows=count("rows"),
                   near_duplicate_pairs=count("near_duplicate_pairs"), text_queries=count("text_queries"),
                   models=entries("models"), baselines=entries("baselines"))

    @classmethod
    def read(cls, generation: "IndexGeneration") -> "EvaluationSummary":
        """The generation's summary (empty before `evaluate` has run on it, or when the file is unreadable)."""
        return cls.from_dict(generation.read_evaluation())

    def write(self, generation: "IndexGeneration") -> Path:
        """Merge into the generation's summary (figures of models this run left out stay), atomically."""
        return generation.write_evaluation(self.to_dict())


__all__ = ["KS", "K", "FIGURES", "CATEGORY", "LABEL", "LEVELS", "EvaluationSummary", "ModelFigures", "figure_key", "is_figure", "DEFAULT_IMAGE_FIGURE",
           "DEFAULT_TEXT_FIGURE", "TEXT_LABEL_FIGURE", "TEXT_TRAIN", "MODEL_FIGURES", "HEADLINE", "CROSS_SOURCE", "IMAGE", "TEXT", "METADATA",
           "FEEDBACK_GAIN", "FEEDBACK_RESIDUAL_GAIN"]
