"""Every input becomes one normalised 8-bit grayscale picture, or a clear BadImage."""

import io

import numpy as np
import pytest
from PIL import Image

from retrieval.errors import BadImage
from retrieval.images import MAX_FILE_BYTES, WORK_SIDE, load_image, to_grayscale8, to_rgb


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(size=(64, 48)) -> np.ndarray:
    return np.tile(np.linspace(0, 1, size[0]), (size[1], 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "LA", "1", "I;16", "I", "F"])
def test_any_pil_mode_becomes_8bit_grayscale(mode):
    source = Image.fromarray((gradient() * 255).astype(np.uint8)).convert("RGB").convert(mode) \
        if mode not in ("I;16", "I", "F") else Image.fromarray((gradient() * 4095).astype(np.uint16))
    if mode in ("I", "F"):
        source = source.convert(mode)
    result = load_image(source)
    assert result.mode == "L" and result.size == (64, 48)
    if mode != "1":
        assert np.asarray(result)[:, -1].mean() > np.asarray(result)[:, 0].mean() + 100


def test_sixteen_bit_png_is_stretched_to_the_full_range():
    sixteen = Image.fromarray((gradient() * 4095).astype(np.uint16))  # 12-bit content in a 16-bit PNG
    pixels = np.asarray(load_image(encode(sixteen, "PNG")))
    assert pixels.min() == 0 and pixels.max() == 255


def test_transparent_pixels_lie_on_black():
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    assert np.asarray(to_grayscale8(rgba)).max() == 0


def test_exif_orientation_is_applied():
    tall = Image.new("L", (20, 40), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = encode(tall.convert("RGB"), "JPEG", exif=exif)
    assert load_image(data).size == (40, 20)


def test_large_images_are_reduced_and_gray_repeats_to_rgb():
    big = Image.new("L", (3000, 1500), 128)
    result = load_image(encode(big, "PNG"))
    assert max(result.size) == WORK_SIDE and result.size[0] == 2 * result.size[1]
    rgb = to_rgb(result)
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb)[..., 0], np.asarray(rgb)[..., 2])


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("L", (16, 16), value) for value in (10, 250)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(load_image(buffer.getvalue())).mean() < 50


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am text pretending to be a PNG", "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>", "not an image"),
    (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "not an image"),
])
def test_non_images_are_refused_clearly(data, message):
    with pytest.raises(BadImage, match=message):
        load_image(data, "upload.png")


def test_truncated_files_are_refused_clearly():
    data = encode(Image.fromarray((np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)), "PNG")
    with pytest.raises(BadImage, match="damaged or truncated"):
        load_image(data[: len(data) // 2], "half.png")


def test_decompression_bomb_is_refused_from_the_header():
    bomb = encode(Image.new("1", (12000, 12000)), "PNG")  # tiny file, 144 megapixels
    assert len(bomb) < 100_000
    with pytest.raises(BadImage, match="megapixels|too large"):
        load_image(bomb, "bomb.png")


def test_oversized_files_are_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(BadImage, match="limit"):
        load_image(path)
