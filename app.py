"""X-Ray Search in the browser: a thin Gradio layer over `retrieval` (it finds images; it never diagnoses).

    python app.py                                          # serve the index in index/
    python app.py --collection ../shared/xray-collection   # build or refresh that index first, then serve
    python app.py --mcp                                    # also offer the searches as MCP tools

Handlers first (each one SearchEngine call), then `build_demo(engine)` (layout and wiring), then `main()`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from retrieval import store
from retrieval.embedders import IMAGE, TEXT, availability, embedder_spec, list_embedders
from retrieval.errors import RetrievalError
from retrieval.images import MAX_FILE_BYTES, SUPPORTED_FORMATS, load_image
from retrieval.search import K_DEFAULT, K_MAX, K_MIN, SUGGESTION_NOTE, SearchEngine

SEARCH_CONCURRENCY = 2  # searches running at once (2 CPU cores); the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once instead of piling up
THUMBNAIL_SIDE = 512  # gallery images; the details panel shows the stored image (long side <= 1024)
EMPTY = "**No images above the threshold** — lower it or try another query."
DISCLAIMER = "For research and education only — **not a diagnostic device**. It finds similar images; it never diagnoses."
TEXT_EXAMPLES = ["chest x-ray", "knee fracture", "dental panoramic", "hand radiograph of a child",
                 "knee osteoarthritis severe", "spine scoliosis", "wrist fracture", "covid-19 pneumonia"]
EVALUATION_FILE = "evaluation.json"  # written next to the index generation by `python -m retrieval evaluate`
EVALUATION_COLUMNS = 4  # the Models tab shows at most this many evaluation figures per model

# Paste an image anywhere on the page while the image tab is open: it goes into the upload box.
PASTE_JS = """
() => {
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])][0];
    const box = document.querySelector("#query-file");
    const input = box?.querySelector("input[type=file]");
    if (!file || !input || box.offsetParent === null) return;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    event.preventDefault();
  });
}
"""
CSS = """
#disclaimer { border-left: 4px solid #d97706; padding-left: .75em; }
"""


# --- handlers ---------------------------------------------------------------------------------------
class Handlers:
    """Event handlers: each turns widget values into one SearchEngine call and its result into widget values.

    The docstrings of the public ones describe the API endpoints and the MCP tools."""

    def __init__(self, engine: SearchEngine):
        self.engine = engine
        self.example_files: list[str] = []

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
            The result images with captions, the results as JSON (id, rank, score, file_name, category, label,
            caption, source, license) and a status line.
        """
        try:
            hits = self.engine.search_text(query, model=model or None, k=k, category=category or None,
                                           min_score=min_score)
        except RetrievalError as error:
            raise gr.Error(str(error)) from error
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
            The result images with captions, the results as JSON, the suggested category (share of the votes of
            the nearest images: a retrieval statistic, not a diagnosis) and a status line.
        """
        try:
            found = self.engine.search_image(image, model=model or None, k=k, category=category or None,
                                             min_score=min_score)
        except RetrievalError as error:
            raise gr.Error(str(error)) from error
        gallery, records, status, state = self._results(found.hits)
        return gallery, records, found.suggestion or None, status, state

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
            The result images with captions, the results as JSON and a status line.
        """
        try:
            hits = self.engine.similar(item_id, model=model or None, k=k, category=category or None,
                                       min_score=min_score)
        except RetrievalError as error:
            raise gr.Error(str(error)) from error
        return self._results(hits)

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
        return record["id"], self.engine.image(record["id"]), record

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

    def choose_default(self, model: str):
        """The model chosen in the Models tab becomes the default of the search tabs that can use it."""
        text, image = self.engine.models_for(TEXT), self.engine.models_for(IMAGE)
        return (gr.update(value=model) if model in text else gr.update(),
                gr.update(value=model) if model in image else gr.update())

    def _results(self, hits):
        records = [hit.to_dict() for hit in hits]
        gallery = [(self._thumbnail(hit.id), caption(hit)) for hit in hits]
        status = f"{len(hits)} result{'s' if len(hits) != 1 else ''} — click one for details and more like it." \
            if hits else EMPTY
        return gallery, records, status, records

    def _thumbnail(self, item_id: str):
        image = self.engine.image(item_id)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        return image


def caption(hit) -> str:
    """"#1 · 0.83 · knee · kl-2 · OAI": rank, score, category, label, short source."""
    source = hit.source.split(" (")[0]
    source = source if len(source) <= 32 else source[:31] + "…"
    return " · ".join(part for part in (f"#{hit.rank}", f"{hit.score:.2f}", hit.category, hit.label, source) if part)


