"""The "unfamiliar" score: how far an image's features lie from the training images' features.

A classifier's probabilities say which of four classes an image most resembles; they say nothing about
whether the image resembles any of them. An out-of-distribution (OOD) score does: computed from the
model's own penultimate features (or logits) on every prediction, fitted on the Kaggle training images,
thresholded on validation so that at most `MAX_VALIDATION_FLAGGED` of validation images are flagged.

Detectors are pytorch-ood's (Kirchheim et al., 2022, "PyTorch-OOD: A Library for Out-of-Distribution
Detection based on PyTorch", CVPR Workshops):
- "mahalanobis": half the squared Mahalanobis distance of the penultimate features to the nearest class
  mean, one covariance shared by the classes (Lee et al., 2018, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS).
- "energy": the free energy -logsumexp(logits) (Liu et al., 2020, "Energy-based Out-of-distribution
  Detection", NeurIPS); needs no fitting beyond the threshold.
Higher is more unfamiliar for both (pytorch-ood's convention). Which one each model uses is chosen by a
measured comparison (docs/predict.md): Mahalanobis for every committed model.

The fitted detector is stored beside the model, like the temperature (`calibration`):
`<model>.ood.json` (method, threshold, provenance, the arrays' SHA-256) and, for Mahalanobis,
`<model>.ood.npz` (class means and precision matrix). Both are written atomically and checked on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from braintumour import files
from braintumour.analysis.evaluate import predict_logits
from braintumour.training.models import BrainTumourCNN, LeNet5, MaskGuidedCNN

METHODS = ("mahalanobis", "energy")
DEFAULT_METHOD = "mahalanobis"
MAX_VALIDATION_FLAGGED = 0.02  # the rule: at most 2% of validation images flagged unfamiliar
SCHEMA = 1


class OodFileError(ValueError):
    """An OOD sidecar beside a model is unreadable, inconsistent or holds non-finite values."""


# --------------------------------------------------------------------------- features


def penultimate_layer(model: nn.Module) -> nn.Module:
    """The layer whose *input* is the model's penultimate features: the final linear map to the logits.

    - custom CNN: the head's Linear (its input is the globally pooled 128 features);
    - mask-guided CNN: the 1x1 classifier conv; its input is the 128 x 16 x 16 map, and since a 1x1 conv
      commutes with the spatial mean, the mean of that map is exactly the feature vector its logits are
      linear in (`features_of` averages it);
    - LeNet-5: the last Linear (input: the 84 features after the second dense layer).
    """
    if isinstance(model, MaskGuidedCNN):  # before BrainTumourCNN: it is a subclass
        return model.classifier
    if isinstance(model, BrainTumourCNN):
        return model.head[-1]
    if isinstance(model, LeNet5):
        return model.classifier[-1]
    raise ValueError(f"no penultimate layer registered for {type(model).__name__}")


def _pooled(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


@contextmanager
def captured_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the penultimate features of every forward pass inside the block, in order: a forward
    pre-hook on `penultimate_layer`, so the features come from the same pass as the logits (no second
    forward, no copy of the model's code). Dropout sits before that layer but is off in eval mode."""
    batches: list[torch.Tensor] = []
    hook = penultimate_layer(model).register_forward_pre_hook(
        lambda _module, args: batches.append(_pooled(args[0]).detach().float().cpu()))
    try:
        yield batches
    finally:
        hook.remove()


def logits_and_features(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, 4), exactly `evaluate.predict_logits`'s, and penultimate features (N, D) of uint8
    images (N, H, W), from one forward pass per batch."""
    with captured_features(model) as batches:
        logits = predict_logits(model, images, batch_size)
    dim = penultimate_layer(model).weight.shape[1]
    feats = torch.cat(batches).numpy() if batches else np.zeros((0, dim), dtype=np.float32)
    return logits, feats


# --------------------------------------------------------------------------- scores


def _mahalanobis(means: np.ndarray, precision: np.ndarray):
    """pytorch-ood's Mahalanobis detector holding the stored class means and precision matrix."""
    from pytorch_ood.detector import Mahalanobis

    detector = Mahalanobis(None)
    detector.mu = torch.as_tensor(means, dtype=torch.float32)
    detector.precision = torch.as_tensor(precision, dtype=torch.float32)
    return detector


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, D) and the shared precision matrix (D, D) of training features, by pytorch-ood.

    pytorch-ood's covariance is the scatter matrix (the sum of the centred outer products, not divided by
    N; its source says so); the precision is multiplied by N here so that the score is half the squared
    Mahalanobis distance in the features' own units, whatever the number of training images."""
    from pytorch_ood.detector import Mahalanobis

    detector = Mahalanobis(None).fit_features(torch.as_tensor(features, dtype=torch.float32),
                                              torch.as_tensor(labels, dtype=torch.long))
    return detector.mu.numpy().astype(np.float64), detector.precision.numpy().astype(np.float64) * len(features)


