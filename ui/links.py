"""Links that reopen a search: `?q=knee&model=minilm&k=10&category=knee&min_score=0.2` or `?id=<collection id>`,
with any field filters as `&filter=FIELD:VALUE`, repeated (`&filter=view:lateral&filter=sex:F`; a field named
twice allows either value). `filter=` rather than `?view=`: a collection's fields (an archive's scanner `model`)
can never collide with the link's own parameters.

An uploaded image cannot travel in a link; its nearest collection id can (the image tab's link carries the id of
its first result). Parameters are validated like any input: a bad one is named in the page, never a crash.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from retrieval import RetrievalError
from retrieval.options import K_DEFAULT, K_MAX, K_MIN, MIN_SCORE_RANGE, QueryOptions

PARAMETERS = ("q", "id", "model", "k", "category", "min_score")
FILTER = "filter"  # repeated: FIELD:VALUE

# Runs in the browser: the current search's link, copied to the clipboard and shown. `first` is the results JSON
# (an image search links its first result's id) or the query text.
COPY_LINK_JS = """(query, model, k, category, min_score, filters) => {
  const params = new URLSearchParams();
  if (Array.isArray(query)) { if (!query.length) return "Search first: the link carries a result's id."; params.set("id", query[0].id); }
  else { if (!query || !query.trim()) return "Type a query first."; params.set("q", query.trim()); }
  if (model) params.set("model", model);
  params.set("k", String(k));
  if (category) params.set("category", category);
  if (min_score !== null && min_score !== undefined) params.set("min_score", String(min_score));
  for (const [field, values] of Object.entries(filters || {})) {
    for (const value of [].concat(values)) params.append("filter", `${field}:${value}`);
  }
  const url = `${window.location.origin}${window.location.pathname}?${params}`;
  navigator.clipboard?.writeText(url).catch(() => {});
  return url;
}"""


@dataclass
class Link:
    """A validated link: a text query (`q`) or a collection id (`id`), and the search settings it names."""

    q: str | None = None
    id: str | None = None
    model: str | None = None
    k: int | None = None
    category: str | None = None
    min_score: float | None = None
    filters: dict[str, list[str]] | None = None

    @property
    def modality(self) -> str:
        return "text" if self.q is not None else "image"


class BadLink(ValueError):
    """A link parameter the page cannot use; the message says which and why."""


def read_link(params, catalogue, policy) -> Link | None:
    """The search a page URL asks for (None when it asks for none), checked against the engine's `catalogue`
    (ids, categories, filter fields and values) and `policy` (models). `params`: the page's query parameters (a
    multi-dict such as request.query_params, or a dict; `filter` may repeat). Raises BadLink naming the bad
    parameter."""
    values = {name: params.get(name) for name in PARAMETERS if params.get(name) not in (None, "")}
    if not values.keys() & {"q", "id"}:
        return None
    if "q" in values and "id" in values:
        raise BadLink("A link carries either ?q= (a text search) or ?id= (an image), not both.")
    link = Link(q=values.get("q"), id=values.get("id"))
    if link.id is not None and link.id not in catalogue:
        raise BadLink(f"No image with id {link.id!r} in this collection.")
    if "model" in values:
        if values["model"] not in policy.models_for(link.modality):
            raise BadLink(f"model={values['model']!r} cannot answer this search; use one of "
                          f"{policy.models_for(link.modality)}.")
        link.model = values["model"]
    if "k" in values:
        link.k = _number(values, "k", int, K_MIN, K_MAX)
    if "category" in values:
        if values["category"] not in catalogue.categories:
            raise BadLink(f"Unknown category {values['category']!r}; choose from {catalogue.categories}.")
        link.category = values["category"]
    if "min_score" in values:
        link.min_score = _number(values, "min_score", float, *MIN_SCORE_RANGE)
    link.filters = _filters(params, catalogue, link.category) or None
    return link


def _filters(params, catalogue, category: str | None) -> dict[str, list[str]]:
    """The link's `filter=FIELD:VALUE` parameters as {field: [values]}, checked against the index's fields."""
    given = params.getlist(FILTER) if hasattr(params, "getlist") else params.get(FILTER) or []
    filters: dict[str, list[str]] = {}
    for pair in [given] if isinstance(given, str) else given:
        name, colon, value = str(pair).partition(":")
        if not colon or not name or not value:
            raise BadLink(f"filter={pair!r} must read FIELD:VALUE, e.g. filter=view:lateral.")
        filters.setdefault(name, []).append(value)
    try:
        QueryOptions(category=category, filters=filters).check_filters(catalogue.filter_values())
    except RetrievalError as error:
        raise BadLink(f"filter: {error}") from None
    return filters


def _number(values: dict, name: str, kind, low, high):
    try:
        value = kind(values[name])
    except ValueError:
        raise BadLink(f"{name}={values[name]!r} is not a {'whole number' if kind is int else 'number'}.") from None
    if not low <= value <= high:
        raise BadLink(f"{name} must be from {low:g} to {high:g}; got {value}.")
    return value


def image_file(catalogue, item_id: str) -> str:
    """The collection image as a PNG in a temporary file: the image tab's query, as if uploaded."""
    folder = Path(tempfile.gettempdir()) / "xray-links"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.sha1(item_id.encode()).hexdigest()[:16]}.png"
    if not path.exists():
        partial = path.with_suffix(".part")
        catalogue.image(item_id).save(partial, format="PNG")
        partial.replace(path)
    return str(path)


def opener(handlers, tabs, status, text, image):
    """The page-load handler that runs a link's search, and its outputs. `text`: (query box, controls, results
    outputs); `image`: (query file, controls, outputs of the image search)."""
    engine = handlers.engine
    (query, text_controls, text_outputs, text_filters), (query_file, image_controls, image_outputs, image_filters) = \
        text, image

    def open_link(request: gr.Request):
        try:
            link = read_link(request.query_params, engine.catalogue, engine.policy) if request else None
        except BadLink as error:
            return {status: f"**This link cannot be opened:** {error}"}
        if link is None:
            return {status: ""}  # a page without a search
        controls = text_controls if link.q is not None else image_controls
        updates = {tabs: gr.Tabs(selected=link.modality), status: ""}
        updates.update({control: value for control, value in zip(controls, (link.model, link.k, link.category,
                                                                          link.min_score)) if value is not None})
        settings = (link.model, link.k or K_DEFAULT, link.category, link.min_score)
        filters = link.filters or {}
        if link.q is not None:
            updates[query], updates[text_filters] = link.q, filters
            updates.update(zip(text_outputs, handlers.search_text(link.q, *settings, filters=filters)))
        else:
            updates[query_file], updates[image_filters] = image_file(engine.catalogue, link.id), filters
            updates.update(zip(image_outputs, handlers.search_image(updates[query_file], *settings, filters=filters)))
        return updates

    return open_link, [tabs, status, query, *text_controls, *text_outputs, text_filters, query_file, *image_controls,
                       *image_outputs, image_filters]


def link_row(prefix: str, first, controls, filters) -> None:
    """A "Copy link" button and the link it made. `first`: the query box, or an image search's results;
    `filters`: the tab's active filters."""
    with gr.Row():
        button = gr.Button("Copy link", size="sm", elem_id=f"{prefix}-copy-link", scale=0)
        link = gr.Textbox(show_label=False, placeholder="the link of this search", elem_id=f"{prefix}-link",
                          interactive=False, scale=4)
    button.click(None, [first, *controls, filters], link, js=COPY_LINK_JS, api_visibility="private")
