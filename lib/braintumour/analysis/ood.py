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
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from braintumour import files
from braintumour.analysis.evaluate import predict_logits
from braintumour.training.models import BrainTumourCNN, LeNet5, MaskGuidedCNN

METHODS = ("mahalanobis", "energy", "knn")
KNN_NEIGHBOURS = 1  # the k of "knn" (experiments/ood_screen.py)
# The features a method reads by default: the penultimate layer's input, or every stage's statistics.
FEATURES = {"mahalanobis": "penultimate", "energy": "penultimate", "knn": "stages"}
FEATURE_KINDS = ("penultimate", "stages")
# The fitted arrays each method stores in its `.ood.npz`.
ARRAYS: dict[str, tuple[str, ...]] = {"mahalanobis": ("means", "precision"), "energy": (), "knn": ("bank",)}
MAX_VALIDATION_FLAGGED = 0.02  # the rule: at most 2% of validation images flagged unfamiliar
SCHEMA = 2


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
    """Channel means and (unbiased) standard deviations over the map. Through average pooling, which
    oneDNN runs on channels-last maps about 20 times faster than `Tensor.std` over two dimensions."""
    x = x.detach().float()
    n = x.shape[2] * x.shape[3]
    mean = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
    square = nn.functional.adaptive_avg_pool2d(x * x, 1).flatten(1)
    spread = ((square - mean * mean).clamp_min(0) * (n / max(n - 1, 1))).sqrt()
    return torch.cat([mean, spread], dim=1).cpu()


def _capture_penultimate(model: nn.Module, out: list[torch.Tensor]):
    return [penultimate_layer(model).register_forward_pre_hook(
        lambda _module, args: out.append(_pooled(args[0]).detach().float().cpu()))]


def _capture_stages(model: nn.Module, out: list[torch.Tensor]):
    per_stage: list[torch.Tensor] = []
    modules = stages(model)

    def keep(module: nn.Module, _args, output: torch.Tensor) -> None:
        per_stage.append(_statistics(output))
        if module is modules[-1]:
            out.append(torch.cat(per_stage, dim=1))
            per_stage.clear()

    return [m.register_forward_hook(keep) for m in modules]


