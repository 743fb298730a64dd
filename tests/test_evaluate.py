import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from braintumour.analysis import calibration, evaluate
from braintumour.datasets import splits


def _onehot(pred, k=4, conf=0.9):
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_hand_computed_case():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    pred = np.array([0, 1, 1, 1, 2, 2, 3, 0])
    m = evaluate.classification_metrics(y, _onehot(pred), with_ci=False)
    assert m["accuracy"] == pytest.approx(6 / 8)
    # recalls 1/2, 1, 1, 1/2 -> balanced 0.75
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # class 0: P 1/2 R 1/2 F 1/2; class 1: P 2/3 R 1 F 0.8; class 2: 1; class 3: P 1 R 1/2 F 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 1 + 2 / 3) / 4)
    assert m["per_class"]["meningioma"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"][0] == [1, 1, 0, 0]
    assert m["errors"] == 2


def test_fast_headline_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 4, 50)
        pred = np.where(rng.random(50) < 0.7, y, rng.integers(0, 4, 50))
        h = evaluate._headline(y, pred)
        assert h["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert h["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert h["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=range(4), zero_division=0))


def test_ece_hand_case():
    # two bins used: confidence 0.9 (all right) and 0.6 (half right)
    y = np.array([0, 1, 2, 3])
    proba = np.array([_onehot([0], conf=0.9)[0], _onehot([1], conf=0.9)[0],
                      _onehot([2], conf=0.6)[0], _onehot([0], conf=0.6)[0]])
    # bin 0.9: acc 1, conf 0.9 -> 0.1 gap, weight 1/2; bin 0.6: acc 0.5, conf 0.6 -> 0.1, weight 1/2
    assert calibration.ece(y, proba) == pytest.approx(0.1)


def test_bootstrap_interval_brackets_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.9, y, (y + 1) % 4)
    ci = evaluate.bootstrap_ci(y, pred, n_boot=500)
    acc = (y == pred).mean()
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert ci["accuracy"][1] - ci["accuracy"][0] < 0.1
    assert ci == evaluate.bootstrap_ci(y, pred, n_boot=500)


def test_mcnemar():
    y = np.zeros(30, dtype=int)
    a = np.zeros(30, dtype=int)
    b = a.copy()
    b[:10] = 1  # A right and B wrong on 10 images, the reverse on none
    r = evaluate.mcnemar(y, a, b)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"]) == (10, 0)
    assert r["p_value"] == pytest.approx(2 * 0.5**10)
    assert evaluate.mcnemar(y, a, a)["p_value"] == 1.0


def test_summary_over_seeds():
    y = np.array([0, 1, 2, 3])
    per_seed = {0: evaluate.classification_metrics(y, _onehot(y), with_ci=False),
                1: evaluate.classification_metrics(y, _onehot(np.array([0, 1, 2, 0])), with_ci=False)}
    s = evaluate.summarise_over_seeds(per_seed)
    assert s["accuracy"]["mean"] == pytest.approx(0.875)
    assert s["accuracy"]["sd"] == pytest.approx(np.std([1, 0.75], ddof=1))
    assert s["per_class_recall"]["pituitary"]["mean"] == pytest.approx(0.5)


def test_recall_by_group_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2])
    groups = np.array([0, 0, 1, 1, 1, 0])
    out = evaluate.recall_by_group(y_true, y_pred, groups, {0: "a", 1: "b"})
    assert out == {"glioma": {"a": 0.5, "b": 1.0}, "meningioma": {"b": 0.5}, "notumor": {"a": 1.0}}
    assert evaluate.images_by_group(y_true, groups, {0: "a", 1: "b"}) == {
        "glioma": {"a": 2, "b": 1}, "meningioma": {"b": 2}, "notumor": {"a": 1}}


def test_recall_by_group_over_seeds_averages_recalls():
    y_true = np.array([0, 0, 1, 1])
    groups = np.array([0, 1, 0, 0])
    probas = {0: np.eye(4)[[0, 0, 1, 2]], 1: np.eye(4)[[1, 0, 1, 1]]}
    out = evaluate.recall_by_group_over_seeds(y_true, probas, groups, {0: "a", 1: "b"})
    assert out == {"glioma": {"a": 0.5, "b": 1.0}, "meningioma": {"a": 0.75}}


class _Fixed(torch.nn.Module):
    """Predicts the class given by each image's first pixel, whatever the input scaling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, 0, 0, 0]
        return torch.nn.functional.one_hot((first > first.min()).long() * 3, 4).float() * 10


def test_recall_by_source_predicts_validation_and_keeps_testing_probabilities():
    images = np.zeros((6, 8, 8), dtype=np.uint8)
    images[[1, 4], 0, 0] = 200  # predicted pituitary, every other image glioma
    labels = np.array([0, 0, 3, 0, 3, 3])
    split = splits.Split(train=np.array([0]), val=np.array([1, 2, 3]), test=np.array([4, 5]))
    groups = np.array([0, 0, 1, 1, 0, 1])
    test_proba = {7: np.eye(4)[[3, 3]]}  # given: both Testing images pituitary
    out = evaluate.recall_by_source({7: _Fixed()}, test_proba, images, labels, split, groups, {0: "a", 1: "b"})
    assert out["testing"]["recall"]["pituitary"] == {"a": 1.0, "b": 1.0}
    assert out["testing"]["images"]["pituitary"] == {"a": 1, "b": 1}
    # validation: image 1 (glioma, group a) is called pituitary, image 3 (glioma, b) glioma, 2 (pituitary) glioma
    assert out["validation"]["recall"] == {"glioma": {"a": 0.0, "b": 1.0}, "pituitary": {"b": 0.0}}
    assert out["validation"]["images"] == {"glioma": {"a": 1, "b": 1}, "pituitary": {"b": 1}}
