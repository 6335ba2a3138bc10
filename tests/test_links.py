"""Links that reopen a search: what a page URL may ask for, validated like any input."""

import pytest
from PIL import Image

from ui.links import BadLink, image_file, read_link


def test_a_text_link_carries_its_query_and_settings(subset_engine):
    link = read_link({"q": "knee fracture", "model": "minilm", "k": "7", "category": "knee", "min_score": "0.25"},
                     subset_engine.catalogue, subset_engine.policy)
    assert (link.q, link.model, link.k, link.category, link.min_score) == ("knee fracture", "minilm", 7, "knee", 0.25)
    assert link.modality == "text"


def test_an_id_link_opens_an_image_search_of_that_collection_image(subset_engine):
    catalogue = subset_engine.catalogue
    item = catalogue.ids[3]
    link = read_link({"id": item}, catalogue, subset_engine.policy)
    assert link.modality == "image" and link.id == item and link.k is None
    with Image.open(image_file(catalogue, item)) as picture:
        assert picture.size == catalogue.image(item).size


def test_a_page_without_a_search_asks_for_none(subset_engine):
    assert read_link({}, subset_engine.catalogue, subset_engine.policy) is None
    assert read_link({"model": "minilm"}, subset_engine.catalogue, subset_engine.policy) is None


def test_a_link_carries_field_filters_as_repeated_filter_parameters(subset_engine):
    from starlette.datastructures import QueryParams

    catalogue = subset_engine.catalogue
    views = [view for view in catalogue.filter_values()["view"]][:2]
    params = QueryParams([("q", "knee"), ("filter", f"view:{views[0]}"), ("filter", f"view:{views[1]}"),
                          ("filter", "category:knee")])
    link = read_link(params, catalogue, subset_engine.policy)
    assert link.filters == {"view": views, "category": ["knee"]}
    assert read_link({"q": "knee", "filter": f"view:{views[0]}"}, catalogue, subset_engine.policy).filters == {
        "view": [views[0]]}
    assert read_link({"q": "knee"}, catalogue, subset_engine.policy).filters is None


@pytest.mark.parametrize("params, message", [
    ({"q": "knee", "filter": "view"}, "must read FIELD:VALUE"),
    ({"q": "knee", "filter": "sex:F"}, "Unknown filter field 'sex'"),
    ({"q": "knee", "filter": "view:oblique"}, "Unknown view 'oblique'; choose from"),
    ({"q": "knee", "category": "knee", "filter": "category:hand"}, "category is given twice"),
    ({"q": "knee", "id": "x"}, "not both"),
    ({"id": "no/such-id"}, "No image with id"),
    ({"q": "knee", "model": "efficientnet-lite0"}, "cannot answer this search"),
    ({"q": "knee", "model": "no-such-model"}, "cannot answer this search"),
    ({"q": "knee", "k": "ten"}, "not a whole number"),
    ({"q": "knee", "k": "0"}, "k must be from 1 to 20"),
    ({"q": "knee", "k": "21"}, "k must be from 1 to 20"),
    ({"q": "knee", "category": "elbow"}, "Unknown category"),
    ({"q": "knee", "min_score": "high"}, "not a number"),
    ({"q": "knee", "min_score": "3"}, "min_score must be from -1 to 1"),
])
def test_a_bad_parameter_is_named(subset_engine, params, message):
    with pytest.raises(BadLink, match=message):
        read_link(params, subset_engine.catalogue, subset_engine.policy)
