"""Inputs that are not brain MRI slices (#49), by kind: images that installed packages ship (scikit-image's
`skimage.data`, pydicom's test files) or that are drawn here. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from skimage import data as skdata

LINES = ("Patient list - radiology worklist", "MRN 000123  HEAD MRI  2024-05-01  pending",
         "Findings: no acute abnormality.", "Impression: see report; follow-up in 6 months.",
         "Signed electronically by the reporting radiologist")


def _save(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


def _skimage(name: str, folder: Path, suffix: str = ".png") -> Path:
    return _save(np.asarray(getattr(skdata, name)()), folder / f"{name}{suffix}")


def _document(folder: Path, name: str, ink: int, paper: int, size=(640, 420)) -> Path:
    """Text rendered with Pillow's built-in font: a page (dark ink on white) or a dark-mode one."""
    im = Image.new("L", size, paper)
    draw, font = ImageDraw.Draw(im), ImageFont.load_default(size=18)
    for i in range(14):
        draw.text((24, 16 + 28 * i), LINES[i % len(LINES)], fill=ink, font=font)
    path = folder / f"{name}.png"
    im.save(path)
    return path


def _screenshot(folder: Path, dark: bool) -> Path:
    """A desktop window: title bar, menu, buttons, a list of text rows; light or dark theme, in colour."""
    bg, fg, bar = ((30, 30, 34), (220, 220, 220), (45, 90, 160)) if dark else ((236, 236, 236), (20, 20, 20),
                                                                            (40, 110, 200))
    im = Image.new("RGB", (800, 560), bg)
    draw, font = ImageDraw.Draw(im), ImageFont.load_default(size=15)
    draw.rectangle((0, 0, 800, 34), fill=bar)
    draw.text((12, 8), "Viewer - study 2024-05-01", fill=(255, 255, 255), font=font)
    for i, label in enumerate(("File", "Edit", "View", "Tools", "Help")):
        draw.text((12 + 70 * i, 44), label, fill=fg, font=font)
    for i in range(12):
        draw.rectangle((12, 80 + 36 * i, 780, 108 + 36 * i), outline=(120, 120, 120))
        draw.text((20, 86 + 36 * i), LINES[i % len(LINES)], fill=fg, font=font)
    for i in range(3):
        draw.rounded_rectangle((500 + 95 * i, 520, 585 + 95 * i, 548), 6, fill=(60, 140, 80))
    path = folder / f"screenshot_{'dark' if dark else 'light'}.png"
    im.save(path)
    return path


def _blank(folder: Path) -> dict[str, Path]:
    noise = np.random.default_rng(0).integers(0, 3, (256, 256), dtype=np.uint8)
    return {"black": _save(np.zeros((256, 256), np.uint8), folder / "black.png"),
            "white": _save(np.full((300, 200), 255, np.uint8), folder / "white.png"),
            "grey": _save(np.full((256, 256), 128, np.uint8), folder / "grey.jpg"),
            "near-black noise": _save(noise, folder / "near_black.png"),
            "flat colour": _save(np.full((64, 64, 3), (30, 60, 200), np.uint8), folder / "blue.png")}


def nonbrain_images(folder: Path) -> dict[str, dict[str, Path]]:
    """{kind: {name: file}} for the four kinds of #49."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom = {name: Path(get_testdata_file(file)) for name, file in
             (("CT slice (pydicom CT_small)", "CT_small.dcm"), ("head CT (pydicom 693_J2KI)", "693_J2KI.dcm"),
              ("skull-base CT (pydicom J2K_pixelrep_mismatch)", "J2K_pixelrep_mismatch.dcm"))}
    return {
        "colour photograph": {n: _skimage(n, folder, ".jpg") for n in ("astronaut", "coffee", "chelsea", "rocket")}
        | {"hubble_deep_field": _skimage("hubble_deep_field", folder, ".jpg")},
        "blank or constant": _blank(folder),
        "non-brain medical": dicom | {
            "retina (colour fundus)": _skimage("retina", folder, ".jpg"),
            "retina (grey, microaneurysms)": _skimage("microaneurysms", folder),
            "histology (immunohistochemistry)": _skimage("immunohistochemistry", folder),
            "microscopy (cell)": _skimage("cell", folder)},
        "text or screenshot": {
            "scanned page (skimage page)": _skimage("page", folder),
            "photographed text (skimage text)": _skimage("text", folder),
            "document": _document(folder, "document", ink=10, paper=250),
            "dark-mode text": _document(folder, "dark_text", ink=235, paper=15),
            "screenshot, light": _screenshot(folder, dark=False),
            "screenshot, dark": _screenshot(folder, dark=True)},
    }
