"""The external collection, Br35H: its manifest, its leakage audit against the Kaggle set and within
itself, the external test set, and tumour-detection rates.

Br35H labels only "tumour" (`yes/`) or "no tumour" (`no/`), and the Kaggle set was assembled partly
from it, so the audit comes first: a Br35H image that is a Kaggle file, or a near-copy of one (the
leakage audit's perceptual hash and threshold, `audit.NEAR_DUPLICATE_BITS`), says nothing about new
data. What is left is split by near-duplicate cluster, so copies never straddle the parts:
`train` (variant (b)'s partial labels), `tune` (for choosing between variants) and `test` (reported).
No code here depends on how many images the copy holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from braintumour.config import CLASSES, PARTIAL_LABEL
from braintumour.datasets import audit
from braintumour.datasets import br35h as br35h_source
from braintumour.datasets.kaggle import Dataset, load_images
from braintumour.datasets.splits import Split, class_weights, refit_split
from braintumour.reporting import readable
from braintumour.training.recipes import TrainConfig, custom_cnn_config
from braintumour.training.runs import RunResult, train_or_load

NOTUMOR = CLASSES.index("notumor")
TUMOUR_UNKNOWN = PARTIAL_LABEL  # the label of a Br35H `yes` image: a tumour of unknown type
PART_FRACTIONS = {"train": 0.5, "tune": 0.15, "test": 0.35}  # of the external `yes` clusters
PART_SEED = 2020


def load_br35h(root: Path | None = None) -> Dataset:
    """Br35H as a `kaggle.Dataset` (`datasets.br35h`): split "Br35H", class "yes" or "no", label
    `TUMOUR_UNKNOWN` or notumor; so the decoded-image cache and the fingerprint work as for the Kaggle set."""
    return br35h_source.SOURCE.load(root)


def audit_against_kaggle(br35h: Dataset, br35h_hashes: np.ndarray, kaggle: Dataset,
                         kaggle_hashes: np.ndarray, threshold: int = audit.NEAR_DUPLICATE_BITS) -> pd.DataFrame:
    """One row per Br35H file: is it a Kaggle file (same bytes), its nearest Kaggle image (path,
    split, class, Hamming distance), is that a near-copy, and its near-duplicate cluster within
    Br35H; a cluster with any member that is a Kaggle file or near-copy is `kaggle_cluster`."""
    by_sha = kaggle.manifest.drop_duplicates("sha256").set_index("sha256")
    both = np.concatenate([br35h_hashes, kaggle_hashes])
    n = len(br35h_hashes)
    dist, nearest = audit.nearest_neighbours(both, np.arange(n), np.arange(n, len(both)))
    nearest_row = kaggle.manifest.iloc[nearest - n]
    clusters = audit.duplicate_clusters(n, audit.near_duplicate_pairs(br35h_hashes, threshold))
    frame = pd.DataFrame({
        "path": br35h.manifest.path.to_numpy(),
        "folder": br35h.manifest.class_name.to_numpy(),
        "kaggle_file": br35h.manifest.sha256.isin(by_sha.index).to_numpy(),
        "nearest_kaggle": nearest_row.path.to_numpy(),
        "nearest_kaggle_split": nearest_row.split.to_numpy(),
        "nearest_kaggle_class": nearest_row.class_name.to_numpy(),
        "kaggle_distance": dist,
        "cluster": clusters,
    })
    frame["near_kaggle"] = frame.kaggle_file | (frame.kaggle_distance <= threshold)
    frame["kaggle_cluster"] = frame.groupby("cluster").near_kaggle.transform("any")
    return frame


def audit_summary(frame: pd.DataFrame) -> dict:
    """Counts per folder: files, Kaggle files, near-copies, the Kaggle class their nearest copy has,
    and how many distinct images (clusters) have no copy in the Kaggle set."""
    out = {}
    for folder, f in frame.groupby("folder"):
        near = f[f.near_kaggle]
        fresh = f[~f.kaggle_cluster]
        out[folder] = {
            "files": len(f),
            "kaggle_files": int(f.kaggle_file.sum()),
            "near_copies_of_kaggle": int(f.near_kaggle.sum()),
            "kaggle_class_of_copies": near.nearest_kaggle_class.value_counts().to_dict(),
            "kaggle_split_of_copies": near.nearest_kaggle_split.value_counts().to_dict(),
            "clusters": int(f.cluster.nunique()),
            "clusters_without_kaggle_copy": int(fresh.cluster.nunique()),
            "files_without_kaggle_copy": len(fresh),
        }
    return out


def audit_and_parts(kaggle: Dataset, br35h: Dataset, limit: int | None = None
                    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The audit of Br35H against the Kaggle set, on perceptual hashes at the leakage audit's image
    size, and the external parts built on it (`external_parts`)."""
    from braintumour.datasets.folds import AUDIT_IMAGE_SIZE

    frame = audit_against_kaggle(br35h, audit.perceptual_hashes(load_images(br35h, AUDIT_IMAGE_SIZE)),
                                 kaggle, audit.perceptual_hashes(load_images(kaggle, AUDIT_IMAGE_SIZE)))
    return frame, external_parts(frame, limit=limit)


