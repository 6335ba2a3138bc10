"""Which of an index's models can answer here, which one answers by default, and the models table (the CLI
`models` verb and the app's Models tab both print `model_rows`).

The defaults follow the index's typed evaluation summary when it has one (read in `ModelPolicy.evaluation`, the
one place that reads it), else the registry's preference order. Text models are chosen by the query file's TRAIN
queries, never by the TEST queries that report; a model trained here leads the image search only by its card's
nested decision; the pretrained image models, which fit nothing here, by their cross-source figure. The hybrid
text model (hybrid.py) is offered wherever two of the index's text models can be fused, and then leads the text
models by design: it was fitted on the TRAIN queries, so they cannot judge it against the others.
"""

from __future__ import annotations

from .embedders import (IMAGE, QUERY_PREFERENCE, TEXT, availability, embedder_spec, list_models, model_version,
                         training_card)
from .errors import BadQuery, EmbedderUnavailable, UnknownEmbedder
from .evaluation_summary import DEFAULT_IMAGE_FIGURE, DEFAULT_TEXT_FIGURE, TEXT_LABEL_FIGURE, EvaluationSummary
from .hybrid import DEFAULT_FUSION, DESCRIPTION as HYBRID_DESCRIPTION, HYBRID, MIN_SCORE as HYBRID_MIN_SCORE, Fusion
from .layout import IndexGeneration
from .manifest import ModelEntry

# The evaluation figure that picks a modality's default model when the index has been evaluated (named and
# explained in evaluation/summary.py: image models by sources they have not seen).
# (text models: the mean of it and the label figure, where measured: finding-level precision counts as much)
DEFAULT_BY_FIGURE = {IMAGE: DEFAULT_IMAGE_FIGURE, TEXT: DEFAULT_TEXT_FIGURE}
ALSO_BY_FIGURE = {IMAGE: None, TEXT: TEXT_LABEL_FIGURE}
HYBRID_FAMILY = "fusion"
TABLE_FIGURES = 6  # evaluation figures shown per model in the models table (headline first)
REGISTRY_COLUMNS = ("name", "family", "embeds", "dim", "weights", "status", "detail")  # every models table
INDEX_COLUMNS = ("index",)  # and, over an index, how its vectors are searched (then the evaluation figures)
PRECISION_TAGS = (":fp32", ":bf16")  # a model version's last part where it says the pass's precision (registry)


