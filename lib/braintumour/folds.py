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

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

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