def external_parts(frame: pd.DataFrame, seed: int = PART_SEED, limit: int | None = None) -> dict[str, np.ndarray]:
    """Br35H row indices of the external sets. `yes` clusters with no Kaggle copy are split by
    cluster into `PART_FRACTIONS`; `train` keeps every member of its clusters (near-copies of each
    other are extra views, never tested), `tune` and `test` one image per cluster; `all`: one image
    per such cluster, whatever its part (for models that never trained on Br35H). `no_test`: one
    image per `no` cluster with no Kaggle copy (the external no-tumour images, if any). `limit`
    keeps at most that many of each (the smoke profile)."""
    fresh = frame[~frame.kaggle_cluster]
    yes = fresh[fresh.folder == "yes"]
    clusters = np.random.default_rng(seed).permutation(np.sort(yes.cluster.unique()))
    cut = np.cumsum([round(PART_FRACTIONS[k] * len(clusters)) for k in ("train", "tune")])
    part_of = dict.fromkeys(clusters[: cut[0]], "train") | dict.fromkeys(clusters[cut[0] : cut[1]], "tune")
    part = yes.cluster.map(lambda c: part_of.get(c, "test"))
    first = ~yes.cluster.duplicated()
    no = fresh[fresh.folder == "no"]
    parts = {
        "train": yes.index[part == "train"].to_numpy(),
        "tune": yes.index[(part == "tune") & first].to_numpy(),
        "test": yes.index[(part == "test") & first].to_numpy(),
        "all": yes.index[first].to_numpy(),
        "no_test": no.index[~no.cluster.duplicated()].to_numpy(),
    }
    return {k: v[:limit] for k, v in parts.items()}


def audit_sentence(summary: dict) -> str:
    """What the audit says about the two collections, in words, from `audit_summary`."""
    yes, no = summary.get("yes", {}), summary.get("no", {})
    notumor_copies = no.get("kaggle_class_of_copies", {}).get("notumor", 0)
    return (f"Of Br35H's {no.get('files', 0)} `no` files, {no.get('kaggle_files', 0)} are byte-for-byte Kaggle files "
            f"and {no.get('near_copies_of_kaggle', 0)} are Kaggle files or near-copies of one ({notumor_copies} of "
            "them *notumor*): the Kaggle *notumor* class is, for the most part, Br35H's `no` folder, so a model "
            "trained on it has learnt what Br35H's no-tumour images look like. Of its "
            f"{yes.get('files', 0)} `yes` files, {yes.get('near_copies_of_kaggle', 0)} are Kaggle files or near-copies "
            f"({readable.listing(yes.get('kaggle_class_of_copies', {}))}); "
            f"{yes.get('clusters_without_kaggle_copy', 0)} distinct "
            "images (near-duplicate clusters) have no copy in the Kaggle set: the external tumour images. "
            f"{no.get('clusters_without_kaggle_copy', 0)} `no` clusters have none: there are "
            f"{'no' if not no.get('clusters_without_kaggle_copy') else no['clusters_without_kaggle_copy']} external "
            "no-tumour images.")


