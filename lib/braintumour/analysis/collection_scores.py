"""How a model does on a collection: tumours detected, tumour-free images left alone, and the ranking
of the two (AUROC), each with a 95% bootstrap interval that resamples groups (patients, subjects or
near-duplicate clusters), not images, since slices of one person are not independent. And Grad-CAM
against the tumour boxes a collection has (pointing game inside a box; `images.box_masks`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from braintumour.config import BOOTSTRAP_SEED, CLASSES

NOTUMOR = CLASSES.index("notumor")
RESAMPLES = 2000


def _group_resamples(groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, draws): each image's group index, and RESAMPLES x n_groups group draws with replacement."""
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    draws = np.random.default_rng(seed).integers(0, n_groups, (RESAMPLES, n_groups))
    return inverse, draws


def rate(hits: np.ndarray, groups: np.ndarray, seed: int = BOOTSTRAP_SEED) -> dict:
    """Share of hits, with a percentile interval over group resamples, the images and the groups."""
    hits = np.asarray(hits, dtype=float)
    if len(hits) == 0:
        return {"value": float("nan"), "ci95": [float("nan")] * 2, "n": 0, "groups": 0}
    inverse, draws = _group_resamples(groups, seed)
    per_group_hits = np.bincount(inverse, hits)
    per_group_n = np.bincount(inverse).astype(float)
    counts = np.apply_along_axis(np.bincount, 1, draws, minlength=len(per_group_n))
    boot = (counts @ per_group_hits) / (counts @ per_group_n)
    return {"value": float(hits.mean()), "ci95": [float(v) for v in np.percentile(boot, [2.5, 97.5])],
            "n": len(hits), "groups": len(per_group_n)}


def auroc(tumour_score: np.ndarray, is_tumour: np.ndarray, groups: np.ndarray, seed: int = BOOTSTRAP_SEED) -> dict:
    """AUROC of a tumour score for tumour against tumour-free images, with a group-resampled
    interval (resamples holding one label only are skipped)."""
    inverse, draws = _group_resamples(groups, seed)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
    boot = []
    for draw in draws:
        idx = np.concatenate([members[g] for g in draw])
        if is_tumour[idx].min() != is_tumour[idx].max():
            boot.append(roc_auc_score(is_tumour[idx], tumour_score[idx]))
    return {"value": float(roc_auc_score(is_tumour, tumour_score)),
            "ci95": [float(v) for v in np.percentile(boot, [2.5, 97.5])], "n": len(is_tumour),
            "groups": len(members)}


def is_tumour(labels: np.ndarray) -> np.ndarray:
    """True for a tumour label, of a known type or not."""
    return np.asarray(labels) != NOTUMOR


def score(proba: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """`detected` (called any tumour class) on tumour images, `specificity` (called *notumor*) on
    tumour-free ones, and `auroc` of P(tumour) = 1 - P(notumor) where both are present."""
    tumour, called = is_tumour(labels), proba.argmax(1) != NOTUMOR
    out = {}
    if tumour.any():
        out["detected"] = rate(called[tumour], groups[tumour])
    if (~tumour).any():
        out["specificity"] = rate(~called[~tumour], groups[~tumour])
    if tumour.any() and (~tumour).any():
        out["auroc"] = auroc(1 - proba[:, NOTUMOR], tumour, groups)
    return out


def pointing_in_boxes(heatmaps: np.ndarray, masks: np.ndarray, groups: np.ndarray) -> dict:
    """Pointing game with no tolerance: the heatmap's maximum inside a tumour box (`rate`)."""
    from braintumour.analysis.explain import pointing_game

    hits = np.array([pointing_game(h, m) for h, m in zip(heatmaps, masks, strict=True)])
    return rate(hits, groups)



# Looks with both labels across collections: where a ranking of tumour against tumour-free means something.
LOOKS: dict[str, tuple[str, ...]] = {"skull_stripped": ("brats", "oasis"), "with_skull": ("br35h", "openneuro")}


def kaggle_scores(proba: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and *notumor* recall on Kaggle images, and the tumour scores (every image its own group)."""
    pred = proba.argmax(1)
    return {"accuracy": float((pred == labels).mean()),
            "notumor_recall": float((pred[labels == NOTUMOR] == NOTUMOR).mean()),
            **score(proba, labels, np.arange(len(labels)))}


def model_scores(model, collections: dict, part: str, kaggle_testing: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> dict:
    """A model on one part of each collection (`generalisation.Collection`): `score`, BraTS's detection
    per plane, AUROC per look of `LOOKS` whose collections are all given, and, with `kaggle_testing`
    (images, labels), Kaggle Testing."""
    from braintumour.analysis.evaluate import predict_proba

    out, rows, probas = {}, {}, {}
    if kaggle_testing is not None:
        out["kaggle_testing"] = kaggle_scores(predict_proba(model, kaggle_testing[0]), kaggle_testing[1])
    for name, c in collections.items():
        rows[name] = c.rows(part)
        probas[name] = predict_proba(model, rows[name]["images"])
        out[name] = score(probas[name], rows[name]["labels"], rows[name]["groups"])
        if len(set(rows[name]["looks"])) > 1:
            out[name]["by_look"] = {look: score(probas[name][rows[name]["looks"] == look],
                                                rows[name]["labels"][rows[name]["looks"] == look],
                                                rows[name]["groups"][rows[name]["looks"] == look])
                                    for look in sorted(set(rows[name]["looks"]))}
    for look, members in LOOKS.items():
        if all(m in collections for m in members):
            labels = np.concatenate([rows[m]["labels"] for m in members])
            proba = np.concatenate([probas[m] for m in members])
            out.setdefault("looks", {})[look] = auroc(1 - proba[:, NOTUMOR], is_tumour(labels),
                                                      np.concatenate([rows[m]["groups"] for m in members]))
    return out


def tumour_calls_by(model, collection, part: str, key) -> pd.DataFrame:
    """Images and the share called a tumour, by `key(path)` (a slice level, say) over a part's rows."""
    from braintumour.analysis.evaluate import predict_proba

    rows = collection.rows(part)
    called = predict_proba(model, rows["images"]).argmax(1) != NOTUMOR
    keys = [key(p) for p in collection.dataset.manifest.path.to_numpy()[collection.parts[part]]]
    frame = pd.DataFrame({"level": keys, "called tumour": called})
    return frame.groupby("level")["called tumour"].agg(images="size", called_tumour="mean")
