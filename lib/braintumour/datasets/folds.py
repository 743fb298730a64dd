"""Patient-disjoint folds: every slice of a patient, and every copy of an image, in one fold.

The official split was cut by slice, so it cannot say how a model does on unseen patients. Groups:
- figshare images (3,064): their patient (`brain-tumor-mri-patients.csv`);
- every image: its near-duplicate cluster from the leakage audit, so copies never straddle folds;
- the rest (all of *notumor*, the SARTAJ/Br35H tumour images) have no patient information: each
  is its own group unless a copy ties it to others. Slices of one such patient can still fall in
  different folds; the reports say so.
Groups are the connected components of "same patient" and "near-duplicate" together: a copy of a
patient's slice joins that patient's group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from braintumour.analysis import evaluate
from braintumour.datasets import audit
from braintumour.datasets.splits import Split

FOLD_SEED = 20241105


def exact_copies_removed(manifest: pd.DataFrame) -> np.ndarray:
    """Row indices that keep one image of each set of byte-identical files (the first in manifest
    order), so pooling Training and Testing does not count a file twice."""
    return np.flatnonzero(~manifest.sha256.duplicated(keep="first").to_numpy())


def fold_groups(manifest: pd.DataFrame, clusters: np.ndarray, patients: pd.DataFrame | None) -> np.ndarray:
    """A group id per manifest row (connected components of same-patient and near-duplicate edges)."""
    n = len(manifest)
    edges = [_chain(pd.Series(clusters))]
    if patients is not None:
        pid = manifest[["path"]].merge(patients[["path", "patient_id"]], on="path", how="left").patient_id
        edges.append(_chain(pid))
    i = np.concatenate([e[0] for e in edges])
    j = np.concatenate([e[1] for e in edges])
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def group_kinds(manifest: pd.DataFrame, groups: np.ndarray, patients: pd.DataFrame | None) -> dict[str, int]:
    """How many groups carry a patient id, how many are copies without one, how many single images."""
    known = manifest.path.isin(set(patients.path)) if patients is not None else pd.Series(False, index=manifest.index)
    frame = pd.DataFrame({"group": groups, "known": known.to_numpy()})
    per = frame.groupby("group").agg(known=("known", "any"), size=("known", "size"))
    return {
        "groups": len(per),
        "with_patient_id": int(per.known.sum()),
        "duplicate_clusters_without_patient_id": int((~per.known & (per["size"] > 1)).sum()),
        "single_images_without_patient_id": int((~per.known & (per["size"] == 1)).sum()),
    }


def patient_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int = 5, seed: int = FOLD_SEED) -> np.ndarray:
    """Fold number (0..n_splits-1) per row: StratifiedGroupKFold, shuffled with a fixed seed."""
    folds = np.full(len(labels), -1)
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(cv.split(np.zeros(len(labels)), labels, groups)):
        folds[held_out] = k
    return folds


def _chain(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking each row to the next row with the same (non-null) key: enough for components."""
    frame = pd.DataFrame({"key": keys.to_numpy(), "row": np.arange(len(keys))}).dropna().sort_values(["key", "row"])
    same = frame.key.to_numpy()[1:] == frame.key.to_numpy()[:-1]
    rows = frame.row.to_numpy()
    return rows[:-1][same], rows[1:][same]


AUDIT_IMAGE_SIZE = 128  # the leakage audit's geometry (notebook 01): the same near-duplicates define the groups


@dataclass(frozen=True)
class PatientFolds:
    """The pooled, de-duplicated data set cut into patient-disjoint folds (manifest row indices)."""

    rows: np.ndarray  # manifest rows in the pool
    labels: np.ndarray  # class per pooled row
    fold: np.ndarray  # fold number per pooled row
    groups: np.ndarray  # group id per pooled row
    kinds: dict[str, int]

    @property
    def n_splits(self) -> int:
        return int(self.fold.max()) + 1

    def held_out(self, k: int) -> np.ndarray:
        return self.rows[self.fold == k]

    def split(self, k: int, val_fraction: float = 0.1, seed: int = FOLD_SEED) -> Split:
        """Fold k held out as the test set; the other folds train, with a validation part cut from them
        by group too (for early stopping), so no patient or copy is in two of train, val and test."""
        rest = self.fold != k
        labels_rest = self.labels[rest]
        cv = StratifiedGroupKFold(n_splits=round(1 / val_fraction), shuffle=True, random_state=seed)
        fit, val = next(cv.split(np.zeros(len(labels_rest)), labels_rest, self.groups[rest]))
        rows_rest = self.rows[rest]
        return Split(np.sort(rows_rest[fit]), np.sort(rows_rest[val]), np.sort(self.held_out(k)))

    def fold_table(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Images per class and fold."""
        frame = manifest.loc[self.rows, ["class_name"]].assign(fold=self.fold)
        return frame.groupby(["fold", "class_name"]).size().unstack(fill_value=0)


def pooled_folds(
    manifest: pd.DataFrame,
    audit_images: np.ndarray,
    patients: pd.DataFrame | None,
    *,
    n_splits: int = 5,
    per_class_limit: int | None = None,
    seed: int = FOLD_SEED,
) -> PatientFolds:
    """Pool Training and Testing without exact copies, group by patient and near-duplicate cluster,
    and cut stratified group folds. `audit_images` are the manifest's images at AUDIT_IMAGE_SIZE.
    `per_class_limit` (smoke runs) keeps whole groups, the first ones of each class in a seeded order."""
    rows = exact_copies_removed(manifest)
    pool = manifest.iloc[rows].reset_index(drop=True)
    pairs = audit.near_duplicate_pairs(audit.perceptual_hashes(audit_images[rows]))
    groups = fold_groups(pool, audit.duplicate_clusters(len(pool), pairs), patients)
    if per_class_limit is not None:
        keep = _limit_groups(pool.label.to_numpy(), groups, per_class_limit, seed)
        rows, pool, groups = rows[keep], pool.iloc[keep].reset_index(drop=True), groups[keep]
    labels = pool.label.to_numpy()
    fold = patient_folds(labels, groups, n_splits, seed)
    return PatientFolds(rows, labels, fold, groups, group_kinds(pool, groups, patients))


def _limit_groups(labels: np.ndarray, groups: np.ndarray, per_class_limit: int, seed: int) -> np.ndarray:
    """Positions of whole groups, taken in a seeded order until each class has per_class_limit images."""
    order = np.random.default_rng(seed).permutation(np.unique(groups))
    counts, keep = np.zeros(labels.max() + 1, int), []
    for g in order:
        members = np.flatnonzero(groups == g)
        c = labels[members[0]]
        if counts[c] < per_class_limit:
            keep.extend(members)
            counts[c] += len(members)
    return np.sort(np.asarray(keep))


def over_folds(scores: dict[tuple[str, str, str], dict], name: str, subset: str) -> dict:
    """Mean ± sd over the patient-disjoint folds (every split but "official") of each headline metric,
    for one model and subset; `scores`: (model, split, subset) -> `evaluate.headline_present`."""
    per_fold = [v for (n, k, s), v in scores.items() if n == name and s == subset and k != "official"]
    return {m: evaluate.mean_sd([v[m] for v in per_fold]) for m in evaluate.HEADLINE}
