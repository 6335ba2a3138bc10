"""Turn any supported input (file, bytes, PIL image, DICOM) into one normalised 8-bit grayscale picture.

Every encoder and every display goes through `load_image`, so limits and conversions live in one place.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImage

from .files import (  # noqa: F401  (re-exported: the limits of what is decoded)
    DICOM_EXTENSIONS, IMAGE_EXTENSIONS, MAX_FILE_BYTES, MAX_PIXELS, SUPPORTED_FORMATS, WORK_SIDE, is_dicom, read_bytes,
)

# PIL's own bomb guard: it warns above this and raises above twice this. Ours is stricter (see _check_size).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageSource = Union[str, Path, bytes, bytearray, Image.Image]


def load_image(source: ImageSource, name: str | None = None, max_side: int = WORK_SIDE) -> Image.Image:
    """Decode `source` into an 8-bit grayscale ('L') image, EXIF orientation applied, long side <= max_side.

    An encoder that reads 224 px asks for a smaller `max_side`: a JPEG then decodes at a reduced scale, which
    is several times faster. Raises BadImage with a message a person understands for anything that is not a
    usable image.
    """
    if isinstance(source, Image.Image):
        return _normalise(source, name or "image", max_side)
    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        data = read_bytes(source, name)
    else:
        data = bytes(source)
        name = name or "upload"
        if not data:
            raise BadImage(f"{name!r} is an empty file (0 bytes).")
        if len(data) > MAX_FILE_BYTES:
            raise BadImage(f"{name!r} is {len(data) / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    return decode_bytes(data, name, max_side)


def decode_bytes(data: bytes, name: str, max_side: int = WORK_SIDE) -> Image.Image:
    """Decode image bytes (any PIL format or DICOM) to a normalised grayscale image."""
    if is_dicom(data, name):
        from . import dicom  # local: pydicom is only needed when a DICOM file shows up

        return _normalise(dicom.read_dicom(data, name=name).image, name, max_side)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise BadImage(
            f"{name!r} is not an image that can be read (supported: {SUPPORTED_FORMATS})."
        ) from error
    except Image.DecompressionBombError as error:
        raise BadImage(f"{name!r} is too large to decode safely ({error}).") from error
    except Exception as error:  # PIL raises many types for hostile headers
        raise BadImage(f"{name!r} could not be opened as an image: {error}.") from error
    _check_size(image, name)
    try:
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale (never below max_side): a 10k-px JPEG never needs
            # full-size memory, and an encoder's 224-px input never pays for a full decode.
            image.draft("L", (max_side, max_side))
        image.seek(0)  # animated GIF/WebP/multi-page TIFF: the first frame
        image.load()
    except Image.DecompressionBombError as error:
        raise BadImage(f"{name!r} is too large to decode safely ({error}).") from error
    except Exception as error:  # truncated or corrupt data
        raise BadImage(f"{name!r} is damaged or truncated and cannot be decoded ({error}).") from error
    return _normalise(image, name, max_side)


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage(f"{name!r} has no pixels ({width}x{height}).")
    if width * height > MAX_PIXELS:
        raise BadImage(
            f"{name!r} is {width}x{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        )


def _normalise(image: Image.Image, name: str, max_side: int = WORK_SIDE) -> Image.Image:
    _check_size(image, name)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        pass
    gray = to_grayscale8(image)
    if max(gray.size) > max_side:
        gray.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return gray


def to_grayscale8(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit 'L': high bit depths are stretched min..max, transparency lies on black."""
    mode = image.mode
    if mode == "L":
        return image.copy()
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if high <= low else (values - low) * (255.0 / (high - low))
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("L")
    if mode == "CMYK":
        return image.convert("RGB").convert("L")
    return image.convert("L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale repeated to three channels, for encoders trained on RGB."""
    return image.convert("RGB") if image.mode != "RGB" else image


THUMBNAIL_SIDE = 384  # long side of a result thumbnail (the gallery shows ~250 px)
THUMBNAIL_QUALITY = 75  # JPEG quality: ~10-25 KB for a radiograph at 384 px


def thumbnail_bytes(data: bytes, name: str) -> bytes:
    """A gallery-sized JPEG of stored image bytes (decoded at a reduced scale)."""
    return thumbnail_of(decode_bytes(data, name, max_side=THUMBNAIL_SIDE))


def thumbnail_of(picture: Image.Image) -> bytes:
    """A gallery-sized JPEG of a decoded picture (the build's: no second decode)."""
    picture = shrink(picture, THUMBNAIL_SIDE)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


def shrink(picture: Image.Image, max_side: int) -> Image.Image:
    """`picture` with its long side at most `max_side` (the picture itself when it already fits)."""
    if max(picture.size) <= max_side:
        return picture
    smaller = picture.copy()
    smaller.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return smaller


def digest(data: bytes) -> str:
    """Content hash used for exact-duplicate detection and for the embedding cache."""
    return hashlib.sha256(data).hexdigest()
