"""The one place that decides names, order and paths that every other module imports."""

from __future__ import annotations

import os
from pathlib import Path

# Class order is fixed once: label i means CLASSES[i] everywhere (arrays, metrics, figures).
CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
# One seed for every bootstrap interval (evaluate, calibration, collection_scores), so an interval
# is the same wherever it is computed.
BOOTSTRAP_SEED = 12345
CLASS_TITLES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary",
}
# Model titles, and the notebook that saves each model: `models.REGISTRY` (one `ModelSpec` per architecture).
BASELINES: tuple[str, ...] = ("vgg16_bn", "resnet50", "alexnet", "lenet5")  # notebook 04's, in table order
SOURCE_GROUP_TITLES: dict[str, str] = {"size_512": "512 x 512", "other_size": "other size"}
# Notebook 07's ablation rows and the held-out subsets of the patient-disjoint folds.
GUIDED_VARIANT_TITLES: dict[str, str] = {"plain": "plain custom CNN (notebook 03/05)",
                                         "architecture": "(a) architecture", "mask_term": "(b) + mask term",
                                         "centred_blob": "centred blob"}
SUBSET_TITLES: dict[str, str] = {"all": "all images", "figshare": "figshare (patient known)"}
# Notebook 06's Grad-CAM: which held-out images, and what made the maps.
HELD_OUT_TITLES: dict[str, str] = {"unseen_folds": "unseen-patient folds", "official_testing": "official Testing"}
CAM_SOURCE_TITLES: dict[str, str] = {"custom_cnn": "custom CNN", "centred_blob": "centred blob"}
# A heatmap's scores against an expert mask (explain.score_heatmaps), in table order.
CAM_SCORES: tuple[str, ...] = ("pointing", "energy", "iou")
# Where a heatmap's mass goes (explain.energy_by_region).
REGION_TITLES: dict[str, str] = {"tumour": "tumour", "other_head": "other head", "outside_head": "outside head",
                                 "border_band": "border band", "empty_maps": "empty maps"}
SPLITS: tuple[str, ...] = ("Training", "Testing")
# Near-duplicate pairs (audit.describe_pairs): both images in one split, or one in each.
PAIR_KIND_TITLES: dict[str, str] = {"within_training": "within Training", "within_testing": "within Testing",
                                    "training_testing": "across Training-Testing"}

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
COLLECTION_TITLES: dict[str, str] = {"kaggle_testing": "Kaggle Testing", "brats": "BraTS 2021 (gliomas)",
                                     "br35h": "Br35H (tumours)", "oasis": "OASIS (healthy)",
                                     "openneuro": "OpenNeuro ds000177 (healthy)"}

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
