"""Temperature scaling, calibration scores and the uncertain flag, against references that do the same job."""

import json

import numpy as np
import pytest
import torch
from scipy.special import softmax
from tiny import tiny_config

from braintumour import predict
from braintumour.analysis import calibration
from braintumour.analysis.calibration import Calibration
from braintumour.config import CLASSES
from braintumour.training.checkpoints import save_checkpoint
from braintumour.training.models import build_model


def _overconfident(n: int = 20000, true_temperature: float = 2.5, seed: int = 0):
    """Logits whose labels were drawn from softmax(logits / T): the right temperature is T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, 4))
    p = softmax(logits / true_temperature, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(1)
    return logits, y


def _lbfgs_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Guo et al.'s reference implementation: LBFGS on the cross-entropy of logits / T."""
    z, t = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def test_fitted_temperature_recovers_the_true_one_and_matches_lbfgs():
    logits, y = _overconfident()
    t = calibration.fit_temperature(logits, y)
    assert t == pytest.approx(2.5, rel=0.05)
    assert t == pytest.approx(_lbfgs_temperature(logits, y), rel=1e-3)


def test_temperature_lowers_ece_and_nll_and_keeps_every_prediction():
    logits, y = _overconfident()
    t = calibration.fit_temperature(logits, y)
    before, after = calibration.probabilities(logits), calibration.probabilities(logits, t)
    assert np.array_equal(before.argmax(1), after.argmax(1))
    b, a = calibration.calibration_scores(y, before), calibration.calibration_scores(y, after)
    assert a["ece"] < 0.02 < b["ece"] and a["nll"] < b["nll"] and a["brier"] < b["brier"]
    assert a["classwise_ece"] < b["classwise_ece"]


def test_scores_agree_with_hand_computed_definitions():
    rng = np.random.default_rng(1)
    proba, y = softmax(rng.normal(0, 2, (500, 4)), axis=1), rng.integers(0, 4, 500)
    s = calibration.calibration_scores(y, proba)
    onehot = np.eye(4)[y]
    assert s["brier"] == pytest.approx(((proba - onehot) ** 2).sum(1).mean())
    assert s["nll"] == pytest.approx(-np.log(proba[np.arange(500), y]).mean())
    conf, correct = proba.max(1), proba.argmax(1) == y
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    ece = sum((bins == b).mean() * abs(correct[bins == b].mean() - conf[bins == b].mean())
              for b in range(15) if (bins == b).any())
    assert s["ece"] == pytest.approx(ece, abs=1e-6)  # torchmetrics bins in float32


def test_bootstrap_interval_contains_the_point_estimate():
    logits, y = _overconfident(2000)
    r = calibration.calibration_report(y, calibration.probabilities(logits), n_boot=200)
    for k in ("ece", "nll", "brier", "accuracy"):
        lo, hi = r["ci95"][k]
        assert lo <= r[k] <= hi and lo < hi


def test_threshold_keeps_the_largest_coverage_within_the_risk_and_respects_ties():
    # confidences 0.99 (right), 0.9 (right), 0.9 (wrong), 0.8 (right): a threshold of 0.9 keeps both ties
    proba = np.array([[0.99, 0.01, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0], [0.8, 0.2, 0, 0]])
    y = np.array([0, 0, 0, 0])
    assert calibration.threshold_for_risk(y, proba, max_risk=0.0) == pytest.approx(0.99)
    assert calibration.threshold_for_risk(y, proba, max_risk=0.3) == pytest.approx(0.8)
    nothing = calibration.threshold_for_risk(y[:1] + 1, proba[:1], max_risk=0.0)
    assert calibration.selective_scores(None, proba[:1], nothing)["coverage"] == 0.0
    s = calibration.selective_scores(y, proba, 0.9)
    assert s["coverage"] == 0.75 and s["errors"] == 1 and s["errors_flagged"] == 0 and s["error_kept"] == 1 / 3


def test_tumour_probability_report_on_tumour_only_images():
    proba = np.zeros((4, 4))
    proba[:, CLASSES.index("notumor")] = [0.0, 0.2, 0.5, 1.0]
    proba[:, 0] = 1 - proba[:, CLASSES.index("notumor")]
    r = calibration.tumour_probability_report(proba)
    assert r["n"] == 4 and r["mean_p_tumour"] == pytest.approx(0.575)
    assert r["brier"] == pytest.approx(np.mean(np.square([0.0, 0.2, 0.5, 1.0])))


def test_calibration_file_round_trip_and_a_bad_one_is_named(tmp_path):
    model = tmp_path / "m.pt"
    c = Calibration(temperature=0.5, uncertain_below=0.97, fitted_on="validation", n_images=100,
                    max_validation_risk=0.005, data_fingerprint="abc", git_commit="x")
    calibration.save_calibration(model, c)
    assert calibration.load_calibration(model) == c
    assert calibration.load_calibration(tmp_path / "other.pt") is None
    calibration.calibration_path(model).write_text(json.dumps({"temperature": 1}))
    with pytest.raises(ValueError, match="m.calibration.json"):
        calibration.load_calibration(model)


def test_predict_applies_the_temperature_and_flags(tmp_path, real_dir):
    torch.manual_seed(0)
    path = tmp_path / "custom_cnn.pt"
    save_checkpoint(path, build_model("custom_cnn").eval(), tiny_config(image_size=64))
    images = [sorted((real_dir / "Testing" / c).iterdir())[0] for c in CLASSES]
    plain = predict.predict_files(images, path, progress=False).frame()
    assert plain.uncertain.isna().all() and "uncalibrated" in predict.PredictResult(model="m").provenance()
    calibration.save_calibration(path, Calibration(temperature=0.25, uncertain_below=1.0, fitted_on="validation",
                                                   n_images=10, max_validation_risk=0.005, data_fingerprint="f",
                                                   git_commit="c"))
    result = predict.predict_files(images, path, progress=False)
    sharp = result.frame()
    cols = [f"p_{c}" for c in CLASSES]
    assert (sharp.prediction == plain.prediction).all()
    np.testing.assert_allclose(sharp[cols].to_numpy(), softmax(np.log(plain[cols].to_numpy()) / 0.25, axis=1),
                               atol=1e-4)
    assert sharp.uncertain.all() and (sharp.temperature == 0.25).all()
    parsed = json.loads(predict.render(result, "json"))
    assert parsed["temperature"] == 0.25 and parsed["calibrated"] and parsed["predictions"][0]["uncertain"]
    assert "temperature 0.250" in predict.render(result, "table")


@pytest.mark.parametrize("scale", [2.0, 40.0])  # 40: saturated probabilities, many exactly 1.0
def test_vectorised_bootstrap_equals_the_maintained_scores_on_each_resample(scale):
    rng = np.random.default_rng(2)
    proba = softmax(rng.normal(0, scale, (400, 4)), axis=1)
    y = np.where(rng.random(400) < 0.8, proba.argmax(1), rng.integers(0, 4, 400))
    idx = rng.integers(0, 400, (15, 400))
    fast = calibration.bootstrap_scores(y, proba, idx)
    for b, rows in enumerate(idx):
        slow = calibration.calibration_scores(y[rows], proba[rows])  # torchmetrics and scikit-learn
        for k, v in fast.items():
            assert v[b] == pytest.approx(slow[k], abs=1e-6), k