@dataclass(frozen=True)
class Detection:
    """How many images a model called a tumour (any of the three tumour classes)."""

    detected: float
    ci95: tuple[float, float]
    n: int
    predicted_mix: dict[str, float]

    def as_dict(self) -> dict:
        return {"detected": self.detected, "detected_ci95": list(self.ci95), "n": self.n,
                "predicted_mix": self.predicted_mix}


def detection(pred: np.ndarray, seed: int = 12345) -> Detection:
    """Tumour-detection rate of predictions (class indices) on tumour images, with a 95% percentile
    bootstrap interval (scipy), and the share of each predicted class."""
    hit = (np.asarray(pred) != NOTUMOR).astype(float)
    if len(hit) < 2 or hit.min() == hit.max():
        ci = (float(hit.mean()), float(hit.mean())) if len(hit) else (float("nan"), float("nan"))
    else:
        res = bootstrap((hit,), np.mean, n_resamples=2000, method="percentile", random_state=seed)
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    mix = {c: float((np.asarray(pred) == i).mean()) if len(hit) else 0.0 for i, c in enumerate(CLASSES)}
    return Detection(float(hit.mean()) if len(hit) else float("nan"), ci, len(hit), mix)


# Variants of the custom CNN meant to generalise to other collections; notebook 03's recipe otherwise.
VARIANTS: dict[str, dict] = {
    "randomised": {"randomise": {}},  # (a) Kaggle images only, acquisition and contrast randomised
    "partial_label": {"partial_label_weight": 1.0},  # (b) + Br35H `train` images as "a tumour, type unknown"
}


def variant_config(params: dict, name: str, seed: int) -> TrainConfig:
    """A variant's recipe: `recipes.custom_cnn_config` with the variant's fields."""
    return custom_cnn_config(params, seed, **VARIANTS[name])


def with_partial_labels(images: np.ndarray, labels: np.ndarray, split: Split, extra_images: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, Split]:
    """Kaggle images and labels with `extra_images` appended as tumours of unknown type, and the
    split with them added to its training rows (validation and Testing unchanged)."""
    n = len(images)
    return (np.concatenate([images, extra_images]),
            np.concatenate([labels, np.full(len(extra_images), TUMOUR_UNKNOWN, dtype=labels.dtype)]),
            Split(np.concatenate([split.train, n + np.arange(len(extra_images))]), split.val, split.test))


def train_variant(params: dict, name: str, seed: int, kaggle: Dataset, images: np.ndarray, split: Split,
                  br35h: Dataset, br35h_train_images: np.ndarray, *, retrain: bool = False,
                  progress: bool = True) -> RunResult:
    """One seed of a variant through the run cache. The partial-label variant's key also holds the
    Br35H fingerprint, as its training images do."""
    cfg = variant_config(params, name, seed)
    labels = kaggle.manifest.label.to_numpy()
    weights = class_weights(labels[split.train], cfg.class_weighting)  # the four classes' Kaggle counts
    fingerprint = kaggle.fingerprint
    if cfg.partial_label_weight is not None:
        images, labels, split = with_partial_labels(images, labels, split, br35h_train_images)
        fingerprint = f"{kaggle.fingerprint}+{br35h.fingerprint}"
    return train_or_load(cfg, images, labels, split, weights, fingerprint, retrain=retrain, progress=progress)


# --------------------------------------------------------------------------- what the misses share

T2_BRIGHT_RATIO = 1.3  # brightest fifth of the brain against its median: above this, fluid is bright


def refit_model(params: dict, seed: int, kaggle: Dataset, images: np.ndarray, split: Split) -> RunResult:
    """Notebook 03's refit of `seed` (Training and validation, last epoch kept), under notebook 03's
    config and so its run key: reused where notebook 03 trained it, trained here otherwise."""
    labels, refit = kaggle.manifest.label.to_numpy(), refit_split(split)
    return train_or_load(custom_cnn_config(params, seed, "inverse"), images, labels, refit,
                         class_weights(labels[refit.train], "inverse"), kaggle.fingerprint, checkpoint="last")


