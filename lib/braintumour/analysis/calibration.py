"""Calibrated probabilities and a flag for unsure predictions.

Temperature scaling (Guo et al., 2017): one scalar T per model, fitted on validation by minimising
the negative log-likelihood of softmax(logits / T); T changes confidences, never the argmax. The
calibration measures are torchmetrics' (ECE, classwise ECE) and scikit-learn's (log-loss, Brier).
Selective prediction (Geifman and El-Yaniv, 2017): a prediction whose calibrated top probability
falls below a threshold chosen on validation is flagged "uncertain".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from braintumour import files
from braintumour.config import BOOTSTRAP_SEED, CLASSES

N_BINS = 15
MAX_VALIDATION_RISK = 0.005  # the error a flagged-free prediction may carry on validation
TEMPERATURE_BOUNDS = (0.05, 20.0)
CALIBRATION_BOOTSTRAP = 1000  # draws per interval: each draw runs the four scores once


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises the mean negative log-likelihood of softmax(logits / T) on (logits, y);
    searched over log T, where the loss is smooth and unimodal in practice."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    bounds = np.log(TEMPERATURE_BOUNDS)
    return float(np.exp(minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5}).x))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def ece(y: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins (torchmetrics)."""
    # torchmetrics reads values outside [0, 1] as logits; a float sum can overshoot 1 by an ulp
    proba = np.clip(proba, 0.0, 1.0)
    return float(multiclass_calibration_error(torch.as_tensor(proba, dtype=torch.float64), torch.as_tensor(y),
                                              num_classes=proba.shape[1], n_bins=n_bins, norm="l1"))


def reliability_curve(y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Per-bin mean confidence, accuracy and count, for a reliability diagram."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": [], "bin_lower": [], "bin_upper": []}
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            out["confidence"].append(float(conf[sel].mean()))
            out["accuracy"].append(float(correct[sel].mean()))
            out["count"].append(int(sel.sum()))
            out["bin_lower"].append(float(edges[b]))
            out["bin_upper"].append(float(edges[b + 1]))
    return out


