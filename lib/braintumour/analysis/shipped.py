"""The saved models notebook 11 scores, the Grad-CAM it scores against tumour boxes, and the shipped
model: the generalised recipe's selected seed, saved with its calibration beside it for `predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from braintumour.analysis import calibration
from braintumour.analysis.evaluate import predict_logits, predict_proba
from braintumour.config import CLASSES
from braintumour.reporting import outputs
from braintumour.training.checkpoints import (
    SavedModelMissing,
    load_checkpoint,
    model_file,
    save_checkpoint,
    saved_model,
)
from braintumour.training.models import MODEL_TITLES, REGISTRY, written_by
from braintumour.training.runs import RunResult

if TYPE_CHECKING:
    from braintumour.analysis.ood import OodDetector

SHIPPED = "custom_cnn_generalised"
# Every saved model of the compendium and the notebook that writes it, in table order.
SCORED: dict[str, str] = {name: written_by(name) for name in (*REGISTRY, "custom_cnn_external")}
TUMOUR_CLASSES = [i for i, c in enumerate(CLASSES) if c != "notumor"]


def saved_models(names: dict[str, str] = SCORED) -> dict[str, torch.nn.Module]:
    """The saved models present, by id; each absent one is named with the notebook that writes it."""
    out = {}
    for name in names:
        try:
            out[name] = load_checkpoint(saved_model(name))[0]
        except SavedModelMissing as e:
            print(f"{MODEL_TITLES[name]}: {e}; left out")
    return out


def tumour_cams(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Grad-CAM for each image's most probable tumour class, whatever the prediction: where the model
    sees tumour evidence, comparable between a model that finds the tumour and one that misses it."""
    from braintumour.analysis.explain import CamExplainer

    target = np.array(TUMOUR_CLASSES)[predict_proba(model, images)[:, TUMOUR_CLASSES].argmax(1)]
    with CamExplainer(model, "gradcam") as cam:
        return cam(images, target)


def validation_accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict_proba(model, images).argmax(1) == labels).mean())


# What the shipped model's unfamiliar score is fitted on: every image it trained on, so that a slice like
# a collection's `train` part is familiar (chosen on the `tune` parts: experiments/shipped_flags.py).
TRAINED_ON = "every image the model trained on: Kaggle Training's training part and each collection's train part"


def fit_flags(model: torch.nn.Module, trained: tuple[np.ndarray, np.ndarray],
              validation: tuple[np.ndarray, np.ndarray], fingerprint: str
              ) -> tuple[calibration.Calibration, OodDetector]:
    """What `predict` reads beside the shipped model: the temperature and uncertain threshold fitted on the
    Kaggle validation images (as notebook 09 fits them for the others), and the out-of-distribution
    detector (`ood.default_scores`) fitted on the images it `trained` on (`Pool.trained_images`),
    thresholded on Kaggle validation."""
    from braintumour.analysis import ood

    val_images, val_labels = validation
    temperature, threshold = calibration.fit(predict_logits(model, val_images), val_labels)
    fitted = calibration.Calibration(
        temperature=temperature, uncertain_below=threshold, fitted_on="validation", n_images=len(val_labels),
        max_validation_risk=calibration.MAX_VALIDATION_RISK, data_fingerprint=fingerprint,
        git_commit=outputs.git_commit())
    return fitted, ood.fit_detector(model, trained, val_images, data_fingerprint=fingerprint,
                                    git_commit=outputs.git_commit(), fitted_on=TRAINED_ON)


def ship(run: RunResult, seed: int, flags: tuple[calibration.Calibration, OodDetector], fingerprint: str,
         profile: str) -> Path:
    """Save the run's model as `SHIPPED` with what `predict` reads beside it: `flags`, the calibration and
    out-of-distribution detector `fit_flags` gives."""
    from braintumour.analysis import ood_files

    path = model_file(SHIPPED)
    save_checkpoint(path, run.model, run.config, extra={"seed": seed, "data_fingerprint": fingerprint,
                                                        "git_commit": outputs.git_commit(), "profile": profile})
    calibration.save_calibration(path, flags[0])
    ood_files.save_detector(path, flags[1])
    return path


def withdraw() -> None:
    """Remove a shipped model that no longer meets its targets, and the files beside it."""
    from braintumour.analysis.ood_files import ood_paths

    path = model_file(SHIPPED)
    for file in (path, calibration.calibration_path(path), *ood_paths(path)):
        file.unlink(missing_ok=True)
