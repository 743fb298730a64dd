"""Leakage audit and shortcut check: exact and near-duplicate images, and how much a classifier
that sees no anatomy (size, mode, global intensity) can predict.

Near-duplicates use a 256-bit perceptual hash (DCT hash of imagehash with hash_size=16) of the
cached greyscale images; the Hamming-distance threshold is chosen from the distribution of
nearest-neighbour distances (notebook 01 shows the figure that justifies it).
"""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score

HASH_SIZE = 16  # 16 x 16 = 256 bits: 64-bit hashes cannot separate copies from neighbouring slices
# At most 12 of 256 bits differ: the middle of the trough (8-14 bits) in the histogram of
# nearest-neighbour distances, between copies and genuinely different slices.
NEAR_DUPLICATE_BITS = 12


def perceptual_hashes(images: np.ndarray, hash_size: int = HASH_SIZE) -> np.ndarray:
    """DCT perceptual hash of each uint8 image, packed as (N, hash_size**2 / 64) uint64 words."""
    rows = []
    for arr in images:
        bits = imagehash.phash(Image.fromarray(arr), hash_size=hash_size).hash.flatten()
        rows.append(np.packbits(bits).view(np.uint64))
    return np.stack(rows)


def hamming(hashes: np.ndarray, i: int, others: np.ndarray | None = None) -> np.ndarray:
    """Hamming distances from image i to `others` (row indices; all rows by default)."""
    ref = hashes if others is None else hashes[others]
    return np.bitwise_count(ref ^ hashes[i]).sum(axis=1)


def nearest_neighbours(hashes: np.ndarray, query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the distance to, and the row index of, its nearest reference row (itself excluded)."""
    dist = np.empty(len(query), dtype=int)
    nearest = np.empty(len(query), dtype=int)
    for k, i in enumerate(query):
        d = hamming(hashes, i, reference)
        d[reference == i] = 10**6
        j = int(d.argmin())
        dist[k], nearest[k] = d[j], reference[j]
    return dist, nearest


def near_duplicate_pairs(hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_BITS) -> pd.DataFrame:
    """All pairs (i < j) whose hashes differ in at most `threshold` bits, with the distance."""
    out = []
    for i in range(len(hashes) - 1):
        d = np.bitwise_count(hashes[i + 1 :] ^ hashes[i]).sum(axis=1)
        js = np.flatnonzero(d <= threshold)
        out.extend((i, i + 1 + j, int(d[j])) for j in js)
    return pd.DataFrame(out, columns=["i", "j", "distance"])


def duplicate_clusters(n: int, pairs: pd.DataFrame) -> np.ndarray:
    """Connected components of the near-duplicate graph: copies share a cluster id (singletons too)."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs.i, pairs.j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def describe_pairs(manifest: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs with each side's split and class, the kind (titles.PAIR_KIND_TITLES: within or across the
    splits), exactness and label conflict."""
    a, b = manifest.iloc[pairs.i].reset_index(drop=True), manifest.iloc[pairs.j].reset_index(drop=True)
    kind = np.where(
        a.split.values != b.split.values,
        "training_testing",
        np.where(a.split.values == "Training", "within_training", "within_testing"),
    )
    return pd.DataFrame(
        {
            "i": pairs.i.values,
            "j": pairs.j.values,
            "distance": pairs.distance.values,
            "path_a": a.path,
            "path_b": b.path,
            "class_a": a.class_name,
            "class_b": b.class_name,
            "kind": kind,
            "exact": a.sha256.values == b.sha256.values,
            "conflicting_labels": a.class_name.values != b.class_name.values,
        }
    )


def testing_leakage(manifest: pd.DataFrame, hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_BITS) -> pd.DataFrame:
    """Every Testing image with its nearest Training image, the distance, and whether it is leaked."""
    test = np.flatnonzero((manifest.split == "Testing").to_numpy())
    train = np.flatnonzero((manifest.split == "Training").to_numpy())
    dist, nearest = nearest_neighbours(hashes, test, train)
    train_sha = set(manifest.sha256.iloc[train])
    return pd.DataFrame(
        {
            "index": test,
            "path": manifest.path.iloc[test].values,
            "class_name": manifest.class_name.iloc[test].values,
            "label": manifest.label.iloc[test].values,
            "nearest_training": manifest.path.iloc[nearest].values,
            "nearest_training_class": manifest.class_name.iloc[nearest].values,
            "distance": dist,
            "exact_in_training": manifest.sha256.iloc[test].isin(train_sha).values,
            "near_duplicate_in_training": dist <= threshold,
        }
    )


# --------------------------------------------------------------------------- shortcut check


def shortcut_features(manifest: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
    """Features with no anatomy in them: file width, height, PIL mode, global intensity mean and spread."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    feats = pd.DataFrame(
        {
            "width": manifest.width.values,
            "height": manifest.height.values,
            "mean_intensity": flat.mean(1),
            "std_intensity": flat.std(1),
        }
    )
    modes = pd.get_dummies(manifest["mode"], prefix="mode").astype(float).reset_index(drop=True)
    return pd.concat([feats, modes], axis=1)


