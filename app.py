"""X-Ray Search in the browser: a thin Gradio layer over `retrieval` (it finds images; it never diagnoses).

    python app.py [--collection ../shared/xray-collection] [--mcp]   # build or refresh index/ first; MCP tools

Handlers first (each one SearchEngine call), then `build_demo(engine)` (layout and wiring), then `main()`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gradio as gr

from retrieval import RetrievalError, SearchEngine, build_index, load_settings
from ui import PAGE_CSS, PAGE_JS, startup
from ui.gradio_cache import write_cache_atomically
from ui import render

write_cache_atomically()

TEXT, IMAGE = SearchEngine.TEXT, SearchEngine.IMAGE
K_MIN, K_MAX, K_DEFAULT = SearchEngine.K_MIN, SearchEngine.K_MAX, SearchEngine.K_DEFAULT
SEARCH_CONCURRENCY = 2  # searches running at once (2 CPU cores); the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once instead of piling up
EMPTY = "**No images above the threshold** — lower it or try another query."
DISCLAIMER = ("For research and education only — **not a diagnostic device**. "
              "It finds similar images; it never diagnoses.")
TEXT_EXAMPLES = ["chest x-ray", "knee fracture", "dental panoramic", "hand radiograph of a child",
                 "knee osteoarthritis severe", "spine scoliosis", "wrist fracture", "covid-19 pneumonia"]


# --- handlers ---------------------------------------------------------------------------------------
class Handlers:
    """Event handlers: each turns widget values into one SearchEngine call and its result into widget values.

    The docstrings of the public ones describe the API endpoints and the MCP tools."""

    def __init__(self, engine: SearchEngine):
        self.engine = engine
        self.example_files: list[str] = []
        self._thumbnails = render.Thumbnails(engine.thumbnail)

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
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license...); a status line.
        """
        return self._results(self._ask(self.engine.search_text, query, model, k, category, min_score))

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
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license...); the suggested category: vote
            shares of the nearest images (a retrieval statistic, not a diagnosis); a status line.
        """
        found = self._ask(self.engine.search_image, image, model, k, category, min_score)
        gallery, records, status = self._results(found)
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
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license...); a status line.
        """
        return self._results(self._ask(self.engine.similar, item_id, model, k, category, min_score))

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
        return self.engine.model_table()

    def pick(self, records: list[dict], event: gr.SelectData):
        """A clicked result: its id, its image and its full metadata."""
        record = records[event.index]
        return record["id"], self.engine.image(record["id"]), render.details_markdown(record)

    def preview(self, path: str | None):
        """The uploaded file as the search sees it (DICOM included); nothing when it is not an image."""
        try:
            return self.engine.query_image(path) if path else None
        except RetrievalError:
            return None  # the search itself reports why

    def use_example(self, event: gr.SelectData) -> str:
        return self.example_files[event.index]

    def model_chosen(self, model: str | None):
        """A newly chosen model brings its description and its own default minimum score."""
        return gr.update(info=self.engine.describe(model)), self.engine.default_min_score(model)

    def choose_default(self, model: str):
        """The model chosen in the Models tab becomes the default of the search tabs that can use it."""
        text, image = self.engine.models_for(TEXT), self.engine.models_for(IMAGE)
        return (gr.update(value=model) if model in text else gr.update(),
                gr.update(value=model) if model in image else gr.update())

    def _results(self, result):
        hits = result.hits
        gallery = list(zip(self._thumbnails([hit.id for hit in hits]), map(render.caption, hits)))
        status = f"{len(hits)} result{'s' if len(hits) != 1 else ''} — click one for details and more like it." \
            if hits else EMPTY
        return gallery, result.records(), status


# --- layout and wiring ------------------------------------------------------------------------------
@dataclass
class ResultsView:
    status: gr.Markdown
    gallery: gr.Gallery
    table: gr.JSON  # also what a click on the gallery reads (a gr.State output would break the MCP tools)

    @property
    def outputs(self) -> list:
        return [self.gallery, self.table, self.status]