class ModelPolicy:
    """The models of one index generation that this program can serve, and the choices made for a query that
    names none. Read-only after construction, so safe to share between threads."""

    def __init__(self, generation: IndexGeneration, models: list[str] | None = None):
        """`models`: the index's models to serve (default: all); one the index lacks raises UnknownEmbedder."""
        self.generation = generation
        self.entries: dict[str, ModelEntry] = generation.manifest.models
        self.unavailable: dict[str, str] = {}  # model -> why it cannot embed a query here
        self.models: list[str] = []
        for name in models if models is not None else list(self.entries):
            if name not in self.entries:
                raise UnknownEmbedder(f"Model {name!r} is not in this index; it has {list(self.entries)}.")
            self.models.append(name)
            reason = _unavailable(name) or _weights_changed(name, self.entries[name])
            if reason:  # vectors stay searchable ("more like this"), but new queries cannot be embedded
                self.unavailable[name] = reason
        self._evaluation: tuple[tuple | None, EvaluationSummary] | None = None  # (file stamp, summary)
        self._fusion: tuple[tuple | None, Fusion | None] | None = None  # (file stamp, fusion)

    def models_for(self, modality: str, fused: bool = True) -> list[str]:
        """Models in this index that can embed a query of `modality` right now; for text, the hybrid first
        when it can fuse two or more of them (`fused=False`: only models with vectors of their own)."""
        usable = [name for name in self.models
                  if self.entries[name].embeds(modality) and name not in self.unavailable]
        if modality == TEXT and fused and self.fusion() is not None:
            return [HYBRID, *usable]
        return usable

    def fusion(self) -> Fusion | None:
        """The hybrid text model's fusion over this index's usable text models: the one `evaluate` fitted on
        this generation, else the shipped default; None when fewer than two of its components are usable.
        Read again only when the file changes."""
        try:
            stamp = _stamp(self.generation.fusion_path)
        except OSError:
            stamp = None
        if self._fusion is None or self._fusion[0] != stamp:
            fitted = Fusion.from_dict(self.generation.read_fusion()) if stamp is not None else None
            components = self.models_for(TEXT, fused=False)
            self._fusion = (stamp, (fitted or DEFAULT_FUSION).restricted(components))
        return self._fusion[1]

    def models_for_image_and_text(self) -> list[str]:
        """Models that embed both images and texts in one space: an image query can take words too."""
        return [name for name in self.models_for(IMAGE) if self.entries[name].embeds(TEXT)]

    def default_model(self, modality: str, fused: bool = True) -> str | None:
        """For text, the hybrid where it is offered (`fused`); else the usable model with the best evaluation
        figure for `modality` (image: cross-source category P@5; text: the mean of category and label P@5 on the
        TRAIN queries), else the registry's preference order, else the first usable one. A model trained here is
        an image default only when its training card's nested decision says so (the outer gain's interval above
        zero: `_earned`), whatever this index's figures say. `fused=False`: a model with vectors of its own (to
        compare stored rows)."""
        usable = self.models_for(modality, fused)
        if modality == TEXT and HYBRID in usable:
            return HYBRID
        summary = self.evaluation()
        earned = [name for name in usable if _earned(name, modality)] or usable  # trained: its card's rule
        scored = {name: _headline(summary, name, modality) for name in earned}
        scored = {name: value for name, value in scored.items() if value is not None}
        if scored:
            return max(scored, key=scored.get)
        preferred = [name for name in QUERY_PREFERENCE[modality] if name in usable and _earned(name, modality)]
        return next(iter(preferred), usable[0] if usable else None)

    def row_model(self) -> str | None:
        """The model that compares collection rows when none is named: the best image model, else text."""
        return (self.default_model(IMAGE) or self.default_model(TEXT, fused=False)
                or next(iter(self.models), None))

    def vector_model(self, name: str) -> str:
        """`name`, or for the hybrid (which has no vectors to move) the best text model that has: what relevance
        feedback on a text query uses."""
        if name != HYBRID:
            return name
        return self.default_model(TEXT, fused=False) or name

    def indexes(self, model: str) -> str:
        """What a model's stored vectors encode: "image", "text" (the row's metadata), or for the hybrid "fusion"."""
        return HYBRID_FAMILY if model == HYBRID else self.entries[model].indexes

    def default_min_score(self, model: str | None) -> float:
        if model == HYBRID:
            return HYBRID_MIN_SCORE
        entry = self.entries.get(model or "")
        return float(entry.default_min_score) if entry else 0.0

    def describe(self, model: str | None) -> str | None:
        """One line on what a model does (None for a model this program does not know)."""
        if model == HYBRID:
            return HYBRID_DESCRIPTION
        try:
            return embedder_spec(model).description if model else None
        except UnknownEmbedder:
            return None

    def family(self, model: str) -> str:
        return HYBRID_FAMILY if model == HYBRID else self.entries[model].family

    def training_cards(self) -> dict[str, str]:
        """{model: its training card as Markdown} for the index's models that were trained by this project."""
        cards = {name: training_card(name) for name in self.models}
        return {name: card.get("markdown", "") for name, card in cards.items() if card}

    def resolve(self, name: str | None, modality: str | None) -> str:
        """`name`, checked: in this index and, for a query of `modality`, able to embed it here. Raises
        BadQuery, UnknownEmbedder or EmbedderUnavailable saying which models would do."""
        if name is None:
            raise BadQuery(f"This index has no model that embeds {modality or 'queries'}.")
        if name == HYBRID:  # no vectors of its own: it answers text queries only, and only over 2+ text models
            if modality != TEXT or self.fusion() is None:
                usable = self.models_for(modality, fused=False) if modality else self.models
                raise BadQuery(f"Model {HYBRID!r} fuses text queries over two or more text models and has no "
                               f"vectors of its own; use one of {usable}.")
            return name
        if name not in self.models:
            spec = embedder_spec(name)  # unknown names raise UnknownEmbedder with the registered list
            raise UnknownEmbedder(f"Model {spec.name!r} is not in this index; it has {self.models}.")
        if modality is not None:
            if not self.entries[name].embeds(modality):
                raise BadQuery(f"Model {name!r} cannot embed {modality} queries; use one of "
                               f"{self.models_for(modality)}.")
            if name in self.unavailable:
                raise EmbedderUnavailable(f"Model {name!r} is not available here: {self.unavailable[name]}")
        return name

    def status(self, name: str) -> str:
        """"ready", "not available here: why" or "not in this index (how to add it)"."""
        if name in self.unavailable:
            return f"not available here: {self.unavailable[name]}"
        if name in self.models or (name == HYBRID and self.fusion() is not None):
            return "ready"
        reason = _unavailable(name)
        if reason:
            return f"not available here: {reason}"
        return f"not in this index (add it: python -m retrieval build --models ...,{name})"

    def evaluation(self) -> EvaluationSummary:
        """What `python -m retrieval evaluate` measured on this index (empty before it has run): the one place
        the evaluation summary is read, again only when its file changes."""
        try:
            stamp = _stamp(self.generation.evaluation_path)
        except OSError:
            stamp = None
        if self._evaluation is None or self._evaluation[0] != stamp:
            summary = EvaluationSummary.read(self.generation) if stamp is not None else EvaluationSummary()
            self._evaluation = (stamp, summary)
        return self._evaluation[1]


