"""The pieces each search tab repeats: its controls, its results view, its details panel and its feedback row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr

from retrieval.options import K_DEFAULT, K_MAX, K_MIN, TEXT_WEIGHT_DEFAULT

from . import render

SHOW, MARK_RELEVANT, MARK_IRRELEVANT = "show it and more like it", "mark it relevant", "mark it not relevant"


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


@dataclass
class Feedback:
    """Marks on the results ("relevant" / "not relevant") and the Refine button that searches again with them."""

    click: gr.Radio
    relevant: gr.Dropdown
    irrelevant: gr.Dropdown
    exclude: gr.Checkbox
    button: gr.Button
    marks: gr.State  # (relevant ids, irrelevant ids), held by the server: what each click toggles


@dataclass
class Details:
    item_id: gr.Textbox
    image: gr.Image
    record: gr.Markdown
    more: ResultsView
    study: ResultsView  # more from this study (shown for an index of a DICOM archive)


def results_view(label: str, elem_id: str) -> ResultsView:
    status = gr.Markdown(label="search_status", elem_id=f"{elem_id}-status")
    gallery = gr.Gallery(label=label, columns=4, object_fit="contain", allow_preview=False, format="jpeg",
                         interactive=False, elem_id=elem_id, elem_classes="result-gallery")
    with gr.Accordion("Results as JSON", open=False):
        table = gr.JSON(label="results_json", show_label=False)
    # an empty result leaves only the status line ("no images above the threshold..."), not a blank gallery
    table.change(lambda records: gr.update(visible=records != []), table, gallery, api_visibility="private",
                 queue=False)
    return ResultsView(status, gallery, table)


def controls(policy, categories: list[str], modality: str, prefix: str, on_model) -> Controls:
    """A search tab's model (from `policy`: the models that embed `modality`), k, category and minimum score."""
    choices = [(f"{name} — {policy.family(name)}", name) for name in policy.models_for(modality)]
    default = policy.default_model(modality)
    model = gr.Dropdown(choices, value=default, label=f"{modality.capitalize()} model", elem_id=f"{prefix}-model",
                        info=policy.describe(default))
    k = gr.Slider(K_MIN, K_MAX, value=K_DEFAULT, step=1, precision=0, label="Results (top-k)", elem_id=f"{prefix}-k")
    min_score = gr.Slider(0.0, 1.0, value=policy.default_min_score(default), step=0.01, label="Minimum score",
                          info="Cosine similarity (hybrid: the estimated chance of a match); changing the model "
                               "resets it to that model's default.",
                          elem_id=f"{prefix}-min-score")
    category = gr.Dropdown([("All categories", "")] + [(c, c) for c in categories], value="",
                           label="Category", elem_id=f"{prefix}-category")
    model.change(on_model, model, [model, min_score], api_visibility="private")
    return Controls(model, k, category, min_score)


def feedback_row(prefix: str) -> Feedback:
    with gr.Column(elem_id=f"{prefix}-feedback", variant="panel"):
        click = gr.Radio([SHOW, MARK_RELEVANT, MARK_IRRELEVANT], value=SHOW, label="A click on a result…",
                         elem_id=f"{prefix}-click")
        with gr.Row():
            relevant = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Relevant",
                                   elem_id=f"{prefix}-relevant")
            irrelevant = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Not relevant",
                                     elem_id=f"{prefix}-irrelevant")
        with gr.Row():
            exclude = gr.Checkbox(False, label="Leave out what I marked", elem_id=f"{prefix}-exclude")
            button = gr.Button("Refine", elem_id=f"{prefix}-refine")
    return Feedback(click, relevant, irrelevant, exclude, button, gr.State(([], [])))


def details_panel(prefix: str, studies: bool = False) -> Details:
    gr.Markdown("### Selected result and more like it\nClick a result to see it here with its metadata and the "
                "images nearest to it; click one of those to keep exploring.")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Selected image", type="pil", interactive=False, height=320,
                             elem_id=f"{prefix}-selected")
            item_id = gr.Textbox(label="Selected id", interactive=False, elem_id=f"{prefix}-selected-id")
            record = gr.Markdown(label="metadata", elem_id=f"{prefix}-metadata", elem_classes="details")
        with gr.Column(scale=2):
            more = results_view("More like this", f"{prefix}-more")
            with gr.Column(visible=studies):
                study = results_view("More from this study", f"{prefix}-study")
    return Details(item_id, image, record, more, study)


def toggle_mark(records: list[dict], mode: str, marks: tuple[list[str], list[str]], event: gr.SelectData):
    """In a marking mode, a click on a result toggles its mark (a row is never in both lists). The marks are read
    from the session's state, not from the lists on the page, so quick clicks in a row each see the one before."""
    relevant, irrelevant = marks
    if mode == SHOW:
        return gr.update(), gr.update(), marks
    item = records[event.index]["id"]
    chosen, other = (relevant, irrelevant) if mode == MARK_RELEVANT else (irrelevant, relevant)
    chosen = [i for i in chosen if i != item] if item in chosen else [*chosen, item]
    other = [i for i in other if i != item]
    marked = (chosen, other) if mode == MARK_RELEVANT else (other, chosen)
    return (*(gr.update(value=ids, choices=ids) for ids in marked), marked)


