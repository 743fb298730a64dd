"""The input check: what is plainly not a brain MRI slice is refused before the model sees it.

Three rules, each one line of reason, each measured to refuse (almost) no real slice of the Kaggle set
or of the external collections (Br35H, BraTS, OASIS, OpenNeuro; docs/predict.md gives the rates).
They catch what needs no model; the unfamiliar score (`ood`) catches the rest.
- **Colour.** MRI slices are grey; many are stored as RGB with three equal channels (fine), a few carry
  small coloured marks. Refused: a file whose pixels are coloured (chroma, max - min of R, G, B, at least
  `CHROMA_LEVEL`) over more than `MAX_COLOUR_SHARE` of the image: photographs, fundus images, stained
  histology, colour screenshots.
- **Blank.** A constant or nearly constant image (standard deviation below `MIN_STD` grey levels)
  holds nothing to classify.
- **Bright border.** A head slice lies on a dark background. Refused: images whose outer `RING` pixels
  are almost all light: fewer than `MIN_DARK_BORDER` of them at or below `DARK_LEVEL` *and* their median
  above `BRIGHT_BORDER`, such as documents, light screenshots, textures and photographs filling the frame.
  Both conditions, because some real slices lie on a mid-grey background (FLAIR exports of Br35H and the
  Kaggle set: border medians 45-89, no pixel at or below 40); the dark share alone refused 14 of them.
The last two judge the image's own area of the model's input (`content`), not the black bars that
`images.square_resize` pads a non-square image with: those would make a white page look like a slice.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from braintumour.datasets.images import ImageDecodeError

CHROMA_LEVEL = 40  # grey levels: JPEG's chroma noise on a grey slice stays far below
MAX_COLOUR_SHARE = 0.15  # real slices measured: at most 0.047 (a coloured banner across a web image)
MIN_STD = 6.0  # grey levels of the (size x size) input; the real slices measured have at least 14
RING = 6  # pixels of the border of the (128 px) input
DARK_LEVEL = 40
MIN_DARK_BORDER = 0.02  # share of the border ring at or below DARK_LEVEL
BRIGHT_BORDER = 100  # grey levels: the border median of real slices measured is at most 89 where none is dark
COLOUR_SIDE = 64  # colour is judged on about 64 x 64 pixels sampled from the image
EXIF_ORIENTATION = 0x0112  # values 5-8 turn the image by 90 degrees
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class NotABrainSlice(ImageDecodeError):
    """A decodable image that the input check refuses; the message names the file and the rule."""


def content(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The part of a padded square input (`images.square_resize`) that shows the original width x height
    image, less one pixel at each padded side (bilinear resizing blends it with the padding)."""
    side = image.shape[0]
    w = max(1, round(side * width / max(width, height)))
    h = max(1, round(side * height / max(width, height)))
    x0, y0 = (side - w) // 2, (side - h) // 2
    trim_x, trim_y = int(w < side and w > 2), int(h < side and h > 2)
    return image[y0 + trim_y : y0 + h - trim_y, x0 + trim_x : x0 + w - trim_x]


def _chroma_share(rgb: np.ndarray) -> float:
    # channel by channel: numpy's reduction over a last axis of 3 is some ten times slower
    r, g, b = (rgb[..., k].astype(np.int16) for k in range(3))
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float((chroma >= CHROMA_LEVEL).mean())


def colour_and_size(im: Image.Image) -> tuple[float, tuple[int, int]]:
    """Share of coloured pixels of a decoded image (`images.decode_image`; 0 for grey modes) and its width
    and height as the model sees it (after the EXIF turn that `images.to_grey` applies to JPEGs). Called
    before `to_grey`, on the pixels `predict` decoded anyway: a file is decoded once."""
    turned = im.format == "JPEG" and im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return _colour_share(im), ((im.height, im.width) if turned else im.size)


def _colour_share(im: Image.Image) -> float:
    """Judged on about COLOUR_SIDE x COLOUR_SIDE pixels sampled from the image (nearest neighbour: a share
    of pixels needs no filtering, and sampling touches a few thousand pixels, not all of them)."""
    if im.mode in GREY_MODES:
        return 0.0
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "transparency" in im.info or "A" in im.mode else "RGB")
    scale = COLOUR_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.NEAREST)
    rgb = np.asarray(im)
    if rgb.shape[-1] == 4:  # transparent pixels are composited onto black, i.e. grey
        rgb = rgb[..., :3] * (rgb[..., 3:] > 0)
    return _chroma_share(rgb)


def dicom_colour_and_size(data: bytes) -> tuple[float, tuple[int, int]]:
    """`colour_and_size` for a DICOM file: colour only where its photometric interpretation is a colour one."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        size = (int(ds.Columns), int(ds.Rows))
        if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).startswith("MONOCHROME"):
            return 0.0, size
        rgb = np.asarray(ds.pixel_array)  # pydicom converts YBR and palette colour to RGB
    except Exception:  # not a DICOM file after all, or unreadable here: read_scan judged the file already
        return 0.0, (1, 1)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        return 0.0, size
    top = float(rgb.max()) or 1.0
    return _chroma_share(np.round(rgb[..., :3] * (255.0 / top)).astype(np.uint8)), size


def border(image: np.ndarray) -> np.ndarray:
    """The outer `RING` pixels (at 128 px; scaled with the image) of a uint8 image, flattened."""
    r = max(1, min(round(RING * max(image.shape) / 128), min(image.shape) // 2))
    return np.concatenate([image[:r].ravel(), image[-r:].ravel(), image[r:-r, :r].ravel(), image[r:-r, -r:].ravel()])


def border_dark_share(image: np.ndarray) -> float:
    """Share of the border (`border`) at or below `DARK_LEVEL`."""
    return float((border(image) <= DARK_LEVEL).mean())


def refusal(image: np.ndarray, colour_share: float, size: tuple[int, int]) -> str | None:
    """Why a file is not a brain MRI slice, or None where no rule refuses it: `image` is the model's uint8
    input made from it, `colour_share` and `size` (width, height) what `colour_and_size` says of it."""
    if colour_share > MAX_COLOUR_SHARE:
        return f"a colour image: {colour_share:.0%} of its pixels are coloured; MRI slices are grey"
    own = content(image, *size)
    if (std := float(own.std())) < MIN_STD:
        return f"blank: nearly constant (standard deviation {std:.1f} grey levels)"
    dark, median = border_dark_share(own), float(np.median(border(own)))
    if dark < MIN_DARK_BORDER and median > BRIGHT_BORDER:
        return (f"a bright border: its median is {median:.0f} grey levels and {dark:.0%} of it is dark, where a "
                "head slice lies on a dark background")
    return None