@contextmanager
def captured_features(model: nn.Module, kinds: tuple[str, ...] = ("penultimate",)
                      ) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect the features of every forward pass inside the block, per kind, in order, from hooks, so
    that they come from the same pass as the logits (no second forward, no copy of the model's code):
    - "penultimate": a forward pre-hook on `penultimate_layer` (dropout sits before it, off in eval mode);
    - "stages": forward hooks on each of `stages`, each batch the stages' statistics side by side."""
    batches: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    capture = {"penultimate": _capture_penultimate, "stages": _capture_stages}
    hooks = [h for kind in kinds for h in capture[kind](model, batches[kind])]
    try:
        yield batches
    finally:
        for hook in hooks:
            hook.remove()


def logits_and_features(model: nn.Module, images: np.ndarray, batch_size: int = 64,
                        kinds: tuple[str, ...] = ("penultimate",)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits (N, 4), exactly `evaluate.predict_logits`'s, and features (N, D) of each of `kinds` of uint8
    images (N, H, W), from one forward pass per batch."""
    with captured_features(model, kinds) as batches:
        logits = predict_logits(model, images, batch_size)
    return logits, {kind: torch.cat(b).numpy() if b else np.zeros((0, feature_dim(model, kind)), dtype=np.float32)
                    for kind, b in batches.items()}


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


def detector(method: str, arrays: dict[str, np.ndarray] | None = None, neighbours: int = 0):
    """pytorch-ood's detector of `method` holding the fitted `arrays` (`ARRAYS[method]`; KNN's k:
    `neighbours`); for energy, its class (nothing is fitted)."""
    if method == "mahalanobis":
        return _mahalanobis(arrays["means"], arrays["precision"])
    if method == "knn":
        return _knn(arrays["bank"], neighbours)
    if method == "energy":
        from pytorch_ood.detector import EnergyBased

        return EnergyBased
    raise ValueError(f"unknown OOD method {method!r}; known: {', '.join(METHODS)}")


def score(method: str, logits: np.ndarray, features: np.ndarray, arrays: dict[str, np.ndarray] | None = None,
          neighbours: int = 0, fitted=None) -> np.ndarray:
    """Unfamiliar score per image, higher is more unfamiliar (float64, (N,)); `arrays` the fitted ones
    (`ARRAYS[method]`), `neighbours` the k of "knn"; `fitted`, `detector`'s object where it is at hand."""
    if len(logits) == 0:
        return np.zeros(0)
    fitted = detector(method, arrays, neighbours) if fitted is None else fitted
    if method == "energy":
        return fitted.score(torch.as_tensor(logits, dtype=torch.float64)).numpy()
    return fitted.predict_features(torch.as_tensor(features, dtype=torch.float32)).numpy().astype(np.float64)


def threshold_for_share(scores: np.ndarray, max_share: float = MAX_VALIDATION_FLAGGED) -> float:
    """The threshold t at which at most `max_share` of `scores` (validation) lie above it (flagged: score > t):
    the k+1-th largest score with k = floor(max_share * n). Ties at t stay unflagged, so never more than k."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(ranked) == 0:
        raise ValueError("no validation scores to set a threshold on")
    return float(ranked[min(math.floor(max_share * len(ranked)), len(ranked) - 1)])


# --------------------------------------------------------------------------- the fitted detector


@dataclass(frozen=True)
class Score:
    """One fitted score and its threshold: `method` on `features`, fitted `arrays` (`ARRAYS`), KNN's k
    (`neighbours`, 0 for the others), and the share of validation images above `threshold`."""

    method: str
    features: str
    neighbours: int
    threshold: float
    validation_flagged: float
    feature_dim: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def fitted(self):
        """pytorch-ood's detector, built once (KNN's index of the training features)."""
        return detector(self.method, self.arrays, self.neighbours)

    def __call__(self, logits: np.ndarray, features: dict[str, np.ndarray]) -> np.ndarray:
        """How far the score lies above the threshold, as a share of the threshold's size: above 0 is
        unfamiliar, 1 is twice the threshold (for the positive distances). Scores of any scale compare."""
        s = score(self.method, logits, features[self.features], fitted=self.fitted)
        return (s - self.threshold) / abs(self.threshold)


@dataclass(frozen=True)
class OodDetector:
    """What `predict` needs beside a model to flag unfamiliar images, and where it was fitted.

    An image is *unfamiliar* when any of `scores` is above its threshold; its unfamiliar score is the
    largest of them relative to its threshold (`Score.__call__`), so 0 is the line for every detector."""

    scores: tuple[Score, ...]
    fitted_on: str
    n_fit: int
    thresholded_on: str
    n_threshold: int
    max_validation_flagged: float
    validation_flagged: float
    data_fingerprint: str
    git_commit: str
    threshold: float = 0.0

    @property
    def kinds(self) -> tuple[str, ...]:
        """The features the scores read: pass them to `logits_and_features`."""
        return tuple(dict.fromkeys(s.features for s in self.scores))

    @property
    def method(self) -> str:
        return " or ".join(f"{s.method} on {s.features}" + (f" (k={s.neighbours})" if s.neighbours else "")
                           for s in self.scores)

    def apply(self, logits: np.ndarray, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The score and the unfamiliar flag per image."""
        s = np.max([part(logits, features) for part in self.scores], axis=0) if len(logits) else np.zeros(0)
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


def _stored_arrays(detector: OodDetector) -> dict[str, np.ndarray]:
    """Every score's arrays under `<position>.<name>`, in the dtypes stored."""
    return {f"{i}.{k}": np.asarray(s.arrays[k], dtype=ARRAY_DTYPES[k])
            for i, s in enumerate(detector.scores) for k in ARRAYS[s.method]}


def save_detector(model_path: Path, detector: OodDetector) -> Path:
    """Write the detector beside the model, atomically: the arrays first, then the JSON that names their
    checksum, so that a reader never pairs a new JSON with old arrays."""
    json_path, npz_path = ood_paths(model_path)
    record = {"schema": SCHEMA, **{k: v for k, v in asdict(detector).items() if k not in ("scores", "threshold")},
              "scores": [{k: v for k, v in asdict(s).items() if k != "arrays"} for s in detector.scores]}
    arrays = _stored_arrays(detector)
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files.write_bytes(npz_path, buffer.getvalue())
        record["arrays_sha256"] = _arrays_sha256(list(arrays.values()))
    else:
        npz_path.unlink(missing_ok=True)
    return files.write_json(json_path, record)


_FIELDS = {"fitted_on": str, "n_fit": int, "thresholded_on": str, "n_threshold": int,
           "max_validation_flagged": float, "validation_flagged": float, "data_fingerprint": str, "git_commit": str}
_SCORE_FIELDS = {"method": str, "features": str, "neighbours": int, "threshold": float, "validation_flagged": float,
                 "feature_dim": int}
ARRAY_DTYPES = {"means": np.float64, "precision": np.float64, "bank": np.float32}


