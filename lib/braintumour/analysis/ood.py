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
  skull, background) counts as well as what the last layer makes of it; or on the *thumbnail*: the
  model's input averaged down to `THUMBNAIL_SIDE` pixels a side less its own mean, so that the distance
  is one of the image's layout (plane, skull, crop) whatever its brightness.
Higher is more unfamiliar for all three (pytorch-ood's convention). Which one predict's models use was
chosen on validation and on the collections' `tune` parts (`experiments/ood_screen.py`, docs/predict.md).

The fitted detector is stored beside the model (`ood_files`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from braintumour.analysis.evaluate import predict_logits
from braintumour.training.models import BrainTumourCNN, LeNet5, MaskGuidedCNN

METHODS = ("mahalanobis", "energy", "knn")
KNN_NEIGHBOURS = 1  # the k of "knn" (experiments/ood_screen.py)
# The features a method reads by default: the penultimate layer's input, or every stage's statistics.
FEATURES = {"mahalanobis": "penultimate", "energy": "penultimate", "knn": "stages"}
FEATURE_KINDS = ("penultimate", "stages", "thumbnail")
THUMBNAIL_SIDE = 16
# The fitted arrays each method stores in its `.ood.npz`.
ARRAYS: dict[str, tuple[str, ...]] = {"mahalanobis": ("means", "precision"), "energy": (), "knn": ("bank",)}
MAX_VALIDATION_FLAGGED = 0.02  # the rule: at most 2% of validation images flagged unfamiliar
# KNN's training features are kept (and stored beside the model) in half precision: the sidecar of the
# default scores stays near 10 MB instead of 21, and the threshold is set on the bank as it is stored.
BANK_DTYPE = np.float16


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
    """The length of a model's feature vector of `kind` (`FEATURE_KINDS`)."""
    if kind == "penultimate":
        return penultimate_layer(model).weight.shape[1]
    if kind == "thumbnail":
        return THUMBNAIL_SIDE * THUMBNAIL_SIDE
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


def _thumbnail(x: torch.Tensor) -> torch.Tensor:
    small = nn.functional.adaptive_avg_pool2d(x.detach().float(), THUMBNAIL_SIDE).flatten(1)
    return (small - small.mean(dim=1, keepdim=True)).cpu()


def _capture_thumbnail(model: nn.Module, out: list[torch.Tensor]):
    return [model.register_forward_pre_hook(lambda _module, args: out.append(_thumbnail(args[0])))]


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
    - "stages": forward hooks on each of `stages`, each batch the stages' statistics side by side;
    - "thumbnail": a forward pre-hook on the model, its input averaged down (`_thumbnail`)."""
    batches: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    capture = {"penultimate": _capture_penultimate, "stages": _capture_stages, "thumbnail": _capture_thumbnail}
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

    z = torch.from_numpy(np.ascontiguousarray(bank)).float()  # torch widens half precision 3 times faster
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
    threshold: ClassVar[float] = 0.0  # every score is relative to its own threshold (`Score.__call__`)

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


# --------------------------------------------------------------------------- fitting


def fit_arrays(method: str, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of `method` (`ARRAYS`) fitted on training features and labels."""
    if method == "mahalanobis":
        means, precision = fit_mahalanobis(features, labels)
        return {"means": means, "precision": precision}
    if method == "knn":
        return {"bank": np.asarray(features, dtype=BANK_DTYPE)}
    return {}


@dataclass(frozen=True)
class ScoreSpec:
    """A score to fit: `method` on `features` (KNN's k: `neighbours`), with `share` of the validation
    images allowed above its threshold."""

    method: str
    features: str
    share: float
    neighbours: int = 0


# What predict's models use (experiments/ood_screen.py): KNN on the stage statistics or KNN on the
# thumbnail, the 2% of validation shared between them. Each flags errors on new collections the other
# misses, and together they flag every non-brain image the input check lets through.
DEFAULT_SCORES = (ScoreSpec("knn", "stages", 0.01, KNN_NEIGHBOURS), ScoreSpec("knn", "thumbnail", 0.01, KNN_NEIGHBOURS))


def default_scores(model: nn.Module) -> tuple[ScoreSpec, ...]:
    """`DEFAULT_SCORES` where the model has stages, else Mahalanobis alone with the whole share."""
    try:
        stages(model)
    except ValueError:
        return (ScoreSpec("mahalanobis", "penultimate", MAX_VALIDATION_FLAGGED),)
    return DEFAULT_SCORES


KAGGLE_TRAINING = "Kaggle Training, training part of the split"


def fit_detector(model: nn.Module, train: tuple[np.ndarray, np.ndarray], validation: np.ndarray,
                 specs: tuple[ScoreSpec, ...] | None = None, *, data_fingerprint: str = "",
                 git_commit: str = "", fitted_on: str = KAGGLE_TRAINING) -> OodDetector:
    """Fit each score of `specs` (default: `default_scores`) on the training images `train` = (uint8
    images, labels; `fitted_on` says which) and threshold it on the validation images so that at most its
    `share` of them lies above; together they flag at most the sum of the shares."""
    specs = specs or default_scores(model)
    images, labels = train
    kinds = tuple(dict.fromkeys(s.features for s in specs))
    train_features = logits_and_features(model, images, 256, kinds)[1] if any(ARRAYS[s.method] for s in specs) else {}
    return fit_on_features(model, specs, (train_features, labels), logits_and_features(model, validation, 256, kinds),
                           data_fingerprint=data_fingerprint, git_commit=git_commit, fitted_on=fitted_on)


def fit_on_features(model: nn.Module, specs: tuple[ScoreSpec, ...], train: tuple[dict, np.ndarray],
                    validation: tuple[np.ndarray, dict], *, data_fingerprint: str = "", git_commit: str = "",
                    fitted_on: str = KAGGLE_TRAINING) -> OodDetector:
    """`fit_detector` on features already extracted: `train` = (features by kind, labels), `validation`
    = (logits, features by kind), as `logits_and_features` gives them."""
    unknown = {s.method for s in specs} - set(METHODS)
    if unknown:
        raise ValueError(f"unknown OOD method {', '.join(sorted(unknown))}; known: {', '.join(METHODS)}")
    (train_features, labels), (val_logits, val_features) = train, validation
    scores = tuple(_fit_score(model, spec, train_features, labels, val_logits, val_features) for spec in specs)
    detector = OodDetector(
        scores=scores, fitted_on=fitted_on, n_fit=len(labels),
        thresholded_on="Kaggle Training, validation part of the split", n_threshold=len(val_logits),
        max_validation_flagged=round(sum(s.share for s in specs), 6), validation_flagged=0.0,
        data_fingerprint=data_fingerprint, git_commit=git_commit)
    return replace(detector, validation_flagged=float(detector.apply(val_logits, val_features)[1].mean()))


def _fit_score(model: nn.Module, spec: ScoreSpec, train_features: dict, labels: np.ndarray, val_logits: np.ndarray,
               val_features: dict) -> Score:
    arrays = fit_arrays(spec.method, train_features.get(spec.features), labels)
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
