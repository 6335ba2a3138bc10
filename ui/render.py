"""Results and collection statistics as the page shows them: gallery captions, Markdown tables, examples."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path

from retrieval.archive import ARCHIVE_SOURCE, describe
from retrieval.novelty import NO_MATCH, no_match_sentence
from retrieval.policy import INDEX_COLUMNS, REGISTRY_COLUMNS

from .texts import ARCHIVE_SOURCE_NOTE, images_line

CAPTION_SOURCE_CHARS = 28  # gallery captions keep the start of the source name
MODELS_INTRO = ("Every registered model, with where its weights come from. Models that are not available here "
                "are listed but not offered in the search tabs.")
MODEL_COLUMNS = (*REGISTRY_COLUMNS, *INDEX_COLUMNS)  # then the evaluation figures, in a table of their own
MODEL_COLUMN_WIDTHS = [140, 130, 100, 60, 280, 380, 240, 160]  # px, one per column


class Thumbnails:
    """The gallery's images: each result's stored JPEG thumbnail written once to a file of this app's own temporary
    folder, its path served from then on. A PIL image would be re-encoded by Gradio on every answer (16 ms per
    image here against 3 ms for a file, benchmarks/api_latency.py)."""

    def __init__(self, load):
        self._load = load  # id -> JPEG bytes (Catalogue.thumbnail_jpeg)
        self._folder = Path(tempfile.mkdtemp(prefix="xray-thumbnails-"))
        self._lock = threading.Lock()
        self._written: dict[str, str] = {}

    def __call__(self, ids: list[str]) -> list[str]:
        return [self._written.get(item_id) or self._write(item_id) for item_id in ids]

    def _write(self, item_id: str) -> str:
        path = self._folder / f"{hashlib.sha1(item_id.encode()).hexdigest()[:20]}.jpg"
        with self._lock:
            if item_id not in self._written:
                partial = path.with_suffix(".part")
                partial.write_bytes(self._load(item_id))
                partial.replace(path)  # a reader never sees half a file
                self._written[item_id] = str(path)
        return self._written[item_id]


def caption(hit) -> str:
    """"#1 · 0.83 · knee · kl-2 · OAI · CC-BY-4.0": rank, score, category, label, short source, licence (the
    attribution CC-BY asks for wherever an image is shown; the details panel has the full source and link). A row
    of your DICOM archive has no source to credit: "#1 · 0.83 · hand · DX PA R · Acme" (modality, view,
    laterality, and the manufacturer, which shows when results cluster by scanner)."""
    if hit.source == ARCHIVE_SOURCE:
        acquired = " ".join(part for part in (hit.modality, hit.view, hit.laterality) if part)
        parts = (hit.category, acquired, _short(hit.manufacturer))
    else:
        parts = (hit.category, hit.label, _short(hit.source.split(" (")[0]), hit.license or "licence unknown")
    return " · ".join(part for part in (f"#{hit.rank}", f"{hit.score:.2f}", *parts) if part)


def _short(text: str) -> str:
    """The start of a long name, cut at a word: "Knee Osteoarthritis Dataset…"."""
    if len(text) <= CAPTION_SOURCE_CHARS:
        return text
    return text[:CAPTION_SOURCE_CHARS].rsplit(" ", 1)[0].rstrip(":,;") + "…"


def suggestion(result):
    """The suggested category as the Label shows it: the vote's shares, or the plain "No close match in this
    collection" when the query is judged not in the collection (None: no vote)."""
    return NO_MATCH if result.in_collection is False else (result.suggestion or None)


def with_query_words(result, status: str) -> str:
    """The status line, followed by the words of a text query that no image's text has, or that the hybrid read as
    others (query_words.py)."""
    sentence = result.query_words.sentence() if result.query_words is not None else ""
    return f"{status} {sentence}" if sentence else status


def with_notice(result, status: str) -> str:
    """The status line, under the notice that the images below are only the nearest ones when the query is
    judged not in the collection; for a judged query in it, followed by its match score (as the CLI says it), so
    a weak match shows even where the suggestion answers."""
    if result.in_collection is None:
        return status
    if result.in_collection:
        return f"{status} Match score {result.match_score:.2f}: how likely the collection holds this kind of image."
    return f"**{no_match_sentence(result.match_score, result.judged_by)}**\n\n{status}"


