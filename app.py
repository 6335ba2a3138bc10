"""X-Ray Search in the browser: a thin Gradio layer over `retrieval` (it finds images; it never diagnoses).

    python app.py [--collection ../shared/xray-collection] [--mcp]   # build or refresh index/ first; MCP tools

Handlers first (each one SearchEngine call), then `build_demo(engine)` (layout and wiring), then `main()`.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import gradio as gr

from retrieval import RetrievalError, SearchEngine, build_index, load_settings
from retrieval.cli import add_archive_options, archive_options
from retrieval.embedders import IMAGE, TEXT
from retrieval.files import MAX_FILE_BYTES, SUPPORTED_FORMATS
from retrieval.images import load_image
from retrieval.options import K_DEFAULT, TEXT_WEIGHT_DEFAULT
from retrieval.policy import model_rows
from ui import PAGE_CSS, PAGE_JS, components, explore, facets, links, render, startup
from ui.components import SHOW, Controls, ResultsView
from ui.gradio_cache import write_cache_atomically
from ui.texts import DISCLAIMER, EMPTY, SUGGESTION_NOTE, TEXT_EXAMPLES, header_markdown

write_cache_atomically()

SEARCH_CONCURRENCY = 2  # searches running at once (2 CPU cores); the rest wait in the queue
SEARCH = dict(concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)  # every search shares the 2 slots
QUEUE_SIZE = 64  # waiting requests beyond this are refused at once instead of piling up


# --- handlers ---------------------------------------------------------------------------------------
class Handlers:
    """Event handlers: each turns widget values into one SearchEngine call and its result into widget values.

    The docstrings of the public ones describe the API endpoints and the MCP tools."""

    def __init__(self, engine: SearchEngine):
        self.engine = engine
        self.example_files: list[str] = []
        self._thumbnails = render.Thumbnails(engine.catalogue.thumbnail_jpeg)

    def search_text(self, query: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                    min_score: float | None = None, filters: dict | None = None):
        """Find radiographs in the collection that match a text query (keywords or a description).

        Args:
            query: what to look for, e.g. "knee fracture", "dental panoramic", "chest x-ray of a child".
            model: text model: "hybrid" (all of them fused), "tfidf" (keywords), "minilm" (meaning) or an image-text
                model; default: the best one.
            k: how many results, 1 to 20.
            category: only this category (e.g. "knee"); empty for all.
            min_score: results below this score are left out (cosine similarity; hybrid: estimated chance of a match).
            filters: only results with these metadata values, e.g. {"view": "lateral"}; {} for all.
        Returns:
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license...; a DICOM archive's rows add modality,
            laterality, sex, age_band, manufacturer, scanner, study and frames); a status line.
        """
        return self._results(self._ask(self.engine.search_text, query, model, k, category, min_score,
                                       filters=filters))

    def search_image(self, image: str | None, model: str | None = None, k: int = K_DEFAULT,
                     category: str | None = None, min_score: float | None = None, text: str = "",
                     text_weight: float = TEXT_WEIGHT_DEFAULT, filters: dict | None = None):
        """Find radiographs in the collection that look like an example image, and suggest its category.

        Args:
            image: the example image file (PNG, JPEG, TIFF, DICOM...).
            model: image model, e.g. "xray-lite0"; default: the best one.
            k: how many results, 1 to 20.
            category: only this category (e.g. "chest"); empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
            text: optional words that steer the image query, e.g. "severe" (models that embed images and text).
            text_weight: how much the words count, 0 to 1 (0: the image alone).
            filters: only results with these metadata values, e.g. {"view": "lateral"}; {} for all.
        Returns:
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license..., and the query's judgement:
            query_in_collection, query_match_score); the suggested category: vote shares of the nearest images (a
            retrieval statistic, not a diagnosis), or "No close match in this collection" when the collection
            holds nothing like the image; a status line.
        """
        found = self._ask(self.engine.search_image, image, model, k, category, min_score, text=text or None,
                          text_weight=text_weight, filters=filters)
        gallery, records, status = self._results(found)
        return gallery, records, render.suggestion(found), render.with_notice(found, status)

    def refine(self, query: str | None, relevant: list[str], irrelevant: list[str], model: str | None = None,
               k: int = K_DEFAULT, category: str | None = None, min_score: float | None = None,
               image: str | None = None, exclude_judged: bool = False, filters: dict | None = None):
        """Search again with relevance feedback: the query moved toward results marked relevant, away from others.

        Args:
            query: the original query: a text, or a collection id; empty when `image` is given.
            relevant: ids of results marked relevant.
            irrelevant: ids of results marked not relevant.
            model: the model of the original search; default: the best one for the query.
            k: how many results, 1 to 20.
            category: only this category; empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
            image: the original query image file, when the search was by image.
            exclude_judged: leave the marked results out, to see new ones.
            filters: only results with these metadata values, e.g. {"view": "lateral"}; {} for all.
        Returns:
            The result images with captions; the results as JSON (id, rank, score, category, label...); a status line.
        """
        return self._results(self._ask(self.engine.refine, image or query, model, k, category, min_score,
                                       relevant=list(relevant or []), irrelevant=list(irrelevant or []),
                                       exclude_judged=bool(exclude_judged), filters=filters))

    def explain(self, query_image: str | None, result_id: str, model: str | None = None, query_id: str = ""):
        """Why a result is similar to a query: both images with heat maps of the regions that drive their similarity.

        Args:
            query_image: the query image file; or empty, with `query_id` naming a collection image.
            result_id: the id of the result to compare, as returned in the "id" field of a search result.
            model: the image model that compared them, e.g. "xray-lite0"; default: the best image model.
            query_id: the id of a collection image used as the query instead of a file.
        Returns:
            The query and the result overlaid with their heat maps (where the model looks, never a finding); a note.
        """
        def explain(query, **_):  # a typed id is looked up in the index, never read as a server path
            query = query or (self.engine.catalogue.record(query_id)["id"] if query_id else None)
            return self.engine.explorer.explain(query, result_id, model=model or None)
        why = self._ask(explain, query_image, model, 0, 0, 0)
        return why.query_overlay, why.result_overlay, f"{explore.WHY_NOTE}\n\n**{why.model}**, score {why.score:.3f}."

    def similar(self, item_id: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                min_score: float | None = None, filters: dict | None = None):
        """More like this: the images nearest to one already in the collection (that image itself left out).

        Args:
            item_id: the id of a collection image, as returned in the "id" field of a search result.
            model: the model whose vectors compare the images; default: the best image model.
            k: how many results, 1 to 20.
            category: only this category; empty for all.
            min_score: results below this cosine similarity (0 to 1) are left out.
            filters: only results with these metadata values, e.g. {"view": "lateral"}; {} for all.
        Returns:
            The result images captioned "#rank · score · category · label · source · licence"; the results as JSON (id,
            rank, score, file_name, category, label, caption, source, license...); a status line.
        """
        return self._results(self._ask(self.engine.similar, item_id, model, k, category, min_score,
                                       filters=filters))

    def study(self, item_id: str, model: str | None = None):
        """More from this study: the other images of a result's study (an index of a DICOM archive links a study's
        images by a salted hash of its StudyInstanceUID), most similar first.

        Args:
            item_id: the id of a collection image, as returned in the "id" field of a search result.
            model: the model whose vectors order them; default: the best image model.
        Returns:
            The study's other images with captions; their records as JSON (id, rank, score, study, modality...);
            a status line.
        """
        try:
            found = self.engine.study(item_id, model=model or None)
        except RetrievalError as error:
            raise gr.Error(str(error), print_exception=False) from error
        gallery, records, _ = self._results(found)
        status = (f"{len(records)} more image{'s' if len(records) != 1 else ''} from this study." if records else
                  "No other image of this study." if self.engine.catalogue.has_studies else
                  "This index has no studies (only an index of a DICOM archive links them).")
        return gallery, records, status

    @staticmethod
    def _ask(search, query, model, k, category, min_score, **options):
        """One engine search; the library's errors become a visible message (an AppError through the API)."""
        try:
            return search(query, model=model or None, k=k, category=category or None, min_score=min_score, **options)
        except RetrievalError as error:
            raise gr.Error(str(error), print_exception=False) from error

    def models(self) -> list[dict]:
        """Every registered model: family, what it embeds, dimension, where its weights come from, and whether
        it is ready here (with the reason when not). Only models with status "ready" can answer queries."""
        return model_rows(self.engine.policy)

    def pick(self, records: list[dict], mode: str, event: gr.SelectData):
        """A clicked result: its id, its image and its full metadata (a click that marks it stops here, quietly)."""
        if mode != SHOW:
            raise gr.Error("marked", visible=False, print_exception=False)
        record = records[event.index]
        return record["id"], self.engine.catalogue.image(record["id"]), render.details_markdown(record)

    def preview(self, path: str | None):
        """The uploaded file as the search sees it (DICOM included); nothing when it is not an image."""
        try:
            return load_image(path) if path else None
        except RetrievalError:
            return None  # the search itself reports why

    def use_example(self, event: gr.SelectData) -> str:
        return self.example_files[event.index]

    def model_chosen(self, model: str | None):
        """A newly chosen model brings its description and its own default minimum score."""
        policy = self.engine.policy
        return gr.update(info=policy.describe(model)), policy.default_min_score(model)

    def choose_default(self, model: str):
        """The model chosen in the Models tab becomes the default of the search tabs that can use it."""
        text, image = self.engine.policy.models_for(TEXT), self.engine.policy.models_for(IMAGE)
        return (gr.update(value=model) if model in text else gr.update(),
                gr.update(value=model) if model in image else gr.update())

    def _results(self, result):
        hits = result.hits
        gallery = list(zip(self._thumbnails([hit.id for hit in hits]), map(render.caption, hits)))
        status = f"{len(hits)} result{'s' if len(hits) != 1 else ''} — click one for details and more like it." \
            if hits else EMPTY
        return gallery, result.records(), render.with_query_words(result, status)