def t2_like(image: np.ndarray) -> bool:
    """A simple contrast indicator: is fluid (CSF, oedema) brighter than brain tissue, as on
    T2-weighted slices, rather than darker, as on T1-weighted (with or without contrast) and FLAIR?
    Inside the brain (the head mask, `explain.head_mask`, less an outer ring of scalp and skull 1/16
    of the image wide), bright fluid fills sulci and ventricles, so the brightest fifth of the pixels
    sits far above the median: T2-like when the 80th percentile exceeds `T2_BRIGHT_RATIO` times the
    median. Its rate on figshare's T1 contrast-enhanced slices, all T1, is its false-positive rate
    (notebook 08 reports it)."""
    from scipy import ndimage

    from braintumour.analysis.explain import head_mask

    head = head_mask(image)
    brain = ndimage.binary_erosion(head, iterations=max(1, image.shape[0] // 16))
    values = image[brain if brain.sum() > 50 else head].astype(np.float32)
    if len(values) < 2:
        return False
    return bool(np.percentile(values, 80) > T2_BRIGHT_RATIO * max(float(np.median(values)), 1.0))


def describe_images(manifest: pd.DataFrame, images: np.ndarray, forest) -> pd.DataFrame:
    """Per image: the contrast indicator, whether it is 512 x 512, its PIL mode and file format, and
    the class the Kaggle metadata classifier gives it (its "source style")."""
    x = audit.shortcut_features(manifest, images).reindex(columns=forest.feature_names_in_, fill_value=0.0)
    return pd.DataFrame({
        "contrast": ["T2-like" if t2_like(im) else "T1-like" for im in images],
        "size": np.where((manifest.width == 512) & (manifest.height == 512), "512 x 512", "other size"),
        "mode": manifest["mode"].to_numpy(),
        "format": manifest.path.str.rsplit(".", n=1).str[-1].str.lower().to_numpy(),
        "style_of": [CLASSES[k] for k in forest.predict(x)],
    }, index=manifest.index)


def detection_by(factors: pd.DataFrame, pred: np.ndarray) -> pd.DataFrame:
    """Detection rate and image count for each level of each factor (`describe_images`), and the
    share of the misses each level holds: what the misses have in common, in numbers."""
    hit = np.asarray(pred) != NOTUMOR
    rows = []
    for factor in factors.columns:
        for level, idx in factors.groupby(factor).indices.items():
            rows.append({"factor": factor, "level": level, "images": len(idx), "detected": hit[idx].mean(),
                         "share_of_misses": (~hit[idx]).sum() / max(1, (~hit).sum())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- scoring models


def scores(model, labelled: dict[str, tuple[np.ndarray, np.ndarray]], tumour_sets: dict[str, np.ndarray]) -> dict:
    """A model on labelled Kaggle images (`<name>_accuracy`, `<name>_notumor_recall`) and on sets of
    external tumour images (`<name>`: a `Detection` as a dict, its rate under `detected`)."""
    from braintumour.analysis.evaluate import predict_proba

    out: dict = {}
    for name, (imgs, y) in labelled.items():
        pred = predict_proba(model, imgs).argmax(1)
        out[f"{name}_accuracy"] = float((pred == y).mean())
        out[f"{name}_notumor_recall"] = float((pred[y == NOTUMOR] == NOTUMOR).mean())
    for name, imgs in tumour_sets.items():
        out[name] = detection(predict_proba(model, imgs).argmax(1)).as_dict()
    return out


def choose_variant(per_seed: dict[str, dict[int, dict]], plain_validation_accuracy: float,
                   tolerance: float = 0.005) -> str:
    """The rule fixed before any variant was scored: among the variants whose mean validation
    accuracy is within `tolerance` of the plain model's, the highest mean tumour-detection rate on
    Br35H's `tune` part. Neither Kaggle Testing nor Br35H's `test` part is read."""
    def mean(v: str, key) -> float:
        return float(np.mean([key(r) for r in per_seed[v].values()]))

    eligible = [v for v in per_seed if mean(v, lambda r: r["validation_accuracy"]) >= plain_validation_accuracy
                - tolerance] or list(per_seed)
    return max(eligible, key=lambda v: mean(v, lambda r: r["external_tune"]["detected"]))


def mean_over_seeds(per_seed: dict[int, dict], key: Callable[[dict], float]) -> float:
    """Mean over a variant's seeds of one score of `scores`' results, `key` picking it from a seed's."""
    return float(np.mean([key(r) for r in per_seed.values()]))
