"""A public demo survives whatever people upload or type: each bad input gets a clear message through the API,
odd-but-valid images are searched, memory stays bounded and the app keeps serving."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import served_app  # noqa: E402

MEMORY_HEADROOM = 600 * 2**20  # the app process may grow by at most this over all hostile uploads


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def radiograph_like(size=(256, 256)) -> Image.Image:
    y, x = np.mgrid[0:size[1], 0:size[0]]
    return Image.fromarray(((np.sin(x / 17.0) + np.cos(y / 23.0) + 2) * 60).astype(np.uint8), mode="L")


def dicom_without_pixels() -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Modality = "CR"
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [radiograph_like((64, 64)), Image.new("L", (64, 64), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0)
    return buffer.getvalue()


REFUSED = {
    "zero-byte.png": (lambda: b"", "empty file"),
    "text-renamed.png": (lambda: b"just some text, not a picture\n" * 10, "not an image"),
    "truncated.png": (lambda: png(radiograph_like((512, 512)))[:3000], "damaged or truncated"),
    "truncated.jpg": (lambda: jpeg(Image.fromarray(
        (np.random.default_rng(1).random((512, 512)) * 255).astype(np.uint8)))[:5000], "damaged or truncated"),
    "bomb.png": (lambda: png(Image.new("1", (20000, 20000))), "megapixels|too large"),
    "scan.dcm": (dicom_without_pixels, "without pixel data"),
    "drawing.svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
                    "not an image"),
    "report.pdf": (lambda: b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "not an image"),
}
ACCEPTED = {
    "huge-valid.png": lambda: png(Image.new("L", (7000, 7000), 90)),  # 49 megapixels, under the limit
    "sixteen-bit.png": lambda: png(Image.fromarray((np.asarray(radiograph_like()) * 16).astype(np.uint16))),
    "cmyk.jpg": lambda: jpeg(radiograph_like().convert("CMYK")),
    "animated.gif": animated_gif,
}


@pytest.fixture(scope="module")
def client(subset_index, tmp_path_factory):
    with served_app(subset_index) as (_, url):
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("hostile-downloads")))


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    for name, make in [*((n, m) for n, (m, _) in REFUSED.items()), *ACCEPTED.items()]:
        (folder / name).write_bytes(make())
    return folder


def still_serving(client) -> None:
    _, records, _ = client.predict("knee", api_name="/search_text")
    assert records


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, uploads, name):
    with pytest.raises(AppError, match=REFUSED[name][1]):
        client.predict(handle_file(str(uploads / name)), api_name="/search_image")
    still_serving(client)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_odd_but_valid_images_are_searched(client, uploads, name):
    _, records, suggestion, _ = client.predict(handle_file(str(uploads / name)), min_score=0,
                                               api_name="/search_image")
    assert records and suggestion["label"]


def test_memory_stays_bounded_over_repeated_hostile_uploads(client, uploads):
    import psutil

    process = psutil.Process(os.getpid())
    client.predict(handle_file(str(uploads / "huge-valid.png")), api_name="/search_image")  # warm caches
    before = process.memory_info().rss
    for _ in range(3):
        for name in ("bomb.png", "huge-valid.png", "truncated.jpg"):
            try:
                client.predict(handle_file(str(uploads / name)), api_name="/search_image")
            except AppError:
                pass
    growth = process.memory_info().rss - before
    print(f"\nRSS growth over 9 hostile uploads: {growth / 2**20:.0f} MiB")
    assert growth < MEMORY_HEADROOM


@pytest.mark.parametrize("query, outcome", [
    ("", "query is empty"),
    (" \t\n ", "query is empty"),
    ("knee " * 2000, "limit is 1000"),
    ("🦴 knee ☃ rodilla", None),
    ("膝 X線", None),
    ('knee AND (fracture OR "kl-2") -chest* category:knee {}[]\\', None),
    ("'; DROP TABLE images; --", None),
])
def test_any_text_is_handled(client, query, outcome):
    if outcome is None:
        _, records, status = client.predict(query, min_score=0, api_name="/search_text")
        assert isinstance(records, list) and status
    else:
        with pytest.raises(AppError, match=outcome):
            client.predict(query, api_name="/search_text")


@pytest.mark.parametrize("filters, outcome", [
    ("{not json", "JSON object"),
    ({"view": {"$ne": "PA"}}, "text or a list of texts"),
    ({'view"] == "" or metadata["view': "x"}, "Unknown filter field"),
    ({"view": 'PA" or id != "'}, "Unknown view"),
    ({"view": ["PA"] * 1000}, "at most 64 values"),
    ({f"f{i}": "x" for i in range(100)}, "At most 16 filter fields"),
    ([1, 2, 3], "map fields to values"),
])
def test_any_filter_is_handled(client, filters, outcome):
    with pytest.raises(AppError, match=outcome):
        client.predict("knee", filters=filters, api_name="/search_text")
    still_serving(client)