def score(method: str, logits: np.ndarray, features: np.ndarray, means: np.ndarray | None = None,
          precision: np.ndarray | None = None) -> np.ndarray:
    """Unfamiliar score per image, higher is more unfamiliar (float64, (N,))."""
    if len(logits) == 0:
        return np.zeros(0)
    if method == "mahalanobis":
        z = torch.as_tensor(features, dtype=torch.float32)
        return _mahalanobis(means, precision).predict_features(z).numpy().astype(np.float64)
    if method == "energy":
        from pytorch_ood.detector import EnergyBased

        return EnergyBased.score(torch.as_tensor(logits, dtype=torch.float64)).numpy()
    raise ValueError(f"unknown OOD method {method!r}; known: {', '.join(METHODS)}")


def threshold_for_share(scores: np.ndarray, max_share: float = MAX_VALIDATION_FLAGGED) -> float:
    """The threshold t at which at most `max_share` of `scores` (validation) lie above it (flagged: score > t):
    the k+1-th largest score with k = floor(max_share * n). Ties at t stay unflagged, so never more than k."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(ranked) == 0:
        raise ValueError("no validation scores to set a threshold on")
    return float(ranked[min(math.floor(max_share * len(ranked)), len(ranked) - 1)])


# --------------------------------------------------------------------------- the fitted detector


@dataclass(frozen=True)
class OodDetector:
    """What `predict` needs beside a model to flag unfamiliar images, and where it was fitted.

    An image is *unfamiliar* when its score is above `threshold`. `means` and `precision` are the
    Mahalanobis parameters (None for energy), stored in the `.ood.npz` beside the `.ood.json`."""

    method: str
    threshold: float
    fitted_on: str
    n_fit: int
    thresholded_on: str
    n_threshold: int
    max_validation_flagged: float
    validation_flagged: float
    feature_dim: int
    data_fingerprint: str
    git_commit: str
    means: np.ndarray | None = field(default=None, repr=False, compare=False)
    precision: np.ndarray | None = field(default=None, repr=False, compare=False)

    def score(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        return score(self.method, logits, features, self.means, self.precision)

    def apply(self, logits: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The score and the unfamiliar flag per image."""
        s = self.score(logits, features)
        return s, s > self.threshold


def ood_paths(model_path: Path) -> tuple[Path, Path]:
    """The files beside a model: `custom_cnn.pt` -> `custom_cnn.ood.json`, `custom_cnn.ood.npz`."""
    model_path = Path(model_path)
    return model_path.with_suffix(".ood.json"), model_path.with_suffix(".ood.npz")