def shortcut_forest(manifest: pd.DataFrame, images: np.ndarray, seed: int = 0) -> RandomForestClassifier:
    """The random forest on `shortcut_features`, fit on the Training rows (also applied to other
    collections' images, notebook 08)."""
    train = (manifest.split == "Training").to_numpy()
    forest = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=-1)
    return forest.fit(shortcut_features(manifest, images)[train], manifest.label.to_numpy()[train])


def shortcut_classifier(manifest: pd.DataFrame, images: np.ndarray, seed: int = 0) -> dict:
    """Random forest on `shortcut_features`, fit on Training, scored on Testing, next to chance."""
    x = shortcut_features(manifest, images)
    train = (manifest.split == "Training").to_numpy()
    y = manifest.label.to_numpy()
    forest = shortcut_forest(manifest, images, seed)
    pred = forest.predict(x[~train])
    majority = np.bincount(y[train]).argmax()
    return {
        "features": list(x.columns),
        "test_accuracy": float(accuracy_score(y[~train], pred)),
        "test_balanced_accuracy": float(balanced_accuracy_score(y[~train], pred)),
        "chance_accuracy_majority_class": float((y[~train] == majority).mean()),
        "chance_balanced_accuracy": 0.25,
        "feature_importance": dict(zip(x.columns, forest.feature_importances_.round(4).tolist(), strict=True)),
    }


# --------------------------------------------------------------------------- patient-level leakage


def load_patients(path) -> pd.DataFrame:
    """`path, figshare_id, patient_id` for the figshare-derived images (233 patients).

    `path` None (what `kaggle.patients_csv` returns where there is none) or absent stops with a
    DataNotFoundError naming the source and `make data`."""
    from braintumour.datasets.kaggle import missing_figshare, patients_csv

    if path is None:
        path = patients_csv(required=True)
    elif not Path(path).is_file():
        raise missing_figshare("patient ids", Path(path))
    frame = pd.read_csv(path, dtype={"patient_id": str})
    missing = {"path", "patient_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def patient_leakage(manifest: pd.DataFrame, patients: pd.DataFrame) -> dict:
    """How many Testing images (per class) belong to a patient who also has slices in Training,
    and how many Testing patients are Training patients. Only the figshare images carry a patient id."""
    known = manifest.merge(patients[["path", "patient_id"]], on="path", how="inner")
    train_patients = set(known.patient_id[known.split == "Training"])
    test = known[known.split == "Testing"]
    shared = test.patient_id.isin(train_patients)
    test_patients = set(test.patient_id)
    return {
        "images_with_patient_id": {s: int((known.split == s).sum()) for s in ("Training", "Testing")},
        "testing_images_of_training_patients": {c: int(v) for c, v in shared.groupby(test.class_name).sum().items()}
        | {"total": int(shared.sum())},
        "testing_images_with_patient_id": {c: int(v) for c, v in test.class_name.value_counts().items()}
        | {"total": len(test)},
        "patients": {"training": len(train_patients), "testing": len(test_patients),
                     "testing_also_in_training": len(test_patients & train_patients)},
    }
