"""Classification metrics, bootstrap confidence intervals and paired tests.

Everything that scikit-learn or scipy already computes comes from them; this module only
arranges the results into one plain dictionary per evaluation.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
    roc_auc_score,
)

from braintumour.analysis.calibration import N_BINS, ece
from braintumour.config import BOOTSTRAP_SEED, CLASSES
from braintumour.training.device import model_device
from braintumour.training.transforms import to_input

N_BOOTSTRAP = 2000


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits (N, 4) for uint8 images (N, H, W), in eval mode, in batches, on the device the model is
    on (`device.choose_device` decided it when the model was loaded); the images stay on the host and
    move a batch at a time.

    Model and batches are put in channels-last memory layout, the one oneDNN's CPU convolutions run
    fastest in (training already uses it); the model is converted in place, as training does.
    """
    model.eval().to(memory_format=torch.channels_last)
    device, out = model_device(model), []
    for start in range(0, len(images), batch_size):
        x = to_input(torch.from_numpy(images[start : start + batch_size])).to(device)
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), dtype=np.float32)


def predict_proba(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, 4), uncalibrated (`calibration` applies a model's temperature)."""
    return torch.softmax(torch.from_numpy(predict_logits(model, images, batch_size)), dim=1).numpy()


def images_per_second(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 64, repeats: int = 3, max_images: int = 512
) -> float:
    """Median batched inference throughput (images/s) on the current device and threads.

    Timed on the first `max_images` images: a rate does not depend on which images, and timing all of
    Testing three times cost VGG-16 minutes of the notebook for no extra information.
    """
    images = images[:max_images]
    predict_proba(model, images[:batch_size], batch_size)  # warm-up: oneDNN picks kernels once
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_proba(model, images, batch_size)
        rates.append(len(images) / (time.perf_counter() - t0))
    return float(np.median(rates))


def _headline(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 from one confusion matrix.

    Computed with numpy rather than three scikit-learn calls because the bootstrap calls it
    thousands of times; a test checks it against scikit-learn.
    """
    k = len(CLASSES)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    diag = np.diag(cm).astype(float)
    rows, cols = cm.sum(axis=1), cm.sum(axis=0)
    present = rows > 0
    f1 = np.divide(2 * diag, rows + cols, out=np.zeros(k), where=(rows + cols) > 0)
    return {
        "accuracy": float(diag.sum() / cm.sum()),
        "balanced_accuracy": float((diag[present] / rows[present]).mean()),
        "macro_f1": float(f1.mean()),
    }


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for accuracy, balanced accuracy and macro-F1 (test images resampled)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws = {k: [] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, v in _headline(y_true[idx], y_pred[idx]).items():
            draws[k].append(v)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for k, v in draws.items()}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, *, with_ci: bool = True) -> dict:
    """Accuracy, balanced accuracy, macro/per-class P/R/F1, ROC-AUC, confusion matrix, ECE, 95% CIs."""
    y_true = np.asarray(y_true)
    y_pred = proba.argmax(axis=1)
    labels = np.arange(len(CLASSES))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = np.unique(y_true)
    auc = {}
    for i, c in enumerate(CLASSES):
        if i in present and len(present) > 1:
            auc[c] = float(roc_auc_score(y_true == i, proba[:, i]))
    out = {
        "n": int(len(y_true)),
        **_headline(y_true, y_pred),
        "macro_precision": float(p.mean()),
        "macro_recall": float(r.mean()),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(CLASSES)
        },
        "roc_auc_ovr": auc,
        "roc_auc_macro": float(np.mean(list(auc.values()))) if auc else float("nan"),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "ece": ece(y_true, proba, N_BINS),
        "errors": int((y_pred != y_true).sum()),
    }
    if with_ci:
        out["ci95"] = bootstrap_ci(y_true, y_pred)
    return out


def headline_present(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 over the classes present in `y_true` only: for subsets
    that lack a class (the figshare images have no *notumor*), where a four-class macro-F1 would count
    the absent class as an F1 of zero."""
    y_true = np.asarray(y_true)
    y_pred = proba.argmax(axis=1)
    present = np.unique(y_true)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "classes": [CLASSES[i] for i in present],
    }


def recall_by_group(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray,
                    group_names: dict[int, str]) -> dict[str, dict[str, float]]:
    """Per class, recall within each group that has images of it (`{class: {group: recall}}`): where
    an average hides a subgroup the model fails (`splits.source_groups`)."""
    return {name: {g_name: float((y_pred[sel] == c).mean())
                   for g, g_name in group_names.items() if (sel := (y_true == c) & (groups == g)).any()}
            for c, name in enumerate(CLASSES) if (y_true == c).any()}


def images_by_group(y_true: np.ndarray, groups: np.ndarray, group_names: dict[int, str]) -> dict[str, dict[str, int]]:
    """Per class, the images in each group that has any (`{class: {group: n}}`): the denominators of
    `recall_by_group`."""
    return {name: {g_name: n for g, g_name in group_names.items() if (n := int(((y_true == c) & (groups == g)).sum()))}
            for c, name in enumerate(CLASSES) if (y_true == c).any()}


def recall_by_group_over_seeds(y_true: np.ndarray, probas: dict, groups: np.ndarray,
                               group_names: dict[int, str]) -> dict[str, dict[str, float]]:
    """`recall_by_group` of each seed's predictions (`probas`: seed -> (N, 4) probabilities), averaged
    over seeds."""
    per_seed = [recall_by_group(y_true, p.argmax(1), groups, group_names) for p in probas.values()]
    return {c: {g: float(np.mean([r[c][g] for r in per_seed])) for g in by_group}
            for c, by_group in per_seed[0].items()}


def recall_by_source(models: dict, test_proba: dict, images: np.ndarray, labels: np.ndarray, split,
                     groups: np.ndarray, group_names: dict[int, str]) -> dict[str, dict]:
    """`recall_by_group_over_seeds` on Testing (`test_proba`: seed -> probabilities of `split.test`,
    already predicted) and on the validation images (each seed's model in `models` predicts them here),
    with `images_by_group` beside: `{"testing": {"recall": ..., "images": ...}, "validation": ...}`.
    Validation comes from Training, so a class whose web-collected images are its weak spot in both has
    learnt the archive's shortcut rather than met a hard test set."""
    val_proba = {s: predict_proba(m, images[split.val]) for s, m in models.items()}
    return {where: {"recall": recall_by_group_over_seeds(labels[idx], p, groups[idx], group_names),
                    "images": images_by_group(labels[idx], groups[idx], group_names)}
            for where, idx, p in (("testing", split.test, test_proba), ("validation", split.val, val_proba))}


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test for two classifiers on the same images (Dietterich, 1998).

    b = A right and B wrong, c = A wrong and B right; p is the two-sided binomial test of b vs c.
    """
    a_ok = pred_a == y_true
    b_ok = pred_b == y_true
    b = int((a_ok & ~b_ok).sum())
    c = int((~a_ok & b_ok).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p}


def mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1")


def summarise_over_seeds(per_seed: dict[int, dict]) -> dict:
    """Mean, sd, min and max over seeds of the headline metrics and of per-class recall."""
    out = {
        k: {**mean_sd([m[k] for m in per_seed.values()]), "per_seed": {s: m[k] for s, m in per_seed.items()}}
        for k in HEADLINE
    }
    out["per_class_recall"] = {c: mean_sd([m["per_class"][c]["recall"] for m in per_seed.values()]) for c in CLASSES}
    return out


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of the mean of per-image values (scores, hits)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return [float(np.percentile(means, (1 - level) / 2 * 100)), float(np.percentile(means, (1 + level) / 2 * 100))]
