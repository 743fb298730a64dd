"""Br35H (Hamada, "Br35H :: Brain Tumor Detection 2020", Kaggle `ahmedhamada0/brain-tumor-detection`):
brain MRI slices collected from the web, labelled only tumour (`yes/`) or no tumour (`no/`). One of
the collections the Kaggle set was assembled from, so its leakage audit comes first (`external`).

Only `yes/` and `no/` are installed (the public release's unlabelled `pred/` is left out). The groups
are near-duplicate clusters (`groups.collection_groups`): the file names say nothing of patients.
"""

from __future__ import annotations

from pathlib import Path

from braintumour.config import BR35H_DIRNAME, BR35H_ENV, BR35H_FOLDERS, BR35H_KAGGLE_DATASET
from braintumour.datasets import kaggle
from braintumour.datasets.source import NOTUMOR, TUMOUR, Source, folder_holding, image_files, rows_frame

SPLIT = "Br35H"  # the manifest's split column, as the committed fingerprint has it


def list_rows(root: Path):
    """yes/ (a tumour of unknown type) and no/, sorted; both must be there and hold images."""
    missing = [f for f in BR35H_FOLDERS if not (root / f).is_dir()]
    if missing:
        raise kaggle.DatasetLayoutError(
            f"{root} does not have Br35H's layout: missing folder(s) {', '.join(f + '/' for f in missing)} "
            f"(expected {' and '.join(f + '/' for f in BR35H_FOLDERS)})")
    rows = [(p.relative_to(root).as_posix(), SPLIT, TUMOUR if f == "yes" else NOTUMOR, f, "", "[]")
            for f in BR35H_FOLDERS for p in image_files(root / f)]
    empty = [f for f in BR35H_FOLDERS if not any(r[3] == f for r in rows)]
    if empty:
        raise kaggle.DatasetLayoutError(f"{root}: no image in {', '.join(f + '/' for f in empty)}")
    return rows_frame(rows)


SOURCE = Source(
    name="br35h",
    title="Br35H (external collection)",
    dirname=BR35H_DIRNAME,
    env=BR35H_ENV,
    kaggle_dataset=BR35H_KAGGLE_DATASET,
    url_var="BR35H_URL",
    list_rows=list_rows,
    root_in=folder_holding(lambda p: all((p / f).is_dir() for f in BR35H_FOLDERS),
                           " and ".join(f + "/" for f in BR35H_FOLDERS)),
    members=lambda root: [p.relative_to(root).as_posix() for f in BR35H_FOLDERS for p in image_files(root / f)],
)
