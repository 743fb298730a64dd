"""OASIS adults without dementia: the `train/NonDemented` class of "Alzheimer's Dataset (4 class of
Images)" (Kaggle `tourist55/alzheimers-dataset-4-class-of-images`): axial T1 slices, skull-stripped, no
tumour in any. The release does not group slices by subject, so the groups are near-duplicate
clusters (`groups.collection_groups`). Cite Marcus et al., J Cogn Neurosci 2007, and the Kaggle dataset.
"""

from __future__ import annotations

from pathlib import Path

from braintumour.datasets import kaggle
from braintumour.datasets.source import NOTUMOR, Source, folder_holding, image_files, rows_frame

FOLDER = "train/NonDemented"


def list_rows(root: Path):
    folder = root / FOLDER
    if not folder.is_dir():
        raise kaggle.DatasetLayoutError(f"{root} does not have the OASIS release's layout: missing {FOLDER}/")
    return rows_frame([(f.relative_to(root).as_posix(), "axial", NOTUMOR, "notumor", "", "[]")
                       for f in image_files(folder)])


def members(root: Path) -> list[str]:
    """The NonDemented slices of the training split only (the other classes are not used)."""
    return [f.relative_to(root).as_posix() for f in image_files(root / FOLDER)]


SOURCE = Source(
    name="oasis",
    title="OASIS without dementia (skull-stripped T1)",
    dirname="alzheimers-mri-4-class",
    env="OASIS_SLICES_DIR",
    kaggle_dataset="tourist55/alzheimers-dataset-4-class-of-images",
    url_var="OASIS_SLICES_URL",
    list_rows=list_rows,
    root_in=folder_holding(lambda p: (p / FOLDER).is_dir(), FOLDER + "/"),
    members=members,
)
