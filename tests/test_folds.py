"""Patient-disjoint folds on the real data: no patient and no near-duplicate pair straddles two
folds, stratification holds, and the assignment is deterministic."""

import numpy as np
import pandas as pd
import pytest

from braintumour.config import CLASSES
from braintumour.datasets import audit, folds, kaggle


@pytest.fixture(scope="module")
def pooled(dataset):
    keep = folds.exact_copies_removed(dataset.manifest)
    manifest = dataset.manifest.iloc[keep].reset_index(drop=True)
    images = kaggle.load_images(dataset, 128)[keep]
    pairs = audit.near_duplicate_pairs(audit.perceptual_hashes(images))
    clusters = audit.duplicate_clusters(len(manifest), pairs)
    patients = audit.load_patients(kaggle.patients_csv(dataset.root))
    groups = folds.fold_groups(manifest, clusters, patients)
    fold = folds.patient_folds(manifest.label.to_numpy(), groups)
    return manifest, pairs, patients, groups, fold


def test_exact_copies_are_pooled_once(dataset, pooled):
    manifest = pooled[0]
    assert manifest.sha256.is_unique
    assert len(manifest) == dataset.manifest.sha256.nunique()


def test_no_patient_straddles_two_folds(pooled):
    manifest, _, patients, _, fold = pooled
    known = manifest.assign(fold=fold).merge(patients[["path", "patient_id"]], on="path")
    assert len(known) > 3000  # the figshare images are all there
    assert (known.groupby("patient_id").fold.nunique() == 1).all()


def test_no_near_duplicate_pair_straddles_two_folds(pooled):
    _, pairs, _, _, fold = pooled
    assert len(pairs) > 100
    assert (fold[pairs.i] == fold[pairs.j]).all()


def test_every_fold_keeps_the_class_mix_within_three_points(pooled):
    manifest, _, _, _, fold = pooled
    overall = manifest.class_name.value_counts(normalize=True)
    for k in range(5):
        share = manifest.class_name[fold == k].value_counts(normalize=True).reindex(list(CLASSES), fill_value=0)
        assert (share - overall.reindex(list(CLASSES))).abs().max() < 0.03, (k, share.round(3).to_dict())
    sizes = np.bincount(fold)
    assert sizes.min() > 0.8 * sizes.max()


def test_fold_assignment_is_deterministic(pooled):
    manifest, _, _, groups, fold = pooled
    again = folds.patient_folds(manifest.label.to_numpy(), groups)
    np.testing.assert_array_equal(fold, again)


def test_groups_join_a_patient_and_the_copies_of_its_slices():
    manifest = pd.DataFrame({"path": ["a", "b", "c", "d", "e"]})
    patients = pd.DataFrame({"path": ["a", "b"], "patient_id": ["p1", "p1"]})
    clusters = np.array([0, 1, 2, 1, 3])  # d is a copy of b; c and e stand alone
    groups = folds.fold_groups(manifest, clusters, patients)
    assert groups[0] == groups[1] == groups[3]
    assert len({groups[0], groups[2], groups[4]}) == 3
    kinds = folds.group_kinds(manifest, groups, patients)
    assert kinds == {"groups": 3, "with_patient_id": 1, "duplicate_clusters_without_patient_id": 0,
                     "single_images_without_patient_id": 2}


def test_pooled_folds_split_keeps_groups_apart_in_train_val_and_test(dataset):
    pf = folds.pooled_folds(dataset.manifest, kaggle.load_images(dataset, folds.AUDIT_IMAGE_SIZE),
                            audit.load_patients(kaggle.patients_csv(dataset.root)))
    group_of = dict(zip(pf.rows, pf.groups, strict=True))
    assert pf.kinds["with_patient_id"] == 233
    for k in (0, pf.n_splits - 1):
        split = pf.split(k)
        parts = [{group_of[r] for r in rows} for rows in (split.train, split.val, split.test)]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert 0.07 < len(split.val) / (len(split.train) + len(split.val)) < 0.13
    all_held_out = np.concatenate([pf.held_out(k) for k in range(pf.n_splits)])
    assert np.array_equal(np.sort(all_held_out), np.sort(pf.rows))
    np.testing.assert_array_equal(pf.split(0).val, folds.pooled_folds(
        dataset.manifest, kaggle.load_images(dataset, folds.AUDIT_IMAGE_SIZE),
        audit.load_patients(kaggle.patients_csv(dataset.root))).split(0).val)