def classwise_ece(y: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    """Mean over classes of the ECE of each class's own probability against "is this class"
    (Kull et al., 2019): also checks the probabilities a user reads for the classes not predicted."""
    p, t = torch.as_tensor(np.clip(proba, 0.0, 1.0), dtype=torch.float64), torch.as_tensor(y)
    return float(np.mean([binary_calibration_error(p[:, k], (t == k).long(), n_bins=n_bins)
                          for k in range(proba.shape[1])]))


def calibration_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    labels = np.arange(proba.shape[1])
    return {"ece": ece(y, proba), "classwise_ece": classwise_ece(y, proba),
            "nll": float(log_loss(y, proba, labels=labels)),
            "brier": float(brier_score_loss(y, proba, labels=labels)),  # sum over classes, mean over images
            "accuracy": float((proba.argmax(1) == y).mean())}


def calibration_report(y: np.ndarray, proba: np.ndarray, n_boot: int = CALIBRATION_BOOTSTRAP,
                       seed: int = BOOTSTRAP_SEED) -> dict:
    """`calibration_scores` with percentile-bootstrap 95% intervals (images resampled), and n."""
    y, proba = np.asarray(y), np.asarray(proba)
    point = {"n": int(len(y)), **calibration_scores(y, proba)}
    if n_boot == 0:
        return point
    idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
    draws = bootstrap_scores(y, proba, idx)
    return point | {"ci95": {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                             for k, v in draws.items()}}


def _binned_gap(values: np.ndarray, hits: np.ndarray, idx: np.ndarray, dtype: type) -> np.ndarray:
    """ECE of each resample (rows of `idx`): sum over bins of |hits - confidence| / n, binned as
    torchmetrics bins (boundaries in `dtype`, a value in [b_i, b_i+1) in bin i, exactly 1.0 in a bin
    of its own). Its multiclass ECE bins the top confidence in float32, its binary ECE in float64."""
    values = values.astype(dtype)
    edges = torch.linspace(0, 1, N_BINS + 1, dtype=torch.float32 if dtype is np.float32 else torch.float64).numpy()
    bins = np.searchsorted(edges, values, side="right") - 1
    n_boot, n = idx.shape
    cells = (np.arange(n_boot)[:, None] * (N_BINS + 1) + bins[idx]).ravel()
    size = n_boot * (N_BINS + 1)
    gap = (np.bincount(cells, weights=hits[idx].ravel().astype(float), minlength=size)
           - np.bincount(cells, weights=values[idx].ravel().astype(float), minlength=size))
    return np.abs(gap.reshape(n_boot, -1)).sum(1) / n


def bootstrap_scores(y: np.ndarray, proba: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """`calibration_scores` of every resample `proba[idx[b]]`, all at once: the per-draw calls of the
    maintained implementations cost seconds per interval; a test holds these to them."""
    k = proba.shape[1]
    onehot = np.eye(k)[y]
    eps = np.finfo(proba.dtype).eps
    per_image = {"nll": -np.log(np.clip(proba[np.arange(len(y)), y], eps, 1 - eps)),
                 "brier": ((proba - onehot) ** 2).sum(1), "accuracy": (proba.argmax(1) == y).astype(float)}
    out = {"ece": _binned_gap(proba.max(1), per_image["accuracy"], idx, np.float32),
           "classwise_ece": np.mean([_binned_gap(proba[:, c], onehot[:, c], idx, np.float64) for c in range(k)],
                                    axis=0)}
    return out | {name: v[idx].mean(1) for name, v in per_image.items()}


def tumour_probability_report(proba: np.ndarray) -> dict:
    """For images known to hold a tumour of unknown type (Br35H `yes`): the calibration of the
    tumour-versus-no-tumour question, P(tumour) = 1 - P(notumor) against a label of 1."""
    p_tumour = 1.0 - proba[:, CLASSES.index("notumor")]
    two_class = np.stack([1.0 - p_tumour, p_tumour], axis=1)
    ones = np.ones(len(p_tumour), dtype=int)
    return {"n": int(len(p_tumour)), "mean_p_tumour": float(p_tumour.mean()),
            "nll": float(log_loss(ones, two_class, labels=[0, 1])),
            "brier": float(brier_score_loss(ones, p_tumour, pos_label=1)),
            "ece": float(binary_calibration_error(torch.as_tensor(p_tumour), torch.as_tensor(ones), n_bins=N_BINS))}


def risk_coverage(y: np.ndarray, proba: np.ndarray) -> dict[str, np.ndarray]:
    """Error among the k most confident predictions, for every k: the risk-coverage curve."""
    conf = proba.max(1)
    order = np.argsort(-conf, kind="stable")
    wrong = (proba.argmax(1) != y)[order]
    k = np.arange(1, len(y) + 1)
    return {"coverage": k / len(y), "risk": np.cumsum(wrong) / k, "confidence": conf[order]}


def threshold_for_risk(y: np.ndarray, proba: np.ndarray, max_risk: float = MAX_VALIDATION_RISK) -> float:
    """The lowest confidence threshold at which the predictions kept (confidence >= threshold) err at
    most `max_risk`: the largest coverage meeting the risk, taken on the set given (validation)."""
    curve = risk_coverage(y, proba)
    conf = curve["confidence"]
    # A threshold keeps every image of its confidence, so only the last of a run of ties can end a cut.
    ends = np.flatnonzero(np.append(conf[1:] < conf[:-1], True))
    ok = ends[curve["risk"][ends] <= max_risk]
    return float(conf[ok[-1]]) if len(ok) else float(np.nextafter(1.0, 2.0))  # none: every image flagged


def selective_scores(y: np.ndarray | None, proba: np.ndarray, threshold: float) -> dict:
    """Coverage (share not flagged) and, where labels are given, the error of the kept predictions."""
    kept = proba.max(1) >= threshold
    out = {"n": int(len(proba)), "coverage": float(kept.mean()), "flagged": int((~kept).sum())}
    if y is not None:
        wrong = proba.argmax(1) != y
        out |= {"error_kept": float(wrong[kept].mean()) if kept.any() else float("nan"),
                "error_all": float(wrong.mean()), "errors_flagged": int((wrong & ~kept).sum()),
                "errors": int(wrong.sum())}
    return out


def fit(logits: np.ndarray, y: np.ndarray, max_risk: float = MAX_VALIDATION_RISK) -> tuple[float, float]:
    """The temperature and the uncertain threshold, both fitted on (logits, y): validation."""
    t = fit_temperature(logits, y)
    return t, threshold_for_risk(y, probabilities(logits, t), max_risk)


def assess(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], tumours: str, temperature: float,
           threshold: float, fitted_on: str = "validation") -> dict:
    """Every labelled set scored before and after the temperature (`calibration_report`, with
    bootstrap intervals except on the fitting set) and at the threshold (`selective_scores`); the
    unlabelled tumour images `tumours` by `tumour_probability_report` and the share of their misses
    (*notumor* calls) that the flag marks."""
    out: dict = {"temperature": temperature, "uncertain_below": threshold, "fitted_on": fitted_on, "sets": {}}
    for name, y in labels.items():
        before, after = probabilities(logits[name], 1.0), probabilities(logits[name], temperature)
        n_boot = 0 if name == fitted_on else CALIBRATION_BOOTSTRAP
        out["sets"][name] = {"before": calibration_report(y, before, n_boot),
                             "after": calibration_report(y, after, n_boot),
                             "selective": selective_scores(y, after, threshold)}
    before, after = probabilities(logits[tumours], 1.0), probabilities(logits[tumours], temperature)
    missed, flagged = after.argmax(1) == CLASSES.index("notumor"), after.max(1) < threshold
    caught = int((missed & flagged).sum())
    out["sets"][tumours] = {"before": tumour_probability_report(before), "after": tumour_probability_report(after),
                            "selective": selective_scores(None, after, threshold)
                            | {"misses": int(missed.sum()), "misses_flagged": caught,
                               "share_of_misses_flagged": caught / int(missed.sum()) if missed.any() else None}}
    return out


@dataclass(frozen=True)
class Calibration:
    """What `predict` needs beside a model: its temperature and the uncertain flag's threshold,
    and where both were fitted."""

    temperature: float
    uncertain_below: float
    fitted_on: str
    n_images: int
    max_validation_risk: float
    data_fingerprint: str
    git_commit: str

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and the uncertain flag per image."""
        proba = probabilities(logits, self.temperature)
        return proba, proba.max(1) < self.uncertain_below


def calibration_path(model_path: Path) -> Path:
    """The calibration file that sits beside a model: `custom_cnn.pt` -> `custom_cnn.calibration.json`."""
    return model_path.with_suffix(".calibration.json")


def save_calibration(model_path: Path, calibration: Calibration) -> Path:
    return files.write_json(calibration_path(model_path), asdict(calibration))


class CalibrationError(ValueError):
    """A calibration file sits beside a model but cannot be trusted: unreadable, not the schema, or
    holding values no fit produces."""


def load_calibration(model_path: Path) -> Calibration | None:
    """The model's calibration, or None where no file sits beside it (an uncalibrated model).

    A file that is there is checked before use, and refused by name (CalibrationError) when broken,
    never ignored: a temperature of 0 or NaN makes every probability NaN, a negative one reverses the
    ranking, a threshold outside [0, 1] flags every image or none."""
    path = calibration_path(model_path)
    try:
        if not (path.exists() or path.is_symlink()):
            return None
        fields = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CalibrationError(f"{path}: calibration file cannot be read ({e.strerror or e})") from e
    except ValueError as e:  # not UTF-8, not JSON
        raise CalibrationError(f"{path}: not a calibration file ({e}); notebook 09 writes it") from e
    problem = calibration_problem(fields)
    if problem:
        raise CalibrationError(f"{path}: calibration file refused: {problem}; notebook 09 writes a valid one")
    return Calibration(**fields)


def calibration_problem(fields: object) -> str | None:
    """What is wrong with a calibration file's content (parsed JSON), or None: the schema (the fields
    of `Calibration`, no more, no fewer) and the ranges. The temperature must lie in the range
    `fit_temperature` searches, TEMPERATURE_BOUNDS, so it is finite and positive; the threshold in
    [0, 1], or one ulp above 1, `threshold_for_risk`'s value for "flag every image"."""
    if not isinstance(fields, dict):
        return f"holds a JSON {type(fields).__name__}, not an object"
    names = [f.name for f in dataclass_fields(Calibration)]
    missing, extra = [n for n in names if n not in fields], sorted(set(fields) - set(names))
    if missing or extra:
        return "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                       extra and f"unknown field(s) {', '.join(map(str, extra))}"]))
    ranges = {"temperature": TEMPERATURE_BOUNDS, "uncertain_below": (0.0, float(np.nextafter(1.0, 2.0))),
              "max_validation_risk": (0.0, 1.0)}
    for name, (low, high) in ranges.items():
        v = fields[name]
        if not _is_number(v) or not low <= v <= high:  # NaN fails every comparison
            return f"{name} is {v!r}, not a number in [{low:g}, {high:g}]"
    if not _is_number(fields["n_images"]) or not float(fields["n_images"]).is_integer() or fields["n_images"] < 1:
        return f"n_images is {fields['n_images']!r}, not a positive whole number"
    wrong = [n for n in ("fitted_on", "data_fingerprint", "git_commit") if not isinstance(fields[n], str)]
    return f"{wrong[0]} is {fields[wrong[0]]!r}, not text" if wrong else None


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
