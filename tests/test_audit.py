import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from braintumour.datasets import audit, images


@pytest.fixture(scope="module")
def four(real_dir):
    """A real slice, its JPEG re-encoding, a copy shifted by 1 px at source resolution, and a
    different real slice. (The 256-bit hash tolerates sub-pixel shifts at 128 px, not more: the
    audit finds copies, and the notebook says its leakage count is a lower bound.)"""
    files = sorted((real_dir / "Testing" / "glioma").iterdir())
    base = images.load_image(files[0], 128)
    buf = io.BytesIO()
    Image.open(files[0]).save(buf, "JPEG", quality=70)
    reencoded = images.square_resize(images.decode_grey(buf.getvalue()), 128)
    source = np.asarray(images.decode_grey(files[0].read_bytes()))
    shifted = images.square_resize(Image.fromarray(np.roll(source, 1, axis=1)), 128)
    other = images.load_image(sorted((real_dir / "Testing" / "pituitary").iterdir())[5], 128)
    return np.stack([base, reencoded, shifted, other])


def test_copies_are_near_and_different_images_far(four):
    h = audit.perceptual_hashes(four)
    d = audit.hamming(h, 0)
    assert d[0] == 0
    assert d[1] <= audit.NEAR_DUPLICATE_BITS  # re-encoded
    assert d[2] <= audit.NEAR_DUPLICATE_BITS  # shifted by 1 px at 512 px
    assert d[3] > 3 * audit.NEAR_DUPLICATE_BITS  # another patient, another class


def test_pairs_clusters_and_nearest_neighbours(four):
    h = audit.perceptual_hashes(four)
    pairs = audit.near_duplicate_pairs(h)
    assert set(map(tuple, pairs[["i", "j"]].to_numpy())) == {(0, 1), (0, 2), (1, 2)}
    clusters = audit.duplicate_clusters(4, pairs)
    assert clusters[0] == clusters[1] == clusters[2] != clusters[3]
    dist, nearest = audit.nearest_neighbours(h, np.array([3, 0]), np.arange(4))
    assert nearest[1] in (1, 2) and dist[0] > audit.NEAR_DUPLICATE_BITS


def test_testing_leakage_on_a_synthetic_manifest(four):
    manifest = pd.DataFrame({
        "path": ["tr/a.jpg", "te/a-copy.jpg", "te/shifted.jpg", "te/other.jpg"],
        "split": ["Training", "Testing", "Testing", "Testing"],
        "class_name": ["glioma", "glioma", "glioma", "pituitary"], "label": [0, 0, 0, 3],
        "sha256": ["x", "x", "y", "z"],
    })
    leak = audit.testing_leakage(manifest, audit.perceptual_hashes(four))
    assert leak.near_duplicate_in_training.tolist() == [True, True, False]
    assert leak.exact_in_training.tolist() == [True, False, False]
    pairs = audit.describe_pairs(manifest, audit.near_duplicate_pairs(audit.perceptual_hashes(four)))
    assert set(pairs.kind) == {"training_testing", "within_testing"}


def test_real_archive_has_known_exact_duplicates(dataset):
    # Exact copies by SHA-256 exist across the official splits of this archive.
    m = dataset.manifest
    train_sha = set(m.sha256[m.split == "Training"])
    assert m[(m.split == "Testing") & m.sha256.isin(train_sha)].shape[0] > 50


def test_shortcut_features_hold_no_pixels(dataset):
    m = dataset.manifest.iloc[:20]
    feats = audit.shortcut_features(m, np.zeros((20, 8, 8), np.uint8))
    assert feats.shape[1] <= 10
    assert {"width", "height", "mean_intensity", "std_intensity"} <= set(feats.columns)


def test_patient_leakage_on_the_real_archive(dataset, real_dir):
    from braintumour.datasets.kaggle import patients_csv

    result = audit.patient_leakage(dataset.manifest, audit.load_patients(patients_csv(real_dir)))
    assert sum(result["images_with_patient_id"].values()) == 3064
    assert result["testing_images_with_patient_id"]["total"] == 619
    assert 0 <= result["testing_images_of_training_patients"]["total"] <= 619
    p = result["patients"]
    assert p["testing_also_in_training"] <= min(p["testing"], p["training"])


def test_patient_leakage_known_answer():
    manifest = pd.DataFrame({"path": ["a", "b", "c", "d"], "split": ["Training", "Testing", "Testing", "Testing"],
                             "class_name": ["glioma"] * 3 + ["pituitary"]})
    patients = pd.DataFrame({"path": ["a", "b", "c", "d"], "patient_id": ["P1", "P1", "P2", "P1"]})
    r = audit.patient_leakage(manifest, patients)
    assert r["testing_images_of_training_patients"] == {"glioma": 1, "pituitary": 1, "total": 2}
    assert r["patients"] == {"training": 1, "testing": 2, "testing_also_in_training": 1}