def _evaluation(engine: SearchEngine) -> dict[str, dict[str, float]]:
    """A few per-model figures from `<generation>/evaluation.json`, when the index has been evaluated."""
    try:
        models = json.loads((engine.generation / EVALUATION_FILE).read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    columns = list(dict.fromkeys(key for figures in models.values() for key in figures))[:EVALUATION_COLUMNS]
    return {name: {key: round(figures[key], 3) for key in columns if isinstance(figures.get(key), (int, float))}
            for name, figures in models.items()}


def collection_markdown(stats: dict) -> str:
    lines = [f"**{stats['rows']} images** in {len(stats['categories'])} categories.", "",
             "| Category | Images |", "|---|---:|"]
    lines += [f"| {category} | {count} |" for category, count in stats["categories"].items()]
    lines += ["", "| Category / label | Images |", "|---|---:|"]
    lines += [f"| {label} | {count} |" for label, count in stats["labels"].items()]
    lines += ["", "| Source | Images | Licence | Link |", "|---|---:|---|---|"]
    for source, entry in stats["sources"].items():
        licences = ", ".join(f"{name} ({count})" if len(entry["licenses"]) > 1 else name
                             for name, count in entry["licenses"].items())
        link = f"[{entry['url']}]({entry['url']})" if entry["url"] else ""
        lines.append(f"| {source} | {entry['images']} | {licences} | {link} |")
    return "\n".join(lines)


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
    table: gr.JSON
    state: gr.State


@dataclass
class Controls:
    model: gr.Dropdown
    k: gr.Slider
    category: gr.Dropdown
    min_score: gr.Slider


def _results_view(label: str, elem_id: str) -> ResultsView:
    status = gr.Markdown(elem_id=f"{elem_id}-status")
    gallery = gr.Gallery(label=label, columns=5, height="auto", object_fit="contain", allow_preview=False,
                         format="jpeg", interactive=False, elem_id=elem_id)
    with gr.Accordion("Results as JSON", open=False):
        table = gr.JSON(show_label=False)
    return ResultsView(status, gallery, table, gr.State([]))


def _controls(handlers: Handlers, modality: str, prefix: str) -> Controls:
    engine = handlers.engine
    choices = [(f"{name} — {embedder_spec(name).family}", name) for name in engine.models_for(modality)]
    default = engine.default_model(modality)
    model = gr.Dropdown(choices, value=default, label=f"{modality.capitalize()} model", elem_id=f"{prefix}-model")
    with gr.Row():
        k = gr.Slider(K_MIN, K_MAX, value=K_DEFAULT, step=1, precision=0, label="Results (top-k)")
        min_score = gr.Slider(0.0, 1.0, value=handlers.default_min_score(default), step=0.01,
                              label="Minimum score", info="Cosine similarity; each model has its own default.")
    category = gr.Dropdown([("All categories", "")] + [(c, c) for c in engine.categories], value="",
                           label="Category")
    model.change(handlers.default_min_score, model, min_score, api_visibility="private")
    return Controls(model, k, category, min_score)


def _details_panel(prefix: str):
    gr.Markdown("### Selected result and more like it\nClick a result to see it here with its metadata and the "
                "images nearest to it; click one of those to keep exploring.")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Selected image", type="pil", interactive=False, height=320,
                             elem_id=f"{prefix}-selected")
            item_id = gr.Textbox(label="Selected id", interactive=False)
            record = gr.JSON(label="Metadata")
        with gr.Column(scale=2):
            more = _results_view("More like this", f"{prefix}-more")
    return item_id, image, record, more


def _wire_selection(handlers: Handlers, main: ResultsView, details, controls: Controls, image_controls: Controls,
                    api_name: str | None) -> None:
    """Clicking a result (in the results or in "more like this") shows it and runs "more like this" from it,
    with the image model of the image tab."""
    item_id, image, record, more = details
    for view, name in ((main, api_name), (more, None)):
        view.gallery.select(handlers.pick, view.state, [item_id, image, record], api_visibility="private").then(
            handlers.similar, [item_id, image_controls.model, controls.k, controls.category, image_controls.min_score],
            [more.gallery, more.table, more.status, more.state], api_name=name or None,
            api_visibility="public" if name else "private", concurrency_id="search",
            concurrency_limit=SEARCH_CONCURRENCY)


def build_demo(engine: SearchEngine) -> gr.Blocks:
    """The whole app over one loaded index; `launch()` serves it."""
    handlers = Handlers(engine)
    stats = engine.collection_stats()
    examples = example_files(engine)
    handlers.example_files = [path for path, _ in examples]
    with gr.Blocks(title="X-Ray Search", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# 🩻 X-Ray Search\nFind radiographs by text or by example image among {len(engine)} images "
                    f"of an open collection ({', '.join(engine.categories)}).")
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
                        query_file = gr.File(label=f"Query image — drop, paste or choose a file ({SUPPORTED_FORMATS})",
                                             file_count="single", type="filepath", elem_id="query-file")
                        preview = gr.Image(label="Query as searched", type="pil", interactive=False, height=220)
                        image_button = gr.Button("Search", variant="primary", elem_id="image-search")
                        image_controls = _controls(handlers, IMAGE, "image")
                        example_gallery = gr.Gallery(examples, label="Examples from the collection (click to search)",
                                                     columns=6, height=150, allow_preview=False, interactive=False,
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
                default_model = gr.Dropdown(usable, value=engine.default_model(TEXT), label="Default model for searches",
                                            info="Becomes the model of the search tabs that can use it.")
                rows = handlers.models()
                gr.Dataframe([list(row.values()) for row in rows], headers=list(rows[0]), interactive=False,
                             wrap=True, elem_id="models-table")
            with gr.Tab("Collection", id="collection"):
                gr.Markdown(collection_markdown(stats), elem_id="collection-stats")

        # wiring: the four public endpoints carry api_name; everything else is private
        text_outputs = [text_results.gallery, text_results.table, text_results.status, text_results.state]
        text_inputs = [query, text_controls.model, text_controls.k, text_controls.category, text_controls.min_score]
        gr.on([text_button.click, query.submit], handlers.search_text, text_inputs, text_outputs,
              api_name="search_text", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        text_examples.load_input_event.then(handlers.search_text, text_inputs, text_outputs,
                                            api_visibility="private", concurrency_id="search")
        image_inputs = [query_file, image_controls.model, image_controls.k, image_controls.category,
                        image_controls.min_score]
        image_outputs = [image_results.gallery, image_results.table, suggestion, image_results.status,
                         image_results.state]
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
                       max_file_size=MAX_FILE_BYTES, css=CSS, js=PASTE_JS, **options)


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
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
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
        engine = SearchEngine(args.index)
    except RetrievalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    launch(build_demo(engine), args.host, args.port, share=args.share, mcp=args.mcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
