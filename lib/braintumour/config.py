"""The one place that decides names, order and paths that every other module imports (display
titles: `titles`)."""

from __future__ import annotations

import os
from pathlib import Path

# Class order is fixed once: label i means CLASSES[i] everywhere (arrays, metrics, figures).
CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
PARTIAL_LABEL = len(CLASSES)  # the label of an image known to hold a tumour of unknown type (Br35H `yes`)
# One seed for every bootstrap interval (evaluate, calibration, collection_scores), so an interval
# is the same wherever it is computed.
BOOTSTRAP_SEED = 12345
# Notebook 04's baselines, in table order (display titles: `titles`; a model's: `models.REGISTRY`).
BASELINES: tuple[str, ...] = ("vgg16_bn", "resnet50", "alexnet", "lenet5")
# A heatmap's scores against an expert mask (explain.score_heatmaps), in table order.
CAM_SCORES: tuple[str, ...] = ("pointing", "energy", "iou")
# The Kaggle set's split folders.
SPLITS: tuple[str, ...] = ("Training", "Testing")

# The counts the published archive has; validation compares against these.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "Training": {"glioma": 1321, "meningioma": 1339, "notumor": 1595, "pituitary": 1457},
    "Testing": {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300},
}
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

DATASET_DIRNAME = "brain-tumor-mri"
MASKS_DIRNAME = "brain-tumor-mri-masks"
PATIENTS_FILENAME = "brain-tumor-mri-patients.csv"
KAGGLE_DATASET = "masoudnickparvar/brain-tumor-mri-dataset"
# Br35H (external collection): found like the Kaggle set, `$BR35H_DIR` first; labels only yes/no.
BR35H_DIRNAME = "br35h"
BR35H_ENV = "BR35H_DIR"
BR35H_KAGGLE_DATASET = "ahmedhamada0/brain-tumor-detection"
BR35H_FOLDERS: tuple[str, ...] = ("yes", "no")
# The collections a model is tested for generalisation on (`braintumour.datasets`), in table order.
COLLECTIONS: tuple[str, ...] = ("brats", "br35h", "oasis", "openneuro")

# Input normalisation for every model: uint8 grey -> [0, 1] -> (x - mean) / std. The numbers are
# the Training split's pixel mean/std at 128 px (rounded); one constant keeps train, evaluation
# and the predict command identical.
PIXEL_MEAN = 0.178
PIXEL_STD = 0.193


def project_root() -> Path:
    """The repository root: `$BRAINTUMOUR_ROOT` if set, else two levels above this package."""
    env = os.environ.get("BRAINTUMOUR_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def interim_dir() -> Path:
    return project_root() / "data" / "interim"


def raw_dir() -> Path:
    return project_root() / "data" / "raw"


def reports_dir() -> Path:
    """Where notebooks write evidence. `BRAINTUMOUR_REPORTS` redirects smoke and test runs so
    they never overwrite the committed cpu-profile reports."""
    env = os.environ.get("BRAINTUMOUR_REPORTS")
    return Path(env).resolve() if env else project_root() / "reports"


def metrics_dir(override: Path | None = None) -> Path:
    """Where metrics files and records live: `override` if given, else reports/metrics/."""
    return override or reports_dir() / "metrics"
