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
- "knn": the distance to the k-th nearest training image in unit-normalised features (Sun et al., 2022,
  "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML), here on *stage statistics*: the
  channel mean and standard deviation of every stage's output, so that an image's look (contrast,
  skull, background) counts as well as what the last layer makes of it.
Higher is more unfamiliar for all three (pytorch-ood's convention). Which one predict's models use was
chosen on validation and on the collections' `tune` parts (`experiments/ood_screen.py`, docs/predict.md).

The fitted detector is stored beside the model, like the temperature (`calibration`):
`<model>.ood.json` (method, threshold, provenance, the arrays' SHA-256) and, for Mahalanobis and KNN,
`<model>.ood.npz` (class means and precision matrix; the training features). Both are written
atomically and checked on load.
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

METHODS = ("mahalanobis", "energy", "knn")
DEFAULT_METHOD = "knn"
KNN_NEIGHBOURS = 1  # the k of "knn" (experiments/ood_screen.py)
# The features a method reads by default: the penultimate layer's input, or every stage's statistics.
FEATURES = {"mahalanobis": "penultimate", "energy": "penultimate", "knn": "stages"}
FEATURE_KINDS = ("penultimate", "stages")
# The fitted arrays each method stores in its `.ood.npz`.
ARRAYS: dict[str, tuple[str, ...]] = {"mahalanobis": ("means", "precision"), "energy": (), "knn": ("bank",)}
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


def stages(model: nn.Module) -> list[nn.Module]:
    """The custom CNN's stem and four stages (the mask-guided CNN's too: it shares them), whose outputs'
    statistics are the "stages" features."""
    if isinstance(model, BrainTumourCNN):
        return [model.stem, model.stage1, model.stage2, model.stage3, model.stage4]
    raise ValueError(f"no stages registered for {type(model).__name__}; use --method mahalanobis or energy")


def feature_dim(model: nn.Module, kind: str) -> int:
    """The length of a model's feature vector of `kind` ("penultimate" or "stages")."""
    if kind == "penultimate":
        return penultimate_layer(model).weight.shape[1]
    return sum(2 * [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
               for stage in stages(model))


def _pooled(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


def _statistics(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float()
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1).cpu()


@contextmanager
def captured_features(model: nn.Module, kind: str = "penultimate") -> Iterator[list[torch.Tensor]]:
    """Collect the features of every forward pass inside the block, in order, from hooks, so that they
    come from the same pass as the logits (no second forward, no copy of the model's code):
    - "penultimate": a forward pre-hook on `penultimate_layer` (dropout sits before it, off in eval mode);
    - "stages": forward hooks on each of `stages`, each batch the stages' statistics side by side."""
    batches: list[torch.Tensor] = []
    if kind == "penultimate":
        hooks = [penultimate_layer(model).register_forward_pre_hook(
            lambda _module, args: batches.append(_pooled(args[0]).detach().float().cpu()))]
    else:
        per_stage: list[torch.Tensor] = []
        modules = stages(model)

        def keep(module: nn.Module, _args, output: torch.Tensor) -> None:
            per_stage.append(_statistics(output))
            if module is modules[-1]:
                batches.append(torch.cat(per_stage, dim=1))
                per_stage.clear()

        hooks = [m.register_forward_hook(keep) for m in modules]
    try:
        yield batches
    finally:
        for hook in hooks:
            hook.remove()


def logits_and_features(model: nn.Module, images: np.ndarray, batch_size: int = 64, kind: str = "penultimate"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, 4), exactly `evaluate.predict_logits`'s, and features (N, D) of `kind` of uint8 images
    (N, H, W), from one forward pass per batch."""
    with captured_features(model, kind) as batches:
        logits = predict_logits(model, images, batch_size)
    feats = torch.cat(batches).numpy() if batches else np.zeros((0, feature_dim(model, kind)), dtype=np.float32)
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


def _knn(bank: np.ndarray, neighbours: int):
    """pytorch-ood's KNN detector over the stored training features (it normalises them to unit length)."""
    from pytorch_ood.detector import KNN

    z = torch.as_tensor(bank, dtype=torch.float32)
    return KNN(None, k=neighbours).fit_features(z, torch.zeros(len(z), dtype=torch.long))


def score(method: str, logits: np.ndarray, features: np.ndarray, arrays: dict[str, np.ndarray] | None = None,
          neighbours: int = 0) -> np.ndarray:
    """Unfamiliar score per image, higher is more unfamiliar (float64, (N,)); `arrays` the fitted ones
    (`ARRAYS[method]`), `neighbours` the k of "knn"."""
    if len(logits) == 0:
        return np.zeros(0)
    z = torch.as_tensor(features, dtype=torch.float32)
    if method == "mahalanobis":
        return _mahalanobis(arrays["means"], arrays["precision"]).predict_features(z).numpy().astype(np.float64)
    if method == "knn":
        return _knn(arrays["bank"], neighbours).predict_features(z).numpy().astype(np.float64)
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

    An image is *unfamiliar* when its score is above `threshold`. `arrays` are the fitted ones the method
    needs (`ARRAYS`: Mahalanobis's class means and precision matrix, KNN's training features), stored in
    the `.ood.npz` beside the `.ood.json`; `neighbours` is KNN's k (0 for the others)."""

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
    neighbours: int = 0
    features: str = "penultimate"  # what `logits_and_features` gives the score (`FEATURE_KINDS`)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def score(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        return score(self.method, logits, features, self.arrays, self.neighbours)

    def apply(self, logits: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The score and the unfamiliar flag per image."""
        s = self.score(logits, features)
        return s, s > self.threshold


def ood_paths(model_path: Path) -> tuple[Path, Path]:
    """The files beside a model: `custom_cnn.pt` -> `custom_cnn.ood.json`, `custom_cnn.ood.npz`."""
    model_path = Path(model_path)
    return model_path.with_suffix(".ood.json"), model_path.with_suffix(".ood.npz")


def _arrays_sha256(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def save_detector(model_path: Path, detector: OodDetector) -> Path:
    """Write the detector beside the model, atomically: the arrays first, then the JSON that names their
    checksum, so that a reader never pairs a new JSON with old arrays."""
    json_path, npz_path = ood_paths(model_path)
    record = {"schema": SCHEMA, **{k: v for k, v in asdict(detector).items() if k != "arrays"}}
    names = ARRAYS[detector.method]
    if names:
        arrays = {k: np.asarray(detector.arrays[k], dtype=ARRAY_DTYPES[k]) for k in names}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files.write_bytes(npz_path, buffer.getvalue())
        record["arrays_sha256"] = _arrays_sha256(list(arrays.values()))
    else:
        npz_path.unlink(missing_ok=True)
    return files.write_json(json_path, record)


_FIELDS = {"method": str, "threshold": float, "fitted_on": str, "n_fit": int, "thresholded_on": str,
           "n_threshold": int, "max_validation_flagged": float, "validation_flagged": float, "feature_dim": int,
           "data_fingerprint": str, "git_commit": str}
ARRAY_DTYPES = {"means": np.float64, "precision": np.float64, "bank": np.float32}


def _checked_record(path: Path) -> dict:
    """The JSON's fields, each present, of its type and finite; the schema and method known; KNN's k a
    positive integer (absent for the other methods: 0)."""
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
    k = record.setdefault("neighbours", 0)
    if record["method"] == "knn" and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise OodFileError(f"{path}: field 'neighbours' is {k!r}, expected a positive integer for knn")
    if record.setdefault("features", "penultimate") not in FEATURE_KINDS:
        raise OodFileError(f"{path}: unknown features {record['features']!r} (known: {', '.join(FEATURE_KINDS)})")
    return record


def _expected_shapes(method: str, d: int) -> dict[str, tuple]:
    return {"mahalanobis": {"means": (None, d), "precision": (d, d)}, "knn": {"bank": (None, d)}}[method]


def _checked_arrays(npz_path: Path, record: dict) -> dict[str, np.ndarray]:
    """The method's arrays: shapes matching the JSON's feature size, finite, and the checksum it names."""
    expected = _expected_shapes(record["method"], record["feature_dim"])
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=ARRAY_DTYPES[k]) for k in expected}
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise OodFileError(f"{npz_path}: unreadable {record['method']} arrays ({e})") from e
    for k, shape in expected.items():
        a = arrays[k]
        if a.ndim != 2 or any(want is not None and got != want for got, want in zip(a.shape, shape, strict=True)):
            raise OodFileError(f"{npz_path}: array {k!r} of shape {a.shape}; expected "
                               f"({', '.join('N' if w is None else str(w) for w in shape)})")
        if not np.isfinite(a).all():
            raise OodFileError(f"{npz_path}: array {k!r} holds non-finite values")
    if record.get("arrays_sha256") != _arrays_sha256(list(arrays.values())):
        raise OodFileError(f"{npz_path}: arrays do not match the checksum in {npz_path.with_suffix('.json').name}")
    if record["method"] == "knn" and len(arrays["bank"]) < record["neighbours"]:
        raise OodFileError(f"{npz_path}: {len(arrays['bank'])} training features, "
                           f"fewer than k = {record['neighbours']}")
    return arrays


def load_detector(model_path: Path) -> OodDetector | None:
    """The model's OOD detector, or None where no `.ood.json` sits beside it (no unfamiliar flag).
    OodFileError, naming the file and the fault, where it is there but unusable."""
    json_path, npz_path = ood_paths(model_path)
    if not json_path.is_file():
        return None
    record = _checked_record(json_path)
    arrays = _checked_arrays(npz_path, record) if ARRAYS[record["method"]] else {}
    return OodDetector(**{k: record[k] for k in _FIELDS}, neighbours=record["neighbours"],
                       features=record["features"], arrays=arrays)


def check_model(detector: OodDetector, model: nn.Module, model_path: Path) -> None:
    """OodFileError where the detector was fitted on features the model cannot give, or of another size."""
    try:
        dim = feature_dim(model, detector.features)
    except ValueError as e:
        raise OodFileError(f"{ood_paths(model_path)[0]}: {e}") from e
    if detector.feature_dim != dim:
        raise OodFileError(f"{ood_paths(model_path)[0]}: fitted on {detector.feature_dim} features, the model "
                           f"gives {dim}; fit it again (python -m braintumour ood-fit --model {model_path})")


# --------------------------------------------------------------------------- fitting


def fit_arrays(method: str, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of `method` (`ARRAYS`) fitted on training features and labels."""
    if method == "mahalanobis":
        means, precision = fit_mahalanobis(features, labels)
        return {"means": means, "precision": precision}
    if method == "knn":
        return {"bank": np.asarray(features, dtype=np.float32)}
    return {}


def fit_detector(model: nn.Module, train: tuple[np.ndarray, np.ndarray], validation: np.ndarray,
                 method: str = DEFAULT_METHOD, *, data_fingerprint: str = "", git_commit: str = "",
                 max_share: float = MAX_VALIDATION_FLAGGED, neighbours: int = KNN_NEIGHBOURS,
                 features: str | None = None) -> OodDetector:
    """Fit on the training images `train` = (uint8 images, labels), threshold on the validation images so
    that at most `max_share` of them are flagged; `features` (default: the method's, `FEATURES`) what the
    score reads."""
    if method not in METHODS:
        raise ValueError(f"unknown OOD method {method!r}; known: {', '.join(METHODS)}")
    images, labels = train
    kind, k = features or FEATURES[method], neighbours if method == "knn" else 0
    arrays = fit_arrays(method, logits_and_features(model, images, 256, kind)[1], labels) if ARRAYS[method] else {}
    val_scores = score(method, *logits_and_features(model, validation, 256, kind), arrays, k)
    threshold = threshold_for_share(val_scores, max_share)
    return OodDetector(
        method=method, threshold=threshold, fitted_on="Kaggle Training, training part of the split",
        n_fit=len(images), thresholded_on="Kaggle Training, validation part of the split", n_threshold=len(validation),
        max_validation_flagged=max_share, validation_flagged=float((val_scores > threshold).mean()),
        feature_dim=feature_dim(model, kind), data_fingerprint=data_fingerprint,
        git_commit=git_commit, neighbours=k, features=kind, arrays=arrays)


def fit_for_model(model_path: Path, method: str | None = None) -> OodDetector:
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
    detector = fit_detector(model, (images[split.train], labels[split.train]), images[split.val],
                            method or DEFAULT_METHOD, data_fingerprint=kaggle.fingerprint,
                            git_commit=outputs.git_commit())
    save_detector(model_path, detector)
    return detector
