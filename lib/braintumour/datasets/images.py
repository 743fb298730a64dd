"""Decoding and geometry, one convention for every source: the guards a file passes before any pixel
is decoded (size, frames, format), greyscale 'L' on black, pad to a centred square and resize.

Every failure is an ImageDecodeError naming the file and the reason; nothing here knows which
collection an image belongs to.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import pandas as pd

# Refuse absurd images before decoding them: 20k x 20k would need gigabytes. One limit, on the pixels
# a file's header announces (all frames), for every decoder: PIL's formats and DICOM (`check_image_size`).
MAX_PIXELS = 8192 * 8192
# Nor is a file read into memory whole when it is larger than any one slice can be (8192 x 8192 at 16
# bits, uncompressed, is 128 MiB).
MAX_FILE_BYTES = 256 * 1024 * 1024
# The formats PIL may open (it sniffs the content, not the suffix): the slice formats this project
# reads, and no format whose plugin hands the file to another program (EPS runs Ghostscript).
PIL_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")  # JPEG includes MPO (camera multi-picture) files


class ImageDecodeError(ValueError):
    """One image could not be decoded; the message names the file and the reason."""


# --------------------------------------------------------------------------- decoding


def _header(path: Path, data: bytes) -> tuple[int, int, str]:
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            return im.width, im.height, im.mode
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{path}: not a readable image ({unsupported_format(data)})") from e
    except Exception as e:  # decoders raise SyntaxError, struct.error and more for broken headers
        raise ImageDecodeError(f"{path}: not a readable image ({decoder_reason(e)})") from e


def decode_grey(data: bytes, *, source: str | Path = "<bytes>") -> Image.Image:
    """Decode image bytes to one greyscale convention: 8-bit 'L', black background.

    - Orientation: the EXIF orientation tag is applied in every container that carries one (JPEG,
      PNG's eXIf chunk, TIFF).
    - RGB: ITU-R 601 luma (PIL's 'L' conversion); the MRI slices are grey stored as RGB.
    - RGBA / LA / palette with transparency: composited onto black, the MRI background colour.
    - Wider, signed or float pixels ('I;16', 'I', 'F'): `scale_to_uint8`, the rule DICOM follows too.
    - One slice per file: a multi-page TIFF or animated PNG is refused (`check_frames`).

    Every failure, whatever the decoder raises, is an ImageDecodeError naming `source`.
    """
    im = decode_image(data, source=source)
    with _named_decode_errors(data, source):
        return to_grey(im, source=source)


def decode_image(data: bytes, *, source: str | Path = "<bytes>") -> Image.Image:
    """Image bytes decoded as stored (mode, orientation tag and all), after every guard: the size
    before any pixel is decoded, one frame, at least 8 x 8. `decode_grey` turns it into the convention;
    `predict` also looks at its colour first, so that a file is decoded once."""
    with _named_decode_errors(data, source):
        im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
        check_image_size(im.width, im.height, source=source)
        check_frames(getattr(im, "n_frames", 1), im.format, source=source)
        im.load()
        if im.width < 8 or im.height < 8:
            raise ImageDecodeError(f"{source}: image is {im.width}x{im.height}, too small to be an MRI slice")
        return im


@contextlib.contextmanager
def _named_decode_errors(data: bytes, source: str | Path) -> Iterator[None]:
    """Whatever a decoder raises becomes one ImageDecodeError naming `source`."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{source}: image refused, too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{source}: cannot identify image ({unsupported_format(data, source)})") from e
    except Exception as e:  # decoders raise SyntaxError, struct.error, EOFError and more for broken files
        raise ImageDecodeError(f"{source}: cannot decode image ({decoder_reason(e)})") from e


def check_image_size(width: int, height: int, frames: int = 1, *, source: str | Path = "<bytes>") -> None:
    """The size guard of every decoder, applied to the header's numbers before any pixel is decoded:
    ImageDecodeError when the square the image is padded to (`square_resize`), side x side x frames,
    exceeds MAX_PIXELS. The padded square, not width x height, is what gets allocated: a 60000 x 10
    image is 600,000 pixels but pads to 3.6 billion."""
    frames, side = max(int(frames), 1), max(int(width), int(height))
    if side * side * frames > MAX_PIXELS:
        shape = f"{width}x{height}" + (f" (padded to {side}x{side})" if width != height else "")
        shape += f" x {frames} frames" if frames > 1 else ""
        raise ImageDecodeError(
            f"{source}: image is {shape}, over the {MAX_PIXELS:,}-pixel limit; refused rather than decoded "
            "(downscale it first)"
        )


def check_frames(frames: int, container: str | None, *, source: str | Path = "<bytes>") -> None:
    """One rule for every container (multi-page TIFF, animated PNG, multi-frame DICOM): a file is one
    slice. Classifying only the first frame would answer for a slice the user may not have meant."""
    if frames > 1:
        how = ("pydicom.dcmread(path).pixel_array[k]" if container == "DICOM"
               else "PIL: im = Image.open(path); im.seek(k); im.save('slice.png')")
        raise ImageDecodeError(
            f"{source}: {container or 'file'} holds {frames} frames; predict classifies one slice per file: "
            f"save the slice to classify (frame k, 0 to {frames - 1}) as its own file ({how})"
        )


def scale_to_uint8(values: np.ndarray, *, source: str | Path = "<bytes>") -> np.ndarray:
    """Wide, signed or float pixel values -> uint8, one rule for every container (16/32-bit PNG and
    TIFF, float TIFF, DICOM after its rescale): values must be finite; negative values are shifted
    up so the minimum is zero (zero stays zero otherwise); then scaled so the maximum is 255.

    A non-finite value would make the maximum NaN and the whole image zero, so it is refused, never
    scaled. Computed in float64, in place to bound memory (an 8192 x 8192 slice is 0.5 GB): a float64
    `values` is overwritten, so callers pass their own temporary."""
    integer = np.issubdtype(values.dtype, np.integer)
    arr = values.astype(np.float64, copy=False)
    if not integer:
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ImageDecodeError(f"{source}: {bad:,} pixel value(s) are not finite (NaN or infinity); refused "
                                   "rather than scaled")
    low = arr.min()
    if low < 0:
        arr -= low
    top = arr.max()
    if not np.isfinite(top):
        raise ImageDecodeError(f"{source}: pixel values span more than a float can hold; refused")
    scale = 255.0 / top if top > 0 else 1.0
    if np.isfinite(scale):
        arr *= scale
    else:  # a subnormal maximum, whose reciprocal overflows: the quotient does not
        arr /= top
        arr *= 255.0
    np.round(arr, out=arr)
    return arr.astype(np.uint8)


def unsupported_format(data: bytes, source: str | Path = "<bytes>") -> str:
    """What a file PIL cannot identify is, in words, for the refusal (never PIL's repr of a buffer).
    An animated GIF gets the frames rule's message, as every multi-frame container does."""
    frames = 1
    if data[:4] == b"GIF8":
        with contextlib.suppress(Exception), Image.open(io.BytesIO(data), formats=("GIF",)) as im:
            frames = im.n_frames
    check_frames(frames, "GIF", source=source)
    name = next((name for magic, at, name in _FOREIGN_MAGIC if data[at : at + len(magic)] == magic), None)
    what = f"a {name} file" if name else "not a JPEG, PNG, TIFF, BMP or DICOM file"
    return f"{what}; predict reads JPEG, PNG, TIFF, BMP and DICOM slices"


# Formats users plausibly hand over by mistake, recognised only to name them in the refusal.
_FOREIGN_MAGIC = (
    (b"GIF8", 0, "GIF"), (b"n+1\0", 344, "NIfTI-1"), (b"ni1\0", 344, "NIfTI-1"), (b"n+2\0", 4, "NIfTI-2"),
    (b"\x1f\x8b", 0, "gzip-compressed (a .nii.gz volume?)"), (b"%!PS", 0, "PostScript"), (b"%PDF", 0, "PDF"),
    (b"\0\0\0\x0cjP  ", 0, "JPEG 2000"), (b"RIFF", 0, "RIFF (WebP?)"), (b"PK\x03\x04", 0, "zip"),
)
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def decoder_reason(e: BaseException) -> str:
    """The first line of a decoder's exception, for a one-line refusal: a Python object's repr in it
    (`<_io.BytesIO object at 0x...>`) is replaced by "the file", and the exception's type is named
    where its message alone would not say what went wrong (an OSError's does)."""
    lines = _OBJECT_REPR.sub("the file", str(e)).strip().splitlines()
    text = lines[0] if lines else ""
    return text if text and isinstance(e, OSError) else f"{type(e).__name__}: {text}".rstrip(": ")


def read_image_bytes(path: str | Path) -> bytes:
    """A file's bytes, for decoding. ImageDecodeError naming it when it is missing, not a regular
    file (a FIFO or device would block or never end), empty, over MAX_FILE_BYTES, or unreadable."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ImageDecodeError(f"{path}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageDecodeError(
                f"{path}: file is {st.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one slice; refused"
            )
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageDecodeError(f"{path}: no such file") from e
    except OSError as e:
        raise ImageDecodeError(f"{path}: cannot read file ({e.strerror or e})") from e
    if not data:
        raise ImageDecodeError(f"{path}: file is empty")
    return data


def to_grey(im: Image.Image, *, source: str | Path = "<bytes>") -> Image.Image:
    """Any PIL image -> 8-bit greyscale ('L') following `decode_grey`'s convention."""
    ImageOps.exif_transpose(im, in_place=True)  # no orientation tag (most files): nothing is copied
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    if im.mode.startswith("I") or im.mode == "F":
        return Image.fromarray(scale_to_uint8(np.asarray(im), source=source), mode="L")
    return im.convert("L")


def square_resize(im: Image.Image, size: int) -> np.ndarray:
    """Pad to a centred square with black (keeps anatomy's proportions), then resize to size x size.

    The same geometry is applied to masks (`resample=NEAREST`) so heatmaps and masks line up.
    """
    return np.asarray(_square_resize(im, size, Image.Resampling.BILINEAR), dtype=np.uint8)


def _square_resize(im: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    side = max(im.width, im.height)
    if im.width != im.height:
        canvas = Image.new(im.mode, (side, side), 0)
        canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        im = canvas
    # PIL's bilinear filter widens its support when shrinking, so it antialiases.
    return im.resize((size, size), resample)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read one image file into a (size, size) uint8 array with the training preprocessing."""
    path = Path(path)
    return square_resize(decode_grey(read_image_bytes(path), source=path), size)


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """Binary mask (bool, size x size) with the same pad-and-resize geometry as its image."""
    with Image.open(path, formats=PIL_FORMATS) as im:
        check_image_size(im.width, im.height, source=path)
        grey = im.convert("L")
    resized = _square_resize(grey, size, Image.Resampling.BILINEAR)
    return np.asarray(resized) >= 128


def box_masks(manifest: pd.DataFrame, size: int) -> np.ndarray:
    """Each image's tumour boxes (`boxes`: JSON of [x_centre, y_centre, width, height] in fractions of
    the image) as a (N, size, size) bool mask, through the padding to a centred square that
    `_square_resize` applies to the image."""
    out = np.zeros((len(manifest), size, size), dtype=bool)
    for k, (boxes, width, height) in enumerate(zip(manifest.boxes, manifest.width, manifest.height, strict=True)):
        side = max(width, height)
        pad_x, pad_y = (side - width) / 2, (side - height) / 2
        for x, y, w, h in json.loads(boxes):
            x0, x1 = ((x - w / 2) * width + pad_x) / side, ((x + w / 2) * width + pad_x) / side
            y0, y1 = ((y - h / 2) * height + pad_y) / side, ((y + h / 2) * height + pad_y) / side
            out[k, int(y0 * size) : int(np.ceil(y1 * size)), int(x0 * size) : int(np.ceil(x1 * size))] = True
    return out