def _arrays_sha256(means: np.ndarray, precision: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (means, precision):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def save_detector(model_path: Path, detector: OodDetector) -> Path:
    """Write the detector beside the model, atomically: the arrays first, then the JSON that names their
    checksum, so that a reader never pairs a new JSON with old arrays."""
    json_path, npz_path = ood_paths(model_path)
    record = {"schema": SCHEMA, **{k: v for k, v in asdict(detector).items() if k not in ("means", "precision")}}
    if detector.method == "mahalanobis":
        means = np.asarray(detector.means, dtype=np.float64)
        precision = np.asarray(detector.precision, dtype=np.float64)
        buffer = io.BytesIO()
        np.savez(buffer, means=means, precision=precision)
        files.write_bytes(npz_path, buffer.getvalue())
        record["arrays_sha256"] = _arrays_sha256(means, precision)
    else:
        npz_path.unlink(missing_ok=True)
    return files.write_json(json_path, record)


_FIELDS = {"method": str, "threshold": float, "fitted_on": str, "n_fit": int, "thresholded_on": str,
           "n_threshold": int, "max_validation_flagged": float, "validation_flagged": float, "feature_dim": int,
           "data_fingerprint": str, "git_commit": str}


def _checked_record(path: Path) -> dict:
    """The JSON's fields, each present, of its type and finite; the schema and method known."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise OodFileError(f"{path}: not an OOD file ({e})") from e
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise OodFileError(f"{path}: not an OOD file of schema {SCHEMA}")
    for name, kind in _FIELDS.items():
        value = record.get(name)
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
            raise OodFileError(f"{path}: field {name!r} is {value!r}, expected a finite {kind.__name__}")
    if record["method"] not in METHODS:
        raise OodFileError(f"{path}: unknown method {record['method']!r} (known: {', '.join(METHODS)})")
    return record


def _checked_arrays(npz_path: Path, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """The Mahalanobis arrays: shapes matching the JSON's feature size, finite, and the checksum it names."""
    d = record["feature_dim"]
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            means, precision = np.asarray(z["means"], dtype=np.float64), np.asarray(z["precision"], dtype=np.float64)
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise OodFileError(f"{npz_path}: unreadable Mahalanobis arrays ({e})") from e
    if means.ndim != 2 or means.shape[1] != d or precision.shape != (d, d):
        raise OodFileError(f"{npz_path}: arrays of shapes {means.shape}, {precision.shape}; "
                           f"expected (C, {d}), ({d}, {d})")
    if not (np.isfinite(means).all() and np.isfinite(precision).all()):
        raise OodFileError(f"{npz_path}: arrays hold non-finite values")
    if record.get("arrays_sha256") != _arrays_sha256(means, precision):
        raise OodFileError(f"{npz_path}: arrays do not match the checksum in {npz_path.with_suffix('.json').name}")
    return means, precision


def load_detector(model_path: Path) -> OodDetector | None:
    """The model's OOD detector, or None where no `.ood.json` sits beside it (no unfamiliar flag).
    OodFileError, naming the file and the fault, where it is there but unusable."""
    json_path, npz_path = ood_paths(model_path)
    if not json_path.is_file():
        return None
    record = _checked_record(json_path)
    arrays = _checked_arrays(npz_path, record) if record["method"] == "mahalanobis" else (None, None)
    return OodDetector(**{k: record[k] for k in _FIELDS}, means=arrays[0], precision=arrays[1])


def check_model(detector: OodDetector, model: nn.Module, model_path: Path) -> None:
    """OodFileError where the detector was fitted on features of another size than the model gives."""
    dim = penultimate_layer(model).weight.shape[1]
    if detector.feature_dim != dim:
        raise OodFileError(f"{ood_paths(model_path)[0]}: fitted on {detector.feature_dim} features, the model "
                           f"gives {dim}; fit it again (python -m braintumour ood-fit --model {model_path})")


# --------------------------------------------------------------------------- fitting


def fit_detector(model: nn.Module, train: tuple[np.ndarray, np.ndarray], validation: np.ndarray,
                 method: str = DEFAULT_METHOD, *, data_fingerprint: str = "", git_commit: str = "",
                 max_share: float = MAX_VALIDATION_FLAGGED) -> OodDetector:
    """Fit on the training images `train` = (uint8 images, labels), threshold on the validation images so
    that at most `max_share` of them are flagged."""
    if method not in METHODS:
        raise ValueError(f"unknown OOD method {method!r}; known: {', '.join(METHODS)}")
    images, labels = train
    means = precision = None
    if method == "mahalanobis":
        means, precision = fit_mahalanobis(logits_and_features(model, images, 256)[1], labels)
    val_scores = score(method, *logits_and_features(model, validation, 256), means, precision)
    threshold = threshold_for_share(val_scores, max_share)
    return OodDetector(
        method=method, threshold=threshold, fitted_on="Kaggle Training, training part of the split",
        n_fit=len(images), thresholded_on="Kaggle Training, validation part of the split", n_threshold=len(validation),
        max_validation_flagged=max_share, validation_flagged=float((val_scores > threshold).mean()),
        feature_dim=penultimate_layer(model).weight.shape[1], data_fingerprint=data_fingerprint,
        git_commit=git_commit, means=means, precision=precision)


def fit_for_model(model_path: Path, method: str = DEFAULT_METHOD) -> OodDetector:
    """Fit the detector of a model file on the Kaggle set (its split, the model's image size), write it
    beside the model (`save_detector`) and return it: what `python -m braintumour ood-fit` runs."""
    from braintumour.datasets import splits
    from braintumour.datasets.kaggle import load_dataset, load_images
    from braintumour.reporting import outputs
    from braintumour.training.checkpoints import load_checkpoint

    model, payload = load_checkpoint(model_path)
    kaggle = load_dataset()
    images = load_images(kaggle, payload["config"]["image_size"])
    labels = kaggle.manifest.label.to_numpy()
    split = splits.load_split(kaggle)
    detector = fit_detector(model, (images[split.train], labels[split.train]), images[split.val], method,
                            data_fingerprint=kaggle.fingerprint, git_commit=outputs.git_commit())
    save_detector(model_path, detector)
    return detector