def details_markdown(record: dict) -> str:
    """Every field of a result that holds a value, as a two-column table (links clickable; an archive's rows
    have no label, source link or licence); the query's judgement, which every record of an image search
    carries, belongs to the query, not to this result, and is left out."""
    def cell(value) -> str:
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return f"[{text}]({text})" if text.startswith(("http://", "https://")) else text

    return "| Field | Value |\n|---|---|\n" + "\n".join(f"| {key} | {cell(value)} |" for key, value in record.items()
                                                     if not key.startswith("query_") and value not in ("", None))


def model_tables(rows: list[dict]) -> tuple[dict, dict | None]:
    """The Models tab's two tables as Dataframe arguments, from the rows of retrieval.policy.model_rows (what
    the CLI `models` verb prints): the models, and their evaluation figures (None before the index has been
    evaluated)."""
    models = {"value": [[row[key] for key in MODEL_COLUMNS] for row in rows], "headers": list(MODEL_COLUMNS),
              "column_widths": MODEL_COLUMN_WIDTHS}
    figures = list(dict.fromkeys(key for row in rows for key in row if key not in MODEL_COLUMNS))
    if not any(row.get(key) is not None for row in rows for key in figures):
        return models, None
    values = [[row["name"], *("" if row.get(key) is None else row[key] for key in figures)]
              for row in rows if any(row.get(key) is not None for key in figures)]
    return models, {"value": values, "headers": ["name", *figures]}


def cards_markdown(cards: dict[str, str]) -> str:
    """The training card of each model trained here, folded (what it was trained on and how it did on
    sources it never saw)."""
    return "\n\n".join(f"<details><summary><b>Training card: {name}</b></summary>\n\n{text}\n\n</details>"
                       for name, text in cards.items())


def collection_markdown(stats: dict) -> tuple[str, str, str]:
    """Three tables: images per category, per category and label, and per source with licence and link. An index
    of a DICOM archive (its stats count archive `fields`) says so, and has a note on its source instead of the
    last table (and no labels table: an archive has no labels)."""
    archive = bool(stats.get("fields"))
    counts = [images_line(stats["rows"], len(stats["categories"]), archive), "",
              "| Category | Images |", "|---|---:|"]
    counts += [f"| {category} | {count} |" for category, count in stats["categories"].items()]
    if archive and not stats["labels"]:
        return "\n".join(counts), "", ARCHIVE_SOURCE_NOTE
    labels = ["| Category / label | Images |", "|---|---:|"]
    labels += [f"| {label} | {count} |" for label, count in stats["labels"].items()]
    sources = ["| Source | Images | Licence | Link |", "|---|---:|---|---|"]
    for source, entry in stats["sources"].items():
        licences = ", ".join(f"{name} ({count})" if len(entry["licenses"]) > 1 else name
                             for name, count in entry["licenses"].items())
        link = f"[{entry['url']}]({entry['url']})" if entry["url"] else ""
        sources.append(f"| {source} | {entry['images']} | {licences} | {link} |")
    return "\n".join(counts), "\n".join(labels), "\n".join(sources)


def archive_markdown(fields: dict[str, dict[str, int]], skipped: dict[str, int]) -> str:
    """A DICOM archive: images per value of each field (modality, body part, sex, ...), and the files its build
    left out, per reason. "" for a curated collection."""
    parts = []
    for name, counts in fields.items():
        parts += [f"| {name.replace('_', ' ')} | Images |", "|---|---:|",
                  *(f"| {value} | {count} |" for value, count in counts.items()), ""]
    if skipped:
        parts += [f"**{sum(skipped.values())} file(s) left out by the build**", "", "| Why | Files |", "|---|---:|",
                  *(f"| {describe(reason)} | {count} |" for reason, count in
                    sorted(skipped.items(), key=lambda item: (-item[1], item[0])))]
    return "\n".join(parts)


def example_files(catalogue) -> list[tuple[str, str]]:
    """One image per category of the `catalogue`, written to a temporary folder at start-up: (path, category)."""
    folder = Path(tempfile.mkdtemp(prefix="xray-examples-"))
    first: dict[str, str] = {}
    for item_id, category in zip(catalogue.ids, catalogue.column("category")):
        first.setdefault(category, item_id)
    examples = []
    for category in catalogue.categories:
        path = folder / f"{category}.png"
        catalogue.image(first[category]).save(path)
        examples.append((str(path), category))
    return examples
