"""Healthy volunteers of OpenNeuro ds000177: axial slices (PNG) of T1-weighted MPRAGE scans, skull
included, 10 per person (`sub-NN_T1w.nii_sliceK.png`), exported from the NIfTI volumes by the public
repository GitHub `rdd0582/mri_superresolution` (folder `training_data/` at the commit below), which
`make data` fetches. Licence CC0; cite the dataset ds000177.
"""

from __future__ import annotations

import re
from pathlib import Path

from braintumour.datasets import kaggle
from braintumour.datasets.source import NOTUMOR, Source, folder_holding, image_files, rows_frame

REPOSITORY = "rdd0582/mri_superresolution"
COMMIT = "15f8ce206ef0d3775f3425a719aad5a1c4aeabcc"
ARCHIVE = f"https://github.com/{REPOSITORY}/archive/{COMMIT}.zip"
SLICE = re.compile(r"^(sub-\d+)_T1w\.nii_slice(\d+)\.png$")


def slice_level(path: str) -> int:
    """The slice's index in its volume (inferior to superior), from its name."""
    return int(SLICE.match(Path(path).name).group(2))


def _slices(folder: Path) -> list[Path]:
    return [f for f in image_files(folder) if SLICE.match(f.name)]


def list_rows(root: Path):
    rows = [(f.name, "axial", NOTUMOR, "notumor", SLICE.match(f.name).group(1), "[]") for f in _slices(root)]
    if not rows:
        raise kaggle.DatasetLayoutError(f"{root}: no slice named like sub-NN_T1w.nii_sliceK.png")
    return rows_frame(rows)


SOURCE = Source(
    name="openneuro",
    title="OpenNeuro ds000177 healthy adults (T1 with skull)",
    dirname="openneuro-ds000177-t1w",
    env="OPENNEURO_SLICES_DIR",
    kaggle_dataset=None,
    url_var="OPENNEURO_SLICES_URL",
    list_rows=list_rows,
    root_in=folder_holding(lambda p: bool(_slices(p)), "sub-NN_T1w.nii_sliceK.png slices"),
    members=lambda root: [f.name for f in _slices(root)],
    public_archive=ARCHIVE,
)