def _checked_fields(path: Path, record: dict, fields: dict[str, type]) -> None:
    for name, kind in fields.items():
        value = record.get(name)
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
            raise OodFileError(f"{path}: field {name!r} is {value!r}, expected a finite {kind.__name__}")


def _checked_score(path: Path, record: object) -> dict:
    """One score's fields: present, typed, finite; a known method and features; KNN's k positive; a
    threshold other than 0 (scores are measured relative to its size)."""
    if not isinstance(record, dict):
        raise OodFileError(f"{path}: a score is {record!r}, expected an object")
    _checked_fields(path, record, _SCORE_FIELDS)
    if record["method"] not in METHODS:
        raise OodFileError(f"{path}: unknown method {record['method']!r} (known: {', '.join(METHODS)})")
    if record["features"] not in FEATURE_KINDS:
        raise OodFileError(f"{path}: unknown features {record['features']!r} (known: {', '.join(FEATURE_KINDS)})")
    if record["method"] == "knn" and record["neighbours"] < 1:
        raise OodFileError(f"{path}: field 'neighbours' is {record['neighbours']!r}, expected a positive integer")
    if record["threshold"] == 0:
        raise OodFileError(f"{path}: a threshold of 0; scores are measured relative to its size")
    return record


def _checked_record(path: Path) -> dict:
    """The JSON's fields, each present, of its type and finite; the schema known; at least one score."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise OodFileError(f"{path}: not an OOD file ({e})") from e
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise OodFileError(f"{path}: not an OOD file of schema {SCHEMA} (python -m braintumour ood-fit writes one)")
    _checked_fields(path, record, _FIELDS)
    if not isinstance(record.get("scores"), list) or not record["scores"]:
        raise OodFileError(f"{path}: field 'scores' is {record.get('scores')!r}, expected a list of scores")
    record["scores"] = [_checked_score(path, s) for s in record["scores"]]
    return record


def _expected_shapes(method: str, d: int) -> dict[str, tuple]:
    return {"mahalanobis": {"means": (None, d), "precision": (d, d)}, "knn": {"bank": (None, d)}, "energy": {}}[method]


def _checked_array(npz_path: Path, name: str, a: np.ndarray, shape: tuple) -> None:
    if a.ndim != 2 or any(want is not None and got != want for got, want in zip(a.shape, shape, strict=True)):
        raise OodFileError(f"{npz_path}: array {name!r} of shape {a.shape}; expected "
                           f"({', '.join('N' if w is None else str(w) for w in shape)})")
    if not np.isfinite(a).all():
        raise OodFileError(f"{npz_path}: array {name!r} holds non-finite values")


def _checked_arrays(npz_path: Path, record: dict) -> list[dict[str, np.ndarray]]:
    """Each score's arrays: shapes matching its feature size, finite, and the checksum the JSON names."""
    expected = [_expected_shapes(s["method"], s["feature_dim"]) for s in record["scores"]]
    if not any(expected):
        return [{} for _ in expected]
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = [{k: np.asarray(z[f"{i}.{k}"], dtype=ARRAY_DTYPES[k]) for k in shapes}
                      for i, shapes in enumerate(expected)]
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise OodFileError(f"{npz_path}: unreadable arrays ({e})") from e
    for i, shapes in enumerate(expected):
        for k, shape in shapes.items():
            _checked_array(npz_path, f"{i}.{k}", arrays[i][k], shape)
    if record.get("arrays_sha256") != _arrays_sha256([a for part in arrays for a in part.values()]):
        raise OodFileError(f"{npz_path}: arrays do not match the checksum in {npz_path.with_suffix('.json').name}")
    for s, part in zip(record["scores"], arrays, strict=True):
        if s["method"] == "knn" and len(part["bank"]) < s["neighbours"]:
            raise OodFileError(f"{npz_path}: {len(part['bank'])} training features, fewer than k = {s['neighbours']}")
    return arrays


def load_detector(model_path: Path) -> OodDetector | None:
    """The model's OOD detector, or None where no `.ood.json` sits beside it (no unfamiliar flag).
    OodFileError, naming the file and the fault, where it is there but unusable."""
    json_path, npz_path = ood_paths(model_path)
    if not json_path.is_file():
        return None
    record = _checked_record(json_path)
    arrays = _checked_arrays(npz_path, record)
    scores = tuple(Score(**{k: s[k] for k in _SCORE_FIELDS}, arrays=a) for s, a in zip(record["scores"], arrays,
                                                                                         strict=True))
    return OodDetector(scores=scores, **{k: record[k] for k in _FIELDS})