def model_rows(policy: ModelPolicy | None = None) -> list[dict]:
    """The models table, one dict per model, for the CLI `models` verb and the app's Models tab alike.

    Always: name, family, embeds, dim, weights, status, detail (where the weights were found, when ready).
    With the `policy` of an index, the index's own models are listed too (registered or not), the status says
    whether each one serves this index, `index` says how its vectors are searched, and the headline evaluation
    figures follow (None where a figure does not apply)."""
    registry = {row["name"]: row for row in list_models()}
    fusion = policy.fusion() if policy else None
    if fusion is not None:  # the hybrid text model of this index, first
        registry = {HYBRID: _hybrid_row(fusion), **registry}
    names = list(dict.fromkeys([*registry, *(policy.models if policy else [])]))
    summary = policy.evaluation() if policy else EvaluationSummary()
    shown = summary.measured_keys()[:TABLE_FIGURES]  # headline figures first
    rows = []
    for name in names:
        registered, built = registry.get(name), policy.entries.get(name) if policy else None
        if registered is None:  # in the index, but no longer registered in this program
            registered = {"family": built.family, "embeds": " + ".join(built.modalities), "weights": "",
                          "status": "", "detail": ""}
        ready = registered["status"] == "ready"
        row = {"name": name, "family": registered["family"], "embeds": registered["embeds"],
               "dim": built.dim if built else registered["dim"], "weights": registered["weights"],
               "status": policy.status(name) if policy else
               ("ready" if ready else f"not available here: {registered['detail']}"),
               "detail": "; ".join(filter(None, [registered["detail"] if ready else "", _decision(name)]))}
        if policy:
            row["index"] = _index_description(built)
            row.update({key: _rounded(summary.figure(name, key)) for key in shown})
        rows.append(row)
    return rows


def _stamp(path) -> tuple[int, int]:
    """What tells a file written again: its time and its inode (an atomic write is a new file, so two writes
    within one tick of the clock still differ). Raises OSError when there is none."""
    status = path.stat()
    return status.st_mtime_ns, status.st_ino


def _headline(summary: EvaluationSummary, name: str, modality: str) -> float | None:
    """The figure that ranks a model for the default of `modality` (None: not measured)."""
    first = summary.figure(name, DEFAULT_BY_FIGURE[modality])
    also = summary.figure(name, ALSO_BY_FIGURE[modality]) if ALSO_BY_FIGURE[modality] else None
    return first if first is None or also is None else (first + also) / 2


def _hybrid_row(fusion: Fusion) -> dict:
    """The models-table row of the hybrid text model: what it fuses and where its weights come from."""
    weights = ("the shipped fusion (run `python -m retrieval evaluate` to fit this index's own)"
               if fusion.fitted_on.get("shipped") else f"fitted on this index's {fusion.fitted_on.get('queries')} "
                                                        f"train queries")
    return {"name": HYBRID, "family": HYBRID_FAMILY, "embeds": TEXT, "dim": None, "weights": weights,
            "status": "ready", "detail": "fuses " + ", ".join(fusion.searched)
            + (" and feeds back its first ranking's top rows" if fusion.first_pass else "")}


def _unavailable(name: str) -> str:
    """Why a model cannot embed a query in this program ("" when it can)."""
    try:
        embedder_spec(name)
    except UnknownEmbedder:
        return "not registered in this program"
    state = availability(name)
    return "" if state.ready else state.reason


def _weights_changed(name: str, entry: ModelEntry) -> str:
    """Why a model's queries would not match its stored vectors ("" when they would): its weights here are not
    the ones the index was built with (a retrained xray-lite0 before the rebuild), so a query would be embedded
    in another space than the rows it is compared with."""
    here = model_version(name)
    if _weights_of(here) == _weights_of(entry.version):
        return ""
    return (f"its weights changed since this index was built (index {_short(entry.version)}, here {_short(here)}): "
            f"rebuild the index (python -m retrieval build) to search with it")


def _weights_of(version: str) -> str:
    """A version without its precision tag: vectors from bf16 and fp32 passes differ by rounding only (an index
    built on a CPU with bf16 serves a query embedded in fp32 well), unlike vectors from other weights."""
    for tag in PRECISION_TAGS:
        version = version.removesuffix(tag)
    return version


def _short(version: str) -> str:
    return ":".join(part[:12] for part in version.split(":"))


def _earned(name: str, modality: str) -> bool:
    """A model trained here leads the image search only if its card's nested decision made it the default (its
    outer cross-source gain's interval above zero, training/selection.py); pretrained models keep their place."""
    card = training_card(name)
    return card is None or modality != IMAGE or bool(card.get("default_image_model"))


def _decision(name: str) -> str:
    """For a model trained here: whether its card made it the default image model, and why ('' otherwise)."""
    card = training_card(name)
    if card is None or "default_image_model" not in card:
        return ""
    verdict = "default image model" if card["default_image_model"] else "not the default image model"
    return f"{verdict}: {card.get('default_reason', '')}"


def _index_description(entry: ModelEntry | None) -> str:
    """How a model's vectors are searched: "exact" or the approximate index with its measured recall."""
    if entry is None:
        return ""
    if entry.recall_at_10 is None:
        return f"{entry.faiss_factory} (exact)"
    return f"{entry.faiss_factory}, recall@10 {entry.recall_at_10:.3f} (measured at build)"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


__all__ = ["ModelPolicy", "model_rows", "DEFAULT_BY_FIGURE", "REGISTRY_COLUMNS", "INDEX_COLUMNS"]
