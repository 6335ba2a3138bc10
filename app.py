"""X-Ray Search in the browser: a thin Gradio layer over `retrieval` (it finds images; it never diagnoses).

    python app.py                                          # serve the index in index/
    python app.py --collection ../shared/xray-collection   # build or refresh that index first, then serve
    python app.py --mcp                                    # also offer the searches as MCP tools

Handlers first (each one SearchEngine call), then `build_demo(engine)` (layout and wiring), then `main()`.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from retrieval import store
from retrieval.embedders import IMAGE, TEXT, availability, embedder_spec, list_embedders
from retrieval.errors import RetrievalError
from retrieval.images import MAX_FILE_BYTES, SUPPORTED_FORMATS, load_image
from retrieval.search import K_DEFAULT, K_MAX, K_MIN, SUGGESTION_NOTE, SearchEngine

def _write_cache_atomically() -> None:
    """Gradio writes each result image to a content-addressed cache file by truncating and rewriting it, so
    two users shown the same image at once can download it half-written (seen under load as 'peer closed
    connection ... received 0 bytes'). Write to a temporary file and rename instead: same path, never torn."""
    from gradio import processing_utils

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        target = (folder / f"{name}.{format}").resolve()
        if not target.is_file():
            with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as handle:
                handle.write(data)
            os.replace(handle.name, target)
        return str(target)

    processing_utils.save_pil_to_cache = save_pil_to_cache


_write_cache_atomically()

SEARCH_CONCURRENCY = 2  # searches running at once (2 CPU cores); the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once instead of piling up
CAPTION_SOURCE_CHARS = 28  # gallery captions keep the start of the source name
THUMBNAIL_SIDE = 384  # gallery images; the details panel shows the stored image (long side <= 1024)
THUMBNAIL_CACHE = 512  # recently shown thumbnails kept decoded (~150 KB each)
THUMBNAIL_THREADS = 2  # decoding releases the GIL: one thread per core
EMPTY = "**No images above the threshold** — lower it or try another query."
DISCLAIMER = ("For research and education only — **not a diagnostic device**. "
              "It finds similar images; it never diagnoses.")
TEXT_EXAMPLES = ["chest x-ray", "knee fracture", "dental panoramic", "hand radiograph of a child",
                 "knee osteoarthritis severe", "spine scoliosis", "wrist fracture", "covid-19 pneumonia"]
EVALUATION_FILE = "evaluation.json"  # written next to the index generation by `python -m retrieval evaluate`
MODEL_COLUMNS = ("name", "family", "embeds", "dim", "weights", "status")
MODEL_COLUMN_WIDTHS = [150, 150, 100, 70, 300, 430]  # px
EVALUATION_COLUMNS = 4  # the Models tab shows at most this many evaluation figures per model

# Paste an image anywhere on the page while the image tab is open, or drop one on a box that already holds a
# file (Gradio only takes drops on an empty box): either replaces the query file, which starts a search.
UPLOAD_JS = """
() => {
  const box = () => document.querySelector("#query-file");
  async function replace(file) {
    const element = box();
    if (!element.querySelector("input[type=file]")) {  // a file is there: clear it to get the input back
      element.querySelector("button[aria-label=Clear]")?.click();
      for (let i = 0; i < 40 && !element.querySelector("input[type=file]"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const input = element.querySelector("input[type=file]");
    if (!input) return;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  document.addEventListener("paste", (event) => {
    const file = event.clipboardData?.files?.[0];
    if (!file || !box() || box().offsetParent === null) return;
    event.preventDefault();
    replace(file);
  });
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => {
      const element = event.target.closest?.("#query-file");
      if (!element || element.querySelector("input[type=file]")) return;
      event.preventDefault();
      const file = event.dataTransfer?.files?.[0];
      if (type === "drop" && file) replace(file);
    });
  }
}
"""
CSS = """
#disclaimer { border-left: 4px solid #d97706; padding-left: .75em; }
.details td:first-child, .nowrap-head th { white-space: nowrap; }
.result-gallery .caption-label { white-space: normal; overflow: visible; text-overflow: clip; }
"""


# --- handlers ---------------------------------------------------------------------------------------
class Handlers:
    """Event handlers: each turns widget values into one SearchEngine call and its result into widget values.

    The docstrings of the public ones describe the API endpoints and the MCP tools."""

    def __init__(self, engine: SearchEngine):
        self.engine = engine
        self.example_files: list[str] = []
        self._decoder = ThreadPoolExecutor(max_workers=THUMBNAIL_THREADS, thread_name_prefix="thumbnails")
        self._thumbnail = functools.lru_cache(maxsize=THUMBNAIL_CACHE)(self._make_thumbnail)

    def search_text(self, query: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                    min_score: float | None = None):
        """Find radiographs in the collection that match a text query (keywords or a description).

        Args:
            query: what to look for, e.g. "knee fracture", "dental panoramic", "chest x-ray of a child".
            model: text model: "tfidf" (keywords), "minilm" (meaning) or an image-text model; default: the best one.
            k: how many results, 1 to 20.
            category: only this category (e.g. "knee"); empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
        Returns:
            The result images, each captioned "#rank · score · category · label · source"
            The results as JSON: id, rank, score, file_name, category, label, caption, source, license...
            A status line: how many results, or what to do when none is above the threshold.
        """
        hits = self._ask(self.engine.search_text, query, model, k, category, min_score)
        return self._results(hits)

    def search_image(self, image: str | None, model: str | None = None, k: int = K_DEFAULT,
                     category: str | None = None, min_score: float | None = None):
        """Find radiographs in the collection that look like an example image, and suggest its category.

        Args:
            image: the example image file (PNG, JPEG, TIFF, DICOM...).
            model: image model, e.g. "efficientnet-lite0"; default: the best one.
            k: how many results, 1 to 20.
            category: only this category (e.g. "chest"); empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
        Returns:
            The result images, each captioned "#rank · score · category · label · source"
            The results as JSON: id, rank, score, file_name, category, label, caption, source, license...
            The suggested category: vote shares of the nearest images (a retrieval statistic, not a diagnosis).
            A status line: how many results, or what to do when none is above the threshold.
        """
        found = self._ask(self.engine.search_image, image, model, k, category, min_score)
        gallery, records, status = self._results(found.hits)
        return gallery, records, found.suggestion or None, status

    def similar(self, item_id: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                min_score: float | None = None):
        """More like this: the images nearest to one already in the collection (that image itself left out).

        Args:
            item_id: the id of a collection image, as returned in the "id" field of a search result.
            model: the model whose vectors compare the images; default: the best image model.
            k: how many results, 1 to 20.
            category: only this category; empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
        Returns:
            The result images, each captioned "#rank · score · category · label · source"
            The results as JSON: id, rank, score, file_name, category, label, caption, source, license...
            A status line: how many results, or what to do when none is above the threshold.
        """
        hits = self._ask(self.engine.similar, item_id, model, k, category, min_score)
        return self._results(hits)

    @staticmethod
    def _ask(search, query, model, k, category, min_score):
        """One engine search; the library's errors become a visible message (an AppError through the API)."""
        try:
            return search(query, model=model or None, k=k, category=category or None, min_score=min_score)
        except RetrievalError as error:
            raise gr.Error(str(error), print_exception=False) from error

    def models(self) -> list[dict]:
        """Every registered model: family, what it embeds, dimension, where its weights come from, and whether
        it is ready here (with the reason when not). Only models with status "ready" can answer queries."""
        evaluation = _evaluation(self.engine)
        rows = []
        for name in dict.fromkeys([*list_embedders(), *self.engine.models]):
            built = self.engine.manifest["models"].get(name, {})
            try:
                spec = embedder_spec(name)
                family, embeds, dim, weights = spec.family, spec.modalities, spec.dim, spec.weights
            except RetrievalError:  # in the index, but no longer registered in this program
                family, embeds, dim, weights = built.get("family", ""), built.get("modalities", []), None, ""
            rows.append({"name": name, "family": family, "embeds": " + ".join(embeds),
                         "dim": built.get("dim") or dim, "weights": weights, "status": self._status(name),
                         **evaluation.get(name, {})})
        return rows

    def _status(self, name: str) -> str:
        if name in self.engine.unavailable:
            return f"not available here: {self.engine.unavailable[name]}"
        if name in self.engine.models:
            return "ready"
        state = availability(name)
        if not state.ready:
            return f"not available here: {state.reason}"
        return f"not in this index (add it: python -m retrieval build --models ...,{name})"

    def pick(self, records: list[dict], event: gr.SelectData):
        """A clicked result: its id, its image and its full metadata."""
        record = records[event.index]
        return record["id"], self.engine.image(record["id"]), details_markdown(record)

    def preview(self, path: str | None):
        """The uploaded file as the search sees it (DICOM included); nothing when it is not an image."""
        try:
            return load_image(path) if path else None
        except RetrievalError:
            return None  # the search itself reports why

    def use_example(self, event: gr.SelectData) -> str:
        return self.example_files[event.index]

    def default_min_score(self, model: str | None) -> float:
        return float(self.engine.manifest["models"].get(model or "", {}).get("default_min_score", 0.0))

    def describe(self, model: str | None) -> str | None:
        return embedder_spec(model).description if model else None

    def model_chosen(self, model: str | None):
        """A newly chosen model brings its description and its own default minimum score."""
        return gr.update(info=self.describe(model)), self.default_min_score(model)

    def choose_default(self, model: str):
        """The model chosen in the Models tab becomes the default of the search tabs that can use it."""
        text, image = self.engine.models_for(TEXT), self.engine.models_for(IMAGE)
        return (gr.update(value=model) if model in text else gr.update(),
                gr.update(value=model) if model in image else gr.update())

    def _results(self, hits):
        records = [hit.to_dict() for hit in hits]
        thumbnails = self._decoder.map(self._thumbnail, [hit.id for hit in hits])
        gallery = [(thumbnail, caption(hit)) for thumbnail, hit in zip(thumbnails, hits)]
        status = f"{len(hits)} result{'s' if len(hits) != 1 else ''} — click one for details and more like it." \
            if hits else EMPTY
        return gallery, records, status

    def _make_thumbnail(self, item_id: str):
        image = self.engine.image(item_id)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        return image


def caption(hit) -> str:
    """"#1 · 0.83 · knee · kl-2 · OAI": rank, score, category, label, short source."""
    source = hit.source.split(" (")[0]
    if len(source) > CAPTION_SOURCE_CHARS:  # cut at a word: "Knee Osteoarthritis Dataset…"
        source = source[:CAPTION_SOURCE_CHARS].rsplit(" ", 1)[0].rstrip(":,;") + "…"
    return " · ".join(part for part in (f"#{hit.rank}", f"{hit.score:.2f}", hit.category, hit.label, source) if part)


def details_markdown(record: dict) -> str:
    """Every field of a result as a two-column table (links clickable)."""
    def cell(value) -> str:
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return f"[{text}]({text})" if text.startswith(("http://", "https://")) else text

    return "| Field | Value |\n|---|---|\n" + "\n".join(f"| {key} | {cell(value)} |" for key, value in record.items())


def _evaluation(engine: SearchEngine) -> dict[str, dict[str, float]]:
    """A few per-model figures from `<generation>/evaluation.json`, when the index has been evaluated
    (None where a figure does not apply to a model)."""
    try:
        models = json.loads((engine.generation / EVALUATION_FILE).read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    keys = dict.fromkeys(key for figures in models.values() for key in figures)  # headline figures first
    columns = [key for key in keys if any(_is_figure(figures.get(key)) for figures in models.values())]
    return {name: {key: round(figures[key], 3) if _is_figure(figures.get(key)) else None
                   for key in columns[:EVALUATION_COLUMNS]} for name, figures in models.items()}


def _is_figure(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def collection_markdown(stats: dict) -> tuple[str, str, str]:
    """Three tables: images per category, per category and label, and per source with licence and link."""
    counts = [f"**{stats['rows']} images** in {len(stats['categories'])} categories.", "",
              "| Category | Images |", "|---|---:|"]
    counts += [f"| {category} | {count} |" for category, count in stats["categories"].items()]
    labels = ["| Category / label | Images |", "|---|---:|"]
    labels += [f"| {label} | {count} |" for label, count in stats["labels"].items()]
    sources = ["| Source | Images | Licence | Link |", "|---|---:|---|---|"]
    for source, entry in stats["sources"].items():
        licences = ", ".join(f"{name} ({count})" if len(entry["licenses"]) > 1 else name
                             for name, count in entry["licenses"].items())
        link = f"[{entry['url']}]({entry['url']})" if entry["url"] else ""
        sources.append(f"| {source} | {entry['images']} | {licences} | {link} |")
    return "\n".join(counts), "\n".join(labels), "\n".join(sources)


def example_files(engine: SearchEngine) -> list[tuple[str, str]]:
    """One image per category, written to a temporary folder at start-up: (path, category)."""
    folder = Path(tempfile.mkdtemp(prefix="xray-examples-"))
    first: dict[str, str] = {}
    for item_id in engine.ids:
        first.setdefault(engine.record(item_id)["category"], item_id)
    examples = []
    for category in engine.categories:
        path = folder / f"{category}.png"
        engine.image(first[category]).save(path)
        examples.append((str(path), category))
    return examples


# --- layout and wiring ------------------------------------------------------------------------------
@dataclass
class ResultsView:
    status: gr.Markdown
    gallery: gr.Gallery
    table: gr.JSON  # also what a click on the gallery reads (a gr.State output would break the MCP tools)

    @property
    def outputs(self) -> list:
        return [self.gallery, self.table, self.status]


@dataclass
class Controls:
    model: gr.Dropdown
    k: gr.Slider
    category: gr.Dropdown
    min_score: gr.Slider


def _results_view(label: str, elem_id: str) -> ResultsView:
    status = gr.Markdown(label="search_status", elem_id=f"{elem_id}-status")
    gallery = gr.Gallery(label=label, columns=4, object_fit="contain", allow_preview=False, format="jpeg",
                         interactive=False, elem_id=elem_id, elem_classes="result-gallery")
    with gr.Accordion("Results as JSON", open=False):
        table = gr.JSON(label="results_json", show_label=False)
    # an empty result leaves only the status line ("no images above the threshold..."), not a blank gallery
    table.change(lambda records: gr.update(visible=records != []), table, gallery, api_visibility="private",
                 queue=False)
    return ResultsView(status, gallery, table)


def _controls(handlers: Handlers, modality: str, prefix: str) -> Controls:
    engine = handlers.engine
    choices = [(f"{name} — {embedder_spec(name).family}", name) for name in engine.models_for(modality)]
    default = engine.default_model(modality)
    model = gr.Dropdown(choices, value=default, label=f"{modality.capitalize()} model", elem_id=f"{prefix}-model",
                        info=handlers.describe(default))
    k = gr.Slider(K_MIN, K_MAX, value=K_DEFAULT, step=1, precision=0, label="Results (top-k)")
    min_score = gr.Slider(0.0, 1.0, value=handlers.default_min_score(default), step=0.01, label="Minimum score",
                          info="Cosine similarity; changing the model resets it to that model's default.")
    category = gr.Dropdown([("All categories", "")] + [(c, c) for c in engine.categories], value="",
                           label="Category")
    model.change(handlers.model_chosen, model, [model, min_score], api_visibility="private")
    return Controls(model, k, category, min_score)


def _details_panel(prefix: str):
    gr.Markdown("### Selected result and more like it\nClick a result to see it here with its metadata and the "
                "images nearest to it; click one of those to keep exploring.")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Selected image", type="pil", interactive=False, height=320,
                             elem_id=f"{prefix}-selected")
            item_id = gr.Textbox(label="Selected id", interactive=False)
            record = gr.Markdown(label="metadata", elem_id=f"{prefix}-metadata", elem_classes="details")
        with gr.Column(scale=2):
            more = _results_view("More like this", f"{prefix}-more")
    return item_id, image, record, more


def _wire_selection(handlers: Handlers, main: ResultsView, details, controls: Controls, image_controls: Controls,
                    api_name: str | None) -> None:
    """Clicking a result (in the results or in "more like this") shows it and runs "more like this" from it,
    with the image model of the image tab."""
    item_id, image, record, more = details
    for view, name in ((main, api_name), (more, None)):
        view.gallery.select(handlers.pick, view.table, [item_id, image, record], api_visibility="private").then(
            handlers.similar, [item_id, image_controls.model, controls.k, controls.category, image_controls.min_score],
            more.outputs, api_name=name, api_visibility="public" if name else "private", concurrency_id="search",
            concurrency_limit=SEARCH_CONCURRENCY)


def build_demo(engine: SearchEngine) -> gr.Blocks:
    """The whole app over one loaded index; `launch()` serves it."""
    handlers = Handlers(engine)
    stats = engine.collection_stats()
    examples = example_files(engine)
    handlers.example_files = [path for path, _ in examples]
    with gr.Blocks(title="X-Ray Search", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# X-Ray Search\nFind radiographs by text or by example image among {len(engine)} images "
                    f"from public datasets ({', '.join(engine.categories)}); click a result for more like it.")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("Text search", id="text"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query = gr.Textbox(label="Query", placeholder="e.g. knee fracture — press Enter to search",
                                           elem_id="text-query")
                        text_button = gr.Button("Search", variant="primary", elem_id="text-search")
                        text_controls = _controls(handlers, TEXT, "text")
                        text_examples = gr.Examples(TEXT_EXAMPLES, inputs=query, label="Example queries",
                                                    cache_examples=False, api_visibility="private")
                    with gr.Column(scale=2):
                        text_results = _results_view("Results", "text-results")
                text_details = _details_panel("text")
            with gr.Tab("Image search", id="image"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query_file = gr.File(label="Query image: drop, paste (Ctrl+V) or click to choose",
                                             file_count="single", type="filepath", elem_id="query-file")
                        gr.Markdown(f"Accepted: {SUPPORTED_FORMATS}; up to {MAX_FILE_BYTES // 2**20} MB.")
                        preview = gr.Image(label="Query as searched", type="pil", interactive=False, height=220)
                        image_button = gr.Button("Search", variant="primary", elem_id="image-search")
                        image_controls = _controls(handlers, IMAGE, "image")
                        example_gallery = gr.Gallery(examples, label="Examples from the collection (click to search)",
                                                     columns=3, height=300, allow_preview=False, interactive=False,
                                                     elem_id="image-examples")
                    with gr.Column(scale=2):
                        suggestion = gr.Label(label="Suggested category", num_top_classes=3, elem_id="suggestion")
                        gr.Markdown(SUGGESTION_NOTE)
                        image_results = _results_view("Results", "image-results")
                image_details = _details_panel("image")
            with gr.Tab("Models", id="models"):
                gr.Markdown("Every registered model, with where its weights come from. Models that are not "
                            "available here are listed but not offered in the search tabs.")
                usable = [name for name in engine.models if name not in engine.unavailable]
                default_model = gr.Dropdown(usable, value=engine.default_model(TEXT), elem_id="default-model",
                                            label="Default model for searches",
                                            info="Becomes the model of the search tabs that can use it.")
                rows = handlers.models()
                gr.Dataframe([[row[key] for key in MODEL_COLUMNS] for row in rows], headers=list(MODEL_COLUMNS),
                             column_widths=MODEL_COLUMN_WIDTHS, interactive=False, wrap=True, max_height=800,
                             elem_id="models-table")
                figures = list(dict.fromkeys(key for row in rows for key in row if key not in MODEL_COLUMNS))
                if figures:  # the index has been evaluated (python -m retrieval evaluate)
                    gr.Markdown("Retrieval quality measured on this index (`python -m retrieval evaluate`):")
                    gr.Dataframe([[row["name"], *("" if row.get(key) is None else row[key] for key in figures)]
                                  for row in rows if any(key in row for key in figures)], headers=["name", *figures],
                                 interactive=False, elem_id="evaluation-table")
            with gr.Tab("Collection", id="collection"):
                counts, labels, sources = collection_markdown(stats)
                with gr.Row(elem_id="collection-stats"):
                    gr.Markdown(counts)
                    gr.Markdown(labels)
                gr.Markdown(sources, elem_classes="nowrap-head")

        # wiring: the four public endpoints carry api_name; everything else is private
        text_outputs = text_results.outputs
        text_inputs = [query, text_controls.model, text_controls.k, text_controls.category, text_controls.min_score]
        gr.on([text_button.click, query.submit], handlers.search_text, text_inputs, text_outputs,
              api_name="search_text", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        text_examples.load_input_event.then(handlers.search_text, text_inputs, text_outputs,
                                            api_visibility="private", concurrency_id="search")
        image_inputs = [query_file, image_controls.model, image_controls.k, image_controls.category,
                        image_controls.min_score]
        image_outputs = [image_results.gallery, image_results.table, suggestion, image_results.status]
        gr.on([image_button.click, query_file.upload], handlers.search_image, image_inputs, image_outputs,
              api_name="search_image", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        query_file.change(handlers.preview, query_file, preview, api_visibility="private")
        example_gallery.select(handlers.use_example, None, query_file, api_visibility="private").then(
            handlers.search_image, image_inputs, image_outputs, api_visibility="private", concurrency_id="search")
        _wire_selection(handlers, image_results, image_details, image_controls, image_controls, "similar")
        _wire_selection(handlers, text_results, text_details, text_controls, image_controls, None)
        default_model.change(handlers.choose_default, default_model, [text_controls.model, image_controls.model],
                             api_visibility="private")
        gr.api(handlers.models, api_name="models")
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, mcp: bool = False,
           **options):
    """Queue and serve `demo` with the app's limits (main() and the tests both start it this way)."""
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo.launch(server_name=host, server_port=port, share=share, mcp_server=mcp,
                       max_file_size=MAX_FILE_BYTES, css=CSS, js=UPLOAD_JS, **options)


# --- command line -----------------------------------------------------------------------------------
NO_INDEX = """No index in {index}/ and no collection to build one from. Either build it first:
    python -m retrieval build --collection ../shared/xray-collection --index {index}
or build and serve in one step:
    python app.py --collection ../shared/xray-collection
(--collection also takes a Hugging Face dataset id; on a Space, set the variable XRAY_COLLECTION.)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="X-Ray Search web app. " + DISCLAIMER.replace("**", ""))
    parser.add_argument("--index", default=os.environ.get("XRAY_INDEX", "index"),
                        help="index folder (default: $XRAY_INDEX or index/)")
    parser.add_argument("--collection", default=os.environ.get("XRAY_COLLECTION"),
                        help="collection folder or Hugging Face dataset id: build or refresh the index from it "
                             "first (default: $XRAY_COLLECTION)")
    parser.add_argument("--host", default="0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    parser.add_argument("--mcp", action="store_true", help="also serve the searches as MCP tools (/gradio_api/mcp/)")
    args = parser.parse_args(argv)
    if args.mcp and importlib.util.find_spec("mcp") is None:
        print('--mcp needs the MCP package: pip install "mcp>=1.21,<2"', file=sys.stderr)
        return 2
    try:
        if args.collection:
            from retrieval.index import build_index

            build_index(args.collection, args.index)  # progress bars in the console; unchanged -> instant
        elif store.current_generation(args.index) is None:
            print(NO_INDEX.format(index=Path(args.index).as_posix()), file=sys.stderr)
            return 2
        from retrieval.milvus_store import store_from_env

        engine = SearchEngine(args.index, vector_store=store_from_env())  # FAISS unless XRAY_STORE=milvus
    except RetrievalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    launch(build_demo(engine), args.host, args.port, share=args.share, mcp=args.mcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