def check_model(detector: OodDetector, model: nn.Module, model_path: Path) -> None:
    """OodFileError where a score was fitted on features the model cannot give, or of another size."""
    for s in detector.scores:
        try:
            dim = feature_dim(model, s.features)
        except ValueError as e:
            raise OodFileError(f"{ood_paths(model_path)[0]}: {e}") from e
        if s.feature_dim != dim:
            raise OodFileError(f"{ood_paths(model_path)[0]}: fitted on {s.feature_dim} features, the model "
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


@dataclass(frozen=True)
class ScoreSpec:
    """A score to fit: `method` on `features` (KNN's k: `neighbours`), with `share` of the validation
    images allowed above its threshold."""

    method: str
    features: str
    share: float
    neighbours: int = 0


# What predict's models use (experiments/ood_screen.py): KNN on the stage statistics, which catches more
# of the errors on new collections, or Mahalanobis on the penultimate features, which catches the
# non-brain images KNN lets through; the 2% of validation shared between them.
DEFAULT_SCORES = (ScoreSpec("knn", "stages", 0.015, KNN_NEIGHBOURS), ScoreSpec("mahalanobis", "penultimate", 0.005))


def default_scores(model: nn.Module) -> tuple[ScoreSpec, ...]:
    """`DEFAULT_SCORES` where the model has stages, else Mahalanobis alone with the whole share."""
    try:
        stages(model)
    except ValueError:
        return (ScoreSpec("mahalanobis", "penultimate", MAX_VALIDATION_FLAGGED),)
    return DEFAULT_SCORES


def fit_detector(model: nn.Module, train: tuple[np.ndarray, np.ndarray], validation: np.ndarray,
                 specs: tuple[ScoreSpec, ...] | None = None, *, data_fingerprint: str = "",
                 git_commit: str = "") -> OodDetector:
    """Fit each score of `specs` (default: `default_scores`) on the training images `train` = (uint8
    images, labels) and threshold it on the validation images so that at most its `share` of them lies
    above; together they flag at most the sum of the shares."""
    specs = specs or default_scores(model)
    unknown = {s.method for s in specs} - set(METHODS)
    if unknown:
        raise ValueError(f"unknown OOD method {', '.join(sorted(unknown))}; known: {', '.join(METHODS)}")
    images, labels = train
    kinds = tuple(dict.fromkeys(s.features for s in specs))
    train_features = logits_and_features(model, images, 256, kinds)[1] if any(ARRAYS[s.method] for s in specs) else {}
    val_logits, val_features = logits_and_features(model, validation, 256, kinds)
    scores = tuple(_fit_score(model, spec, train_features, labels, val_logits, val_features) for spec in specs)
    detector = OodDetector(
        scores=scores, fitted_on="Kaggle Training, training part of the split", n_fit=len(images),
        thresholded_on="Kaggle Training, validation part of the split", n_threshold=len(validation),
        max_validation_flagged=round(sum(s.share for s in specs), 6), validation_flagged=0.0,
        data_fingerprint=data_fingerprint, git_commit=git_commit)
    return replace(detector, validation_flagged=float(detector.apply(val_logits, val_features)[1].mean()))


def _fit_score(model: nn.Module, spec: ScoreSpec, train_features: dict, labels: np.ndarray, val_logits: np.ndarray,
               val_features: dict) -> Score:
    arrays = fit_arrays(spec.method, train_features[spec.features], labels) if ARRAYS[spec.method] else {}
    val_scores = score(spec.method, val_logits, val_features[spec.features], arrays, spec.neighbours)
    threshold = threshold_for_share(val_scores, spec.share)
    if threshold == 0:
        raise ValueError(f"{spec.method} on {spec.features}: a threshold of 0 on validation; no relative score")
    return Score(method=spec.method, features=spec.features, neighbours=spec.neighbours, threshold=threshold,
                 validation_flagged=float((val_scores > threshold).mean()),
                 feature_dim=feature_dim(model, spec.features), arrays=arrays)


def single_score(method: str) -> tuple[ScoreSpec]:
    """`method` alone on its features (`FEATURES`), with the whole share of validation."""
    return (ScoreSpec(method, FEATURES[method], MAX_VALIDATION_FLAGGED, KNN_NEIGHBOURS if method == "knn" else 0),)


def fit_for_model(model_path: Path, method: str | None = None) -> OodDetector:
    """Fit the detector of a model file on the Kaggle set (its split, the model's image size), write it
    beside the model (`save_detector`) and return it: what `python -m braintumour ood-fit` runs. `method`
    alone, or by default `default_scores`."""
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
                            single_score(method) if method else None, data_fingerprint=kaggle.fingerprint,
                            git_commit=outputs.git_commit())
    save_detector(model_path, detector)
    return detector