# --- layout and wiring ------------------------------------------------------------------------------
def _wire_selection(handlers: Handlers, main: ResultsView, details: components.Details, controls: Controls,
                    image_controls: Controls, api_name: str | None, mode=None, filters=None):
    """Clicking a result (in the results, "more like this" or "more from this study") shows it and runs "more like
    this" and "more from this study" from it, with the image model of the image tab and the tab's `filters`, unless
    the click marks it for Refine (`mode`). Returns the first click."""
    picked = None
    for view, name, click in ((main, api_name, mode), (details.more, None, None), (details.study, None, None)):
        event = view.gallery.select(handlers.pick, [view.table, click or gr.State(SHOW)],
                                    [details.item_id, details.image, details.record], api_visibility="private")
        event.success(handlers.similar, [details.item_id, image_controls.model, controls.k, controls.category,
                                         image_controls.min_score, filters or gr.State({})], details.more.outputs,
                      api_name=name,
                      api_visibility="public" if name else "private", **SEARCH)
        event.success(handlers.study, [details.item_id, image_controls.model], details.study.outputs,
                      api_name="study" if name else None, api_visibility="public" if name else "private", **SEARCH)
        picked = picked or event
    return picked


def build_demo(engine: SearchEngine) -> gr.Blocks:
    """The whole app over one loaded index; `launch()` serves it."""
    handlers = Handlers(engine)
    catalogue = engine.catalogue
    examples = render.example_files(catalogue)
    handlers.example_files = [path for path, _ in examples]
    with gr.Blocks(title="X-Ray Search", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(header_markdown(len(catalogue), catalogue.categories, catalogue.has_studies,
                                    sum(engine.generation.manifest.skipped_objects.values())), elem_id="header")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        link_status = gr.Markdown(elem_id="link-status")
        with gr.Tabs() as tabs:
            with gr.Tab("Text search", id="text"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query = gr.Textbox(label="Query", placeholder="e.g. knee fracture — press Enter to search",
                                           elem_id="text-query")
                        text_button = gr.Button("Search", variant="primary", elem_id="text-search")
                        text_controls = components.controls(engine.policy, catalogue.categories, TEXT, "text",
                                                           handlers.model_chosen)
                        text_examples = gr.Examples(TEXT_EXAMPLES, inputs=query, label="Example queries",
                                                    cache_examples=False, api_visibility="private")
                    with gr.Column(scale=2):
                        text_results = components.results_view("Results", "text-results")
                        text_facets = facets.facet_view("text")
                        text_feedback = components.feedback_row("text")
                        links.link_row("text", query, text_controls, text_facets.filters)
                text_details = components.details_panel("text", catalogue.has_studies)
            with gr.Tab("Image search", id="image"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query_file = gr.File(label="Query image: drop, paste (Ctrl+V) or click to choose",
                                             file_count="single", type="filepath", elem_id="query-file")
                        gr.Markdown(f"Accepted: {SUPPORTED_FORMATS}; up to {MAX_FILE_BYTES // 2**20} MB.")
                        preview = gr.Image(label="Query as searched", type="pil", interactive=False, height=220)
                        image_button = gr.Button("Search", variant="primary", elem_id="image-search")
                        image_controls = components.controls(engine.policy, catalogue.categories, IMAGE, "image",
                                                            handlers.model_chosen)
                        words, weight = components.words_box(engine.policy, image_controls.model)
                        example_gallery = gr.Gallery(examples, label="Examples from the collection (click to search)",
                                                     columns=3, height=300, allow_preview=False, interactive=False,
                                                     elem_id="image-examples")
                    with gr.Column(scale=2):
                        suggestion = gr.Label(label="Suggested category", num_top_classes=3, elem_id="suggestion")
                        gr.Markdown(SUGGESTION_NOTE)
                        image_results = components.results_view("Results", "image-results")
                        image_facets = facets.facet_view("image")
                        image_feedback = components.feedback_row("image")
                        links.link_row("image", image_results.table, image_controls, image_facets.filters)
                why_show, why_id, *why_outputs = explore.why_panel("image")
                image_details = components.details_panel("image", catalogue.has_studies)
            with gr.Tab("Map", id="map"):
                map_parts = explore.map_tab(engine.explorer, image_controls.model, query_file)
                map_details = components.details_panel("map", catalogue.has_studies) if map_parts else None
            with gr.Tab("Models", id="models"):
                default_model = components.models_tab(engine.policy, handlers.models())
            with gr.Tab("Collection", id="collection"):
                components.collection_tab(catalogue.collection_stats(), engine.generation.manifest.skipped_objects)

        # wiring: the public endpoints carry api_name; everything else is private
        text_inputs = [query, *text_controls, text_facets.filters]
        gr.on([text_button.click, query.submit], handlers.search_text, text_inputs, text_results.outputs,
              api_name="search_text", **SEARCH)
        text_examples.load_input_event.then(handlers.search_text, text_inputs, text_results.outputs,
                                            api_visibility="private", concurrency_id="search")
        image_inputs = [query_file, *image_controls, words, weight, image_facets.filters]
        image_outputs = [image_results.gallery, image_results.table, suggestion, image_results.status]
        gr.on([image_button.click, query_file.upload, words.submit], handlers.search_image, image_inputs,
              image_outputs, api_name="search_image", **SEARCH)
        query_file.change(handlers.preview, query_file, preview, api_visibility="private")
        example_gallery.select(handlers.use_example, None, query_file, api_visibility="private").then(
            handlers.search_image, image_inputs, image_outputs, api_visibility="private", concurrency_id="search")
        picked = _wire_selection(handlers, image_results, image_details, image_controls, image_controls, "similar",
                                 image_feedback.click, image_facets.filters)
        _wire_selection(handlers, text_results, text_details, text_controls, image_controls, None, text_feedback.click,
                        text_facets.filters)
        for view, results, controls, search, inputs, outputs in (
                (text_facets, text_results, text_controls, handlers.search_text, text_inputs, text_results.outputs),
                (image_facets, image_results, image_controls, handlers.search_image, image_inputs, image_outputs)):
            facets.wire(view, catalogue, results.table, controls.category, search, inputs, outputs,
                        concurrency_id="search")
        # why similar: the query and the selected result with their heat maps; the toggle shows them plain
        why_inputs, why = [query_file, image_details.item_id, image_controls.model, why_show], explore.why_view(
            catalogue, handlers.explain)
        picked.success(handlers.explain, [query_file, image_details.item_id, image_controls.model, why_id],
                       why_outputs, api_name="explain", **SEARCH).success(
            explore.plain_when_off(catalogue), why_inputs, why_outputs, api_visibility="private", queue=False)
        why_show.change(why, why_inputs, why_outputs, api_visibility="private", concurrency_id="search")
        # refine: the original query and the marks (the API endpoint first: it takes the name "refine")
        components.refine_endpoint(engine.policy, catalogue.categories, handlers.refine, **SEARCH)
        for feedback, view, first, image, controls, shown in (
                (text_feedback, text_results, query, gr.State(None), text_controls, text_facets),
                (image_feedback, image_results, gr.State(""), query_file, image_controls, image_facets)):
            components.wire_feedback(view, feedback)
            feedback.button.click(handlers.refine, [first, feedback.relevant, feedback.irrelevant, *controls, image,
                                                    feedback.exclude, shown.filters], view.outputs,
                                  api_visibility="private", **SEARCH)
        if map_parts:
            map_model, map_colour, plot, refresh, map_view = map_parts
            _wire_selection(handlers, map_view, map_details, image_controls, image_controls, None)
            query_file.change(refresh, [map_model, map_colour, query_file], plot, api_visibility="private")
        default_model.change(handlers.choose_default, default_model, [text_controls.model, image_controls.model],
                             api_visibility="private")
        gr.api(handlers.models, api_name="models")
        opener, outputs = links.opener(handlers, tabs, link_status,
                                       (query, text_controls, text_results.outputs, text_facets.filters),
                                       (query_file, image_controls, image_outputs, image_facets.filters))
        demo.load(opener, None, outputs, api_visibility="private", **SEARCH)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, mcp: bool = False,
           **options):
    """Queue and serve `demo` with the app's limits (main() and the tests both start it this way)."""
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo.launch(server_name=host, server_port=port, share=share, mcp_server=mcp,
                       max_file_size=MAX_FILE_BYTES, css=PAGE_CSS, js=PAGE_JS, **options)


# --- command line -----------------------------------------------------------------------------------
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
    add_archive_options(parser)  # a DICOM archive given as --collection: the options of `python -m retrieval build`
    args = parser.parse_args(argv)
    if args.mcp and importlib.util.find_spec("mcp") is None:
        return _fail('--mcp needs the MCP package: pip install "mcp>=1.21,<2"', 2)
    try:
        build = functools.partial(build_index, archive=archive_options(args))
        if startup.on_space() and (args.collection or not SearchEngine.exists(args.index)):  # build or help page
            return startup.serve_on_space(args, build, SearchEngine, build_demo, launch, startup.NO_INDEX)
        if args.collection:
            build(args.collection, args.index)  # progress bars in the console; unchanged -> instant
        elif not SearchEngine.exists(args.index):
            return _fail(startup.NO_INDEX.format(index=Path(args.index).as_posix()), 2)
        engine = SearchEngine(args.index)
    except RetrievalError as error:
        return _fail(f"error: {error}", 1)
    demo = build_demo(engine)
    launch(demo, args.host, args.port, share=args.share, mcp=args.mcp, prevent_thread_lock=True)
    engine.warm_up(background=True)  # the models load with the page already up: it starts sooner
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
