"""Under a results gallery: how many results hold each value of each field ("view: PA · 3"), a click on one filters
the search by it, and the active filters, a click on one clearing it. The counts come from the library
(Catalogue.field_counts); the filters are the searches' `filters` input, held in a hidden JSON component.

A category value sets the tab's category control instead: the category is one filter, and that control shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

MAX_CHIPS = 60  # values shown under one result list (k <= 20 results, so rarely more)


@dataclass
class FacetView:
    filters: gr.JSON  # the active filters {field: value}: an input of the tab's searches (hidden)
    counts: gr.Dataset  # "view: PA · 3": a click filters by that value
    active: gr.Dataset  # "✕ view: lateral": a click clears that filter
    choices: gr.State  # the (field, value) of each chip in `counts`, in order
    shown: gr.State  # the (field, value) of each chip in `active`, in order


def _chips(label: str, elem_id: str) -> gr.Dataset:
    return gr.Dataset(components=[gr.Textbox(visible=False)], samples=[], type="index", label=label,
                      samples_per_page=MAX_CHIPS, layout="gallery", visible=False, elem_id=elem_id,
                      elem_classes="facet-chips")


def facet_view(prefix: str) -> FacetView:
    """The counts and the active filters of one tab (place it under the tab's results)."""
    filters = gr.JSON({}, visible=False, label="filters")
    active = _chips("Active filters — click one to clear it", f"{prefix}-active-filters")
    counts = _chips("Among these results — click a value to show only results with it", f"{prefix}-facets")
    return FacetView(filters, counts, active, gr.State([]), gr.State([]))


def counts_update(catalogue, records: list[dict] | None):
    """The chips of a new result list: every filter field's values among the results, most frequent first."""
    counts = catalogue.field_counts([record["id"] for record in records or []])
    pairs = [(name, value) for name, values in counts.items() for value in values][:MAX_CHIPS]
    labels = [f"{name}: {value} · {counts[name][value]}" for name, value in pairs]
    return gr.Dataset(samples=[[label] for label in labels], sample_labels=labels, visible=bool(pairs)), pairs


def active_update(filters: dict | None):
    pairs = [(name, value) for name, values in (filters or {}).items()
             for value in ([values] if isinstance(values, str) else values)]
    labels = [f"✕ {name}: {value}" for name, value in pairs]
    return gr.Dataset(samples=[[label] for label in labels], sample_labels=labels, visible=bool(pairs)), pairs


def add_filter(index: int | None, pairs: list, filters: dict | None, category: str | None):
    """A clicked count: its value becomes the field's filter (the category goes to the category control)."""
    if index is None or not 0 <= index < len(pairs):
        return gr.update(), gr.update()
    name, value = pairs[index]
    if name == "category":
        return gr.update(), value
    return {**(filters or {}), name: value}, gr.update()


def remove_filter(index: int | None, pairs: list, filters: dict | None) -> dict:
    """A clicked active filter: that value gone (its field with it when it was the field's only value)."""
    if index is None or not 0 <= index < len(pairs):
        return filters or {}
    name, value = pairs[index]
    kept = {}
    for field, values in (filters or {}).items():
        values = [values] if isinstance(values, str) else list(values)
        values = [v for v in values if field != name or v != value]
        if values:
            kept[field] = values[0] if len(values) == 1 else values
    return kept


def wire(view: FacetView, catalogue, results_table, category, search, inputs: list, outputs: list, **options):
    """Counts follow the results; a click on a count or on an active filter searches again (`search` with
    `inputs`, the filters among them, into `outputs`)."""
    results_table.change(lambda records: counts_update(catalogue, records), results_table,
                         [view.counts, view.choices], api_visibility="private", queue=False)
    view.filters.change(active_update, view.filters, [view.active, view.shown], api_visibility="private",
                        queue=False)
    view.counts.click(add_filter, [view.counts, view.choices, view.filters, category], [view.filters, category],
                      api_visibility="private", queue=False).then(
        search, inputs, outputs, api_visibility="private", **options)
    view.active.click(remove_filter, [view.active, view.shown, view.filters], view.filters,
                      api_visibility="private", queue=False).then(
        search, inputs, outputs, api_visibility="private", **options)
