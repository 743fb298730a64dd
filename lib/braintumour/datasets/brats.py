"""BraTS 2021 slices with tumour boxes ("Brain Tumor Object Detection Datasets", Kaggle
`davidbroberts/brain-tumor-object-detection-datasets`): contrast-enhanced T1, skull-stripped, three
planes, every image a glioma. Cite Baid et al., arXiv 2107.02314, and the Kaggle dataset.

Layout: `<plane>_t1wce_2_class/images/<split>/<name>.jpg`, with `labels/<split>/<name>.txt` holding one
YOLO line per box (`class x_centre y_centre width height`, fractions of the image; the class is MGMT
status, not tumour presence). Axial and sagittal names are `<patient>_<slice>`, so a patient is one
group across planes; coronal names are numbers with copies as `<n> (2)`, grouped by the number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from braintumour.datasets import kaggle
from braintumour.datasets.source import TUMOUR, Source, folder_holding, image_files, rows_frame

PLANES = ("axial", "coronal", "sagittal")
PLANE_DIR = "{}_t1wce_2_class"
PATIENT_SLICE = re.compile(r"^(\d+)_\d+$")
SUFFIXES = (".jpg", ".jpeg", ".png", ".txt")  # the images and their label files
COPY_SUFFIX = re.compile(r"\s*\(\d+\)$")


def group_of(plane: str, stem: str) -> str:
    """The patient (axial, sagittal) or the coronal number the copies of an image share."""
    patient = PATIENT_SLICE.match(stem)
    if patient:
        return f"patient {int(patient.group(1))}"
    return f"{plane} {COPY_SUFFIX.sub('', stem)}"


def read_boxes(label_file: Path) -> str:
    """The file's boxes as JSON [[x_centre, y_centre, width, height], ...] in fractions of the image;
    "[]" when there is no label file or it is empty. A malformed line is refused by name."""
    if not label_file.is_file():
        return "[]"
    boxes = []
    for n, line in enumerate(label_file.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields[1:5]]
        except ValueError:
            values = []
        if len(fields) != 5 or len(values) != 4 or not all(0 <= v <= 1 for v in values):
            raise kaggle.DatasetLayoutError(f"{label_file}, line {n}: not a YOLO box ('class x y width height')")
        boxes.append(values)
    return json.dumps(boxes)


def list_rows(root: Path):
    missing = [PLANE_DIR.format(p) for p in PLANES if not (root / PLANE_DIR.format(p) / "images").is_dir()]
    if missing:
        raise kaggle.DatasetLayoutError(f"{root} does not have the BraTS slices' layout: missing "
                                        f"{', '.join(m + '/images/' for m in missing)}")
    rows = []
    for plane in PLANES:
        images = root / PLANE_DIR.format(plane) / "images"
        for split in sorted(p for p in images.iterdir() if p.is_dir()):
            for f in image_files(split):
                label_file = images.parent / "labels" / split.name / f"{f.stem}.txt"
                rows.append((f.relative_to(root).as_posix(), plane, TUMOUR, "tumour", group_of(plane, f.stem),
                             read_boxes(label_file)))
    return rows_frame(rows)


def members(root: Path) -> list[str]:
    """Every image and label file of the three planes."""
    files = [p for plane in PLANES for p in (root / PLANE_DIR.format(plane)).rglob("*") if p.is_file()]
    return sorted(p.relative_to(root).as_posix() for p in files if p.suffix.lower() in SUFFIXES)


SOURCE = Source(
    name="brats",
    title="BraTS 2021 slices (tumour boxes)",
    dirname="brain-tumor-object-detection",
    env="BRATS_SLICES_DIR",
    kaggle_dataset="davidbroberts/brain-tumor-object-detection-datasets",
    url_var="BRATS_SLICES_URL",
    list_rows=list_rows,
    root_in=folder_holding(lambda p: (p / PLANE_DIR.format("axial")).is_dir(), PLANE_DIR.format("axial") + "/"),
    members=members,
)