class Controls(NamedTuple):
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
    choices = [(f"{name} — {engine.family(name)}", name) for name in engine.models_for(modality)]
    default = engine.default_model(modality)
    model = gr.Dropdown(choices, value=default, label=f"{modality.capitalize()} model", elem_id=f"{prefix}-model",
                        info=engine.describe(default))
    k = gr.Slider(K_MIN, K_MAX, value=K_DEFAULT, step=1, precision=0, label="Results (top-k)")
    min_score = gr.Slider(0.0, 1.0, value=engine.default_min_score(default), step=0.01, label="Minimum score",
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
    examples = render.example_files(engine)
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
                        gr.Markdown(f"Accepted: {engine.UPLOAD_FORMATS}; up to {engine.MAX_UPLOAD_BYTES // 2**20} MB.")
                        preview = gr.Image(label="Query as searched", type="pil", interactive=False, height=220)
                        image_button = gr.Button("Search", variant="primary", elem_id="image-search")
                        image_controls = _controls(handlers, IMAGE, "image")
                        example_gallery = gr.Gallery(examples, label="Examples from the collection (click to search)",
                                                     columns=3, height=300, allow_preview=False, interactive=False,
                                                     elem_id="image-examples")
                    with gr.Column(scale=2):
                        suggestion = gr.Label(label="Suggested category", num_top_classes=3, elem_id="suggestion")
                        gr.Markdown(engine.SUGGESTION_NOTE)
                        image_results = _results_view("Results", "image-results")
                image_details = _details_panel("image")
            with gr.Tab("Models", id="models"):
                gr.Markdown(render.MODELS_INTRO)
                usable = [name for name in engine.models if name not in engine.unavailable]
                default_model = gr.Dropdown(usable, value=engine.default_model(TEXT), elem_id="default-model",
                                            label="Default model for searches",
                                            info="Becomes the model of the search tabs that can use it.")
                models, figures = render.model_tables(handlers.models())
                gr.Dataframe(**models, interactive=False, wrap=True, max_height=800, elem_id="models-table")
                if figures:  # the index has been evaluated (python -m retrieval evaluate)
                    gr.Markdown("Retrieval quality measured on this index (`python -m retrieval evaluate`):")
                    gr.Dataframe(**figures, interactive=False, elem_id="evaluation-table")
                gr.Markdown(render.cards_markdown(engine.training_cards()), elem_id="training-cards")
            with gr.Tab("Collection", id="collection"):
                counts, labels, sources = render.collection_markdown(stats)
                with gr.Row(elem_id="collection-stats"):
                    gr.Markdown(counts)
                    gr.Markdown(labels)
                gr.Markdown(sources, elem_classes="nowrap-head")

        # wiring: the four public endpoints carry api_name; everything else is private
        text_outputs = text_results.outputs
        text_inputs = [query, *text_controls]
        gr.on([text_button.click, query.submit], handlers.search_text, text_inputs, text_outputs,
              api_name="search_text", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        text_examples.load_input_event.then(handlers.search_text, text_inputs, text_outputs,
                                            api_visibility="private", concurrency_id="search")
        image_inputs = [query_file, *image_controls]
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
                       max_file_size=SearchEngine.MAX_UPLOAD_BYTES, css=PAGE_CSS, js=PAGE_JS, **options)


# --- command line -----------------------------------------------------------------------------------
NO_INDEX = """No index in {index}/ and no collection to build one from. Either build it first:
    python -m retrieval build --collection ../shared/xray-collection --index {index}
or build and serve in one step:
    python app.py --collection ../shared/xray-collection
(--collection also takes a Hugging Face dataset id; on a Space, set the variable XRAY_COLLECTION.)"""


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except RetrievalError as error:
        return _fail(f"error: {error}", 2)
    parser = argparse.ArgumentParser(description="X-Ray Search web app. " + DISCLAIMER.replace("**", ""))
    parser.add_argument("--index", default=settings.index, help="folder or hf://datasets/OWNER/NAME ($XRAY_INDEX)")
    parser.add_argument("--collection", default=settings.collection, help="build or refresh the index from this "
                        "collection folder or Hugging Face dataset id first (default: $XRAY_COLLECTION)")
    parser.add_argument("--host", default=settings.host, help="address (default 127.0.0.1; 0.0.0.0 on a Space)")
    parser.add_argument("--port", type=int, default=settings.port, help="port to listen on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    parser.add_argument("--mcp", action="store_true", help="also serve the searches as MCP tools (/gradio_api/mcp/)")
    args = parser.parse_args(argv)
    if args.mcp and importlib.util.find_spec("mcp") is None:
        return _fail('--mcp needs the MCP package: pip install "mcp>=1.21,<2"', 2)
    try:
        if startup.on_space() and (args.collection or not SearchEngine.exists(args.index)):  # build or help page
            return startup.serve_on_space(args, build_index, SearchEngine, build_demo, launch, NO_INDEX)
        if args.collection:
            build_index(args.collection, args.index)  # progress bars in the console; unchanged -> instant
        elif not SearchEngine.exists(args.index):
            return _fail(NO_INDEX.format(index=Path(args.index).as_posix()), 2)
        engine = SearchEngine(args.index, warm_up=True)  # models load while the page starts
    except RetrievalError as error:
        return _fail(f"error: {error}", 1)
    launch(build_demo(engine), args.host, args.port, share=args.share, mcp=args.mcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
