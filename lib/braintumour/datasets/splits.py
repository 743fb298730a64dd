"""Train/validation/test splits and class weights.

Testing is only ever used for final evaluation; model selection (early stopping) uses a
stratified validation split carved out of Training with its own fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from braintumour.config import CLASSES
from braintumour.datasets.kaggle import Dataset

SPLIT_SEED = 20240917  # fixed once; independent of the training seeds


@dataclass(frozen=True)
class Split:
    """Row indices into the dataset manifest (and the cached image array) for each role."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def load_split(
    dataset: Dataset,
    *,
    val_fraction: float = 0.1,
    per_class_limit: int | None = None,
    seed: int = SPLIT_SEED,
) -> Split:
    """Stratified train/val split of Training, and the official Testing split.

    `per_class_limit` keeps the first n images per class and split (after a seeded shuffle) for
    smoke runs: the same profile always gets the same subset.
    """
    train_pool = _limit(dataset.split("Training"), per_class_limit, seed)
    test = _limit(dataset.split("Testing"), per_class_limit, seed)
    train_idx, val_idx = train_test_split(
        train_pool.index.to_numpy(),
        test_size=val_fraction,
        stratify=train_pool.label.to_numpy(),
        random_state=seed,
    )
    return Split(np.sort(train_idx), np.sort(val_idx), np.sort(test.index.to_numpy()))


def refit_split(split: Split) -> Split:
    """`split` with its validation images moved into training: the refit once a recipe is fixed.

    Training is the union (5,712 images instead of 5,140), Testing is unchanged. `val` keeps the
    validation images because the training loop reports per-epoch numbers on them, but they are now
    training images: nothing is held out to choose a checkpoint, so a refit keeps its last epoch
    (`runs.train_or_load(checkpoint="last")`)."""
    return Split(np.union1d(split.train, split.val), split.val, split.test)


def _limit(frame: pd.DataFrame, per_class_limit: int | None, seed: int) -> pd.DataFrame:
    if per_class_limit is None:
        return frame
    return frame.sample(frac=1.0, random_state=seed).groupby("label").head(per_class_limit)


def class_counts(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, minlength=len(CLASSES))


def class_weights(labels: np.ndarray, method: str = "inverse") -> np.ndarray:
    """Per-class loss weights from training labels, mean weight 1 over the samples.

    - "inverse": n / (k * n_c), scikit-learn's "balanced" weights.
    - "effective": Cui et al. (2019), (1 - beta) / (1 - beta^n_c) with beta = 1 - 1/n, rescaled
      so that the weighted sample count equals n.
    - "none": all ones.
    """
    counts = class_counts(labels).astype(float)
    if method == "none":
        return np.ones(len(CLASSES))
    if method == "inverse":
        return compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=labels)
    if method == "effective":
        beta = 1.0 - 1.0 / counts.sum()
        w = (1.0 - beta) / (1.0 - beta**counts)
        return w * counts.sum() / (w * counts).sum()
    raise ValueError(f"unknown class-weight method {method!r}; use 'inverse', 'effective' or 'none'")


# Ids of `source_groups`; their titles are titles.SOURCE_GROUP_TITLES.
SOURCE_GROUPS: dict[int, str] = {0: "size_512", 1: "other_size"}


def source_groups(manifest: pd.DataFrame) -> np.ndarray:
    """Which collection each image most likely comes from, by its original size: 0 for 512 x 512
    scan exports (the figshare images and part of the rest), 1 for every other size (web-collected
    images). Class and source are entangled in this archive: in Training, 99% of the *notumor* images
    are of other sizes and 90% of the other-size images are *notumor*, so image appearance alone
    points to "no tumour" (the leakage audit's shortcut classifier), and the other-size meningiomas
    are the images the custom CNN gets wrong most, in validation as in Testing (notebook 03 shows
    recall per class and source group)."""
    square = (manifest.width.to_numpy() == 512) & (manifest.height.to_numpy() == 512)
    return np.where(square, 0, 1)


def load_test_dedup(dataset: Dataset) -> np.ndarray:
    """Manifest rows of the leakage-free Testing subset (Testing images with no near-duplicate in
    Training), as written by notebook 01 to `reports/test_dedup.csv`."""
    from braintumour.config import reports_dir

    path = reports_dir() / "test_dedup.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: execute notebooks/01_eda.ipynb first (make reproduce does)")
    paths = pd.read_csv(path).path
    index = pd.Series(dataset.manifest.index, index=dataset.manifest.path)
    missing = set(paths) - set(index.index)
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} path(s) not in the dataset, e.g. {sorted(missing)[0]}; "
            "it was written for other data: re-run notebook 01"
        )
    return np.sort(index.loc[paths].to_numpy())