def mark_choices(records: list[dict], relevant: list[str], irrelevant: list[str]):
    """New results: the marks stay (they steer the next Refine); the choices are the shown results plus them."""
    shown = [record["id"] for record in records or []]
    return (gr.update(choices=list(dict.fromkeys([*relevant, *shown]))),
            gr.update(choices=list(dict.fromkeys([*irrelevant, *shown]))))


def wire_feedback(view: ResultsView, feedback: Feedback) -> None:
    # every click kept ("multiple": the default drops a click while one is pending), one at a time per panel
    one_at_a_time = dict(api_visibility="private", trigger_mode="multiple", concurrency_limit=1,
                         concurrency_id=f"marks-{feedback.relevant.elem_id}")
    view.gallery.select(toggle_mark, [view.table, feedback.click, feedback.marks],
                        [feedback.relevant, feedback.irrelevant, feedback.marks], **one_at_a_time)
    for box in (feedback.relevant, feedback.irrelevant):  # a mark removed from a list by hand
        box.input(lambda relevant, irrelevant: (list(relevant or []), list(irrelevant or [])),
                  [feedback.relevant, feedback.irrelevant], feedback.marks, **one_at_a_time)
    view.table.change(mark_choices, [view.table, feedback.relevant, feedback.irrelevant],
                      [feedback.relevant, feedback.irrelevant], api_visibility="private", queue=False)


def words_box(policy, model: gr.Dropdown):
    """The image tab's optional words and their weight, shown only while the model embeds images and text."""
    allowed = model.value in policy.models_for_image_and_text()
    words = gr.Textbox("", label="Add words (optional)", placeholder="e.g. severe, fracture — Enter searches",
                       visible=allowed, elem_id="image-words")
    weight = gr.Slider(0.0, 1.0, value=TEXT_WEIGHT_DEFAULT, step=0.05, label="Weight of the words",
                       info="0: the image alone; 1: the words alone.", visible=allowed, elem_id="image-words-weight")

    def show(name):
        return (gr.update(visible=name in policy.models_for_image_and_text()),) * 2
    model.change(show, model, [words, weight], api_visibility="private")
    return words, weight


def models_tab(policy, rows: list[dict]) -> gr.Dropdown:
    """Every registered model (`rows`: retrieval.policy.model_rows), the evaluation figures and the training cards;
    returns the default-model choice."""
    gr.Markdown(render.MODELS_INTRO)
    fused = [name for name in policy.models_for("text") if name not in policy.models]  # the hybrid, when offered
    usable = fused + [name for name in policy.models if name not in policy.unavailable]
    default_model = gr.Dropdown(usable, value=policy.default_model("text"), elem_id="default-model",
                                label="Default model for searches",
                                info="Becomes the model of the search tabs that can use it.")
    models, figures = render.model_tables(rows)
    gr.Dataframe(**models, interactive=False, wrap=True, max_height=800, elem_id="models-table")
    if figures:  # the index has been evaluated (python -m retrieval evaluate)
        gr.Markdown("Retrieval quality measured on this index (`python -m retrieval evaluate`):")
        gr.Dataframe(**figures, interactive=False, elem_id="evaluation-table")
    gr.Markdown(render.cards_markdown(policy.training_cards()), elem_id="training-cards")
    return default_model


def collection_tab(stats: dict, skipped: dict[str, int] | None = None) -> None:
    """Counts per category, label and source; for a DICOM archive, per field, and the files the build left out."""
    counts, labels, sources = render.collection_markdown(stats)
    with gr.Row(elem_id="collection-stats"):
        gr.Markdown(counts)
        gr.Markdown(labels)
    gr.Markdown(sources, elem_classes="nowrap-head")
    archive = render.archive_markdown(stats.get("fields", {}), skipped or {})
    if archive:
        gr.Markdown(archive, elem_id="archive-stats")


def refine_endpoint(policy, categories: list[str], refine, **options) -> None:
    """/refine for API and MCP callers: hidden inputs that take a text, an id or an image, and any model of the index
    (the page's Refine buttons call the same handler with each tab's own controls)."""
    with gr.Column(visible=False):
        inputs = [gr.Textbox(label="query"),
                  gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="relevant"),
                  gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="irrelevant"),
                  gr.Dropdown(policy.models, value=None, label="model"),
                  gr.Slider(K_MIN, K_MAX, value=K_DEFAULT, step=1, precision=0, label="k"),
                  gr.Dropdown(["", *categories], value="", label="category"),
                  gr.Number(None, label="min_score"),
                  gr.File(type="filepath", label="image"),
                  gr.Checkbox(False, label="exclude_judged"),
                  gr.JSON({}, label="filters")]
        view = results_view("refined", "refine-api")
        button = gr.Button("refine")
    button.click(refine, inputs, view.outputs, api_name="refine", **options)
