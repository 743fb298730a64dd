import numpy as np
import pandas as pd
import pytest

from braintumour.datasets import splits


def test_split_is_stratified_disjoint_and_deterministic(dataset):
    a = splits.load_split(dataset)
    b = splits.load_split(dataset)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not set(a.train) & set(a.val)
    m = dataset.manifest
    assert set(m.split.iloc[a.train]) == {"Training"} and set(m.split.iloc[a.val]) == {"Training"}
    assert set(m.split.iloc[a.test]) == {"Testing"} and len(a.test) == 1311
    assert len(a.train) + len(a.val) == 5712
    labels = m.label.to_numpy()
    p_train = np.bincount(labels[a.train]) / len(a.train)
    p_val = np.bincount(labels[a.val]) / len(a.val)
    assert np.abs(p_train - p_val).max() < 0.01


def test_refit_split_trains_on_validation_too_and_keeps_testing():
    split = splits.Split(train=np.array([0, 3, 5]), val=np.array([1, 4]), test=np.array([2, 6]))
    refit = splits.refit_split(split)
    np.testing.assert_array_equal(refit.train, [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(refit.val, split.val)
    np.testing.assert_array_equal(refit.test, split.test)


def test_other_seed_gives_other_split(dataset):
    a = splits.load_split(dataset)
    b = splits.load_split(dataset, seed=1)
    assert not np.array_equal(a.val, b.val)


def test_per_class_limit_subset(dataset):
    s = splits.load_split(dataset, per_class_limit=10)
    labels = dataset.manifest.label.to_numpy()
    assert np.bincount(labels[np.concatenate([s.train, s.val])]).tolist() == [10, 10, 10, 10]
    assert np.bincount(labels[s.test]).tolist() == [10, 10, 10, 10]


def test_class_weights():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 40 + [3] * 30)
    w = splits.class_weights(labels, "inverse")
    np.testing.assert_allclose(w, [100 / 40, 100 / 80, 100 / 160, 100 / 120])
    counts = np.bincount(labels)
    for method in ("inverse", "effective"):
        w = splits.class_weights(labels, method)
        assert np.all(np.diff(w[np.argsort(counts)]) < 0)  # rarer class, larger weight
        assert np.isclose((w * counts).sum(), counts.sum())  # mean weight over samples is 1
    np.testing.assert_array_equal(splits.class_weights(labels, "none"), np.ones(4))
    with pytest.raises(ValueError, match="unknown class-weight method"):
        splits.class_weights(labels, "sqrt")


def test_source_groups_split_512_square_from_other_sizes():
    manifest = pd.DataFrame({"width": [512, 512, 236, 512], "height": [512, 400, 236, 512]})
    np.testing.assert_array_equal(splits.source_groups(manifest), [0, 1, 1, 0])
