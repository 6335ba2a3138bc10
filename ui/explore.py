"""The Map tab (the collection's image embeddings in 2-D, computed at build time) and the "why similar" pair of the
image tab's details panel. Both are thin over the engine's explorer (`collection_map`, `locate`) and the app's
`explain` handler."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from retrieval import RetrievalError
from retrieval.embedders import IMAGE
from retrieval.images import load_image

from . import components

COLOUR_BY = {"category": "category", "label": "category / label", "source": "source"}
QUERY_POINT = "▲ your query"
SELECTION_SIZE = 12  # images shown from a brushed strip of the map
MAP_INTRO = ("Each point is one image of the collection, placed by t-SNE from an image model's embeddings "
             "(computed when the index was built): nearby points are images the model finds similar. Colour by "
             "**source** shows how much a model groups images by hospital or scanner rather than by finding. "
             "Hover a point for its id, category and label; drag across the map to see the images in that strip, "
             "and click one for more like it. The query of the image tab is shown where it lands.")
WHY_NOTE = ("**Why similar** — the regions that drive the similarity between your query and the selected result "
            "(brighter = more similar to the other image). It shows where the model looks, never a finding.")


def map_frame(explorer, model: str | None, colour: str, query_file: str | None = None) -> pd.DataFrame:
    """The map's points, coloured by `colour`, plus the image tab's query where it lands."""
    if not model:
        return pd.DataFrame({"x": [], "y": [], "colour": [], "id": [], "category": [], "label": [], "source": []})
    points = pd.DataFrame(explorer.collection_map(model))
    points["category / label"] = points["category"] + " / " + points["label"].fillna("")
    points["colour"] = points[COLOUR_BY.get(colour, "category")].replace("", "(none)")
    if query_file:
        try:
            x, y = explorer.locate(load_image(query_file), model)
            points = pd.concat([points, pd.DataFrame([{"x": x, "y": y, "colour": QUERY_POINT, "id": "(query)",
                                                       "category": "", "label": "", "source": ""}])])
        except RetrievalError:  # an unreadable query leaves the map as it is; the image tab says why
            pass
    return points[["x", "y", "colour", "id", "category", "label", "source"]]


def selection(explorer, model: str | None, event: gr.SelectData):
    """The images in the brushed strip of the map, top to bottom as drawn, as a gallery and its records."""
    if not model or not isinstance(event.index, (list, tuple)) or len(event.index) != 2:
        return [], [], "Drag across the map to choose a strip of points."
    low, high = sorted(float(v) for v in event.index)
    points = pd.DataFrame(explorer.collection_map(model))
    chosen = points[(points["x"] >= low) & (points["x"] <= high)].sort_values("y", ascending=False)
    ids = list(chosen["id"][:SELECTION_SIZE])
    catalogue = explorer.catalogue
    records = [catalogue.record(item) for item in ids]
    gallery = [(catalogue.thumbnail(item), f"{r['category']} · {r['label']} · {item}")
               for item, r in zip(ids, records)]
    more = f" (the first {SELECTION_SIZE})" if len(chosen) > SELECTION_SIZE else ""
    return gallery, records, f"{len(chosen)} images in the strip{more} — click one for more like it."


def map_tab(explorer, image_model, query_file):
    """The Map tab's layout and wiring; returns the selection's results view and details (wired by the app)."""
    models = explorer.map_models()
    gr.Markdown(MAP_INTRO)
    if not models:
        gr.Markdown("This index has no map yet: rebuild it (`python -m retrieval build ...`) to compute one.")
        return None
    with gr.Row():
        preferred = explorer.policy.default_model(IMAGE)
        model = gr.Dropdown(models, value=preferred if preferred in models else models[-1], label="Image model",
                            elem_id="map-model")
        colour = gr.Radio(list(COLOUR_BY), value="category", label="Colour by", elem_id="map-colour")
    plot = gr.ScatterPlot(map_frame(explorer, model.value, "category"), x="x", y="y", color="colour",
                          tooltip=["id", "category", "label", "source"], height=560, x_title=" ", y_title=" ",
                          label="Collection map", elem_id="collection-map")
    view = components.results_view("Images in the selected strip", "map-selection")
    refresh = lambda m, c, q: map_frame(explorer, m, c, q)  # noqa: E731
    for trigger in (model.change, colour.change):
        trigger(refresh, [model, colour, query_file], plot, api_visibility="private")
    def select(chosen_model: str | None, event: gr.SelectData):
        return selection(explorer, chosen_model, event)
    plot.select(select, model, [view.gallery, view.table, view.status], api_visibility="private")
    return model, colour, plot, refresh, view


def why_panel(prefix: str):
    """Query and selected result side by side with their heat maps, and the toggle for the overlay."""
    with gr.Column(elem_id=f"{prefix}-why", variant="panel"):
        note = gr.Markdown(WHY_NOTE, elem_id=f"{prefix}-why-note")
        show = gr.Checkbox(True, label="Show the heat map", elem_id=f"{prefix}-why-toggle")
        query_id = gr.Textbox("", visible=False)  # the API's query by collection id; the page sends the file
        with gr.Row():
            query = gr.Image(label="Your query", type="pil", interactive=False, height=280,
                             elem_id=f"{prefix}-why-query")
            result = gr.Image(label="Selected result", type="pil", interactive=False, height=280,
                              elem_id=f"{prefix}-why-result")
    return show, query_id, query, result, note


def why_view(catalogue, explain):
    """The pair for the panel: overlays when the toggle is on (through the public `explain`), plain images when off,
    the reason when the model has no spatial features."""
    def view(query_file, item_id, model, show):
        if not query_file or not item_id:
            return None, None, WHY_NOTE + "\n\nUpload a query and click a result to compare them."
        if show:
            try:
                return explain(query_file, item_id, model)
            except gr.Error as error:
                return load_image(query_file), catalogue.image(item_id), f"{WHY_NOTE}\n\n_{error.message}_"
        return load_image(query_file), catalogue.image(item_id), WHY_NOTE
    return view


def plain_when_off(catalogue):
    """After the public `explain` has drawn the maps: the plain pair instead when the toggle is off."""
    def view(query_file, item_id, model, show):
        if show or not query_file or not item_id:
            return gr.skip(), gr.skip(), gr.skip()
        return load_image(query_file), catalogue.image(item_id), WHY_NOTE
    return view


__all__ = ["map_tab", "map_frame", "selection", "why_panel", "why_view"]
