"""The functions that moved out of the notebooks into the library: fast, on small inputs shaped like the
metrics files (reports/metrics/*.json), without the smoke chain."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import model_record

from braintumour.analysis import explain
from braintumour.datasets import folds
from braintumour.datasets.splits import Split
from braintumour.reporting import readable, summary
from braintumour.training import external, runs
from braintumour.training.models import build_model
from braintumour.training.profiles import get_profile
from braintumour.training.recipes import baseline_config, custom_cnn_config

# -- runs: notebooks 03, 04, 06 and 07's recipes and runs


def test_train_seeds_runs_each_seed_with_its_recipe_on_one_split(monkeypatch):
    calls = []

    def fake(cfg, images, labels, split, weights, fingerprint, **kwargs):
        calls.append((cfg, split, weights, fingerprint, kwargs))
        return f"run {cfg.seed}"

    monkeypatch.setattr(runs, "train_or_load", fake)
    params = get_profile("cpu")
    split = Split(np.arange(4), np.arange(4, 6), np.arange(6, 8))
    weights = np.ones(4)
    out = runs.train_seeds({s: custom_cnn_config(params, s, "none") for s in (3, 5)}, np.zeros((8, 2, 2)),
                           np.zeros(8, int), split, weights, "fp", retrain=True, checkpoint="last")
    assert out == {3: "run 3", 5: "run 5"}
    assert [c[0].seed for c in calls] == [3, 5] and all(c[0].class_weighting == "none" for c in calls)
    assert all(c[1] is split and c[2] is weights and c[3] == "fp" for c in calls)
    assert all(c[4] == {"retrain": True, "checkpoint": "last"} for c in calls)


def test_model_config_is_the_custom_cnn_or_the_baseline_recipe_with_its_steps():
    params = get_profile("cpu")
    assert runs.model_config(params, "custom_cnn", max_steps=1860) == custom_cnn_config(params, seed=0, max_steps=1860)
    assert runs.model_config(params, "resnet50", max_steps=154) == baseline_config(params, "resnet50", seed=0,
                                                                                   max_steps=154)


def test_guided_config_is_the_custom_cnn_recipe_for_the_guided_model():
    params = get_profile("cpu")
    cfg = runs.guided_config(params, 2, 0.5, 100)
    assert cfg == custom_cnn_config(params, 2, model="custom_cnn_guided", max_steps=100, mask_weight=0.5)
    assert cfg.model == "custom_cnn_guided" and runs.guided_config(params, 0, None).mask_weight is None


# -- explain: notebooks 05, 06 and 07's scores


def square_masks(n: int, size: int = 16) -> np.ndarray:
    masks = np.zeros((n, size, size), bool)
    masks[:, 4:8, 4:8] = True
    return masks


def test_positions_in_finds_rows_within_a_subset():
    np.testing.assert_array_equal(explain.positions_in(np.array([2, 5, 9, 11]), np.array([5, 11])), [1, 3])


def test_scores_on_and_blob_scores_summarise_per_image_scores_overall_and_per_class():
    masks = square_masks(4)
    on_tumour = masks.astype(np.float32)  # all heat inside the mask
    classes = np.array(["glioma", "glioma", "pituitary", "pituitary"])
    scores = explain.scores_on(on_tumour, masks, classes)
    assert set(scores) == {"all", "glioma", "pituitary"}
    assert scores["all"]["pointing"]["mean"] == 1.0 and scores["all"]["energy"]["mean"] == pytest.approx(1.0)
    assert scores["glioma"]["iou"]["n"] == 2
    blob = explain.centred_gaussian(16)
    assert explain.blob_scores(blob, masks, classes) == explain.scores_on(np.repeat(blob[None], 4, axis=0), masks,
                                                                          classes)


def test_gradcam_scores_and_the_blob_beside_them():
    torch.manual_seed(0)
    model = build_model("custom_cnn").eval()
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    labels, masks = np.array([0, 1, 2]), square_masks(3, 64)
    classes = np.array(["glioma", "meningioma", "pituitary"])
    summary_, maps = explain.gradcam_scores(model, images, labels, masks, classes)
    assert maps.shape == (3, 64, 64) and summary_["all"]["pointing"]["n"] == 3
    rows = np.array([10, 20, 30])
    frame = explain.gradcam_and_blob_scores(model, images, labels, masks, rows, classes, explain.centred_gaussian(64))
    assert list(frame.source) == ["custom_cnn"] * 3 + ["centred_blob"] * 3
    assert list(frame.row) == [10, 20, 30] * 2 and list(frame.class_name) == list(classes) * 2
    np.testing.assert_allclose(frame.pointing[:3], explain.score_heatmaps(maps, masks).pointing)


def test_mean_cam_scores_and_blank_share_average_over_seeds():
    def block(p, e, i):
        return {"all": {"pointing": {"mean": p}, "energy": {"mean": e}, "iou": {"mean": i}}}

    blank, full = np.zeros((2, 4, 4)), np.ones((2, 4, 4))
    cams = {0: (block(0.2, 0.1, 0.0), blank), 1: (block(0.4, 0.3, 0.2), full)}
    assert explain.mean_cam_scores(cams) == pytest.approx({"pointing": 0.3, "energy": 0.2, "iou": 0.1})
    assert explain.mean_blank_share(cams) == pytest.approx(0.5)


# -- folds: notebook 06's mean over folds


def test_over_folds_leaves_out_the_official_split_and_other_models():
    scores = {("custom_cnn", "official", "all"): {"accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0},
              ("custom_cnn", "fold_1", "all"): {"accuracy": 0.9, "balanced_accuracy": 0.8, "macro_f1": 0.7},
              ("custom_cnn", "fold_2", "all"): {"accuracy": 0.7, "balanced_accuracy": 0.6, "macro_f1": 0.5},
              ("custom_cnn", "fold_1", "figshare"): {"accuracy": 0.1, "balanced_accuracy": 0.1, "macro_f1": 0.1},
              ("resnet50", "fold_1", "all"): {"accuracy": 0.1, "balanced_accuracy": 0.1, "macro_f1": 0.1}}
    o = folds.over_folds(scores, "custom_cnn", "all")
    assert o["accuracy"]["mean"] == pytest.approx(0.8) and o["accuracy"]["min"] == 0.7 and o["accuracy"]["max"] == 0.9
    assert o["macro_f1"]["mean"] == pytest.approx(0.6) and o["accuracy"]["sd"] > 0


# -- external: notebook 08's mean over a variant's seeds


def test_mean_over_seeds_picks_a_score_from_each_seed():
    per_seed = {0: {"testing_accuracy": 0.98, "external_test": {"detected": 0.90}},
                1: {"testing_accuracy": 0.99, "external_test": {"detected": 0.96}}}
    assert external.mean_over_seeds(per_seed, lambda r: r["testing_accuracy"]) == pytest.approx(0.985)
    assert external.mean_over_seeds(per_seed, lambda r: r["external_test"]["detected"]) == pytest.approx(0.93)


# -- readable: notebook 09's interval cells and notebook 10's figures


def test_value_with_ci_shows_four_decimals_and_the_interval():
    block = {"ece": 0.01234, "ci95": {"ece": [0.01, 0.015]}}
    assert readable.value_with_ci(block, "ece") == "0.0123 [0.0100, 0.0150]"


def test_show_figure_displays_the_saved_png_at_720_px(tmp_path, monkeypatch):
    import IPython.display

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(tmp_path))
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    readable.show_figure("x")
    assert len(shown) == 1 and shown[0].width == 720 and shown[0].filename == str(tmp_path / "figures" / "x.png")


def test_the_export_captions_every_figure_the_results_notebook_shows_as_before():
    import nbformat

    from braintumour.reporting.export import SAVED_FIGURE

    assert SAVED_FIGURE.findall('readable.show_figure("gradcam_methods")\n') == ["gradcam_methods"]
    assert SAVED_FIGURE.findall('outputs.save_figure(fig, "a")\noutputs.save_figure(plots.x(y, "t"), "b");') == [
        "a", "b"]
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "10_results.ipynb", as_version=4)
    shown = [name for c in nb.cells if c.cell_type == "code" for name in SAVED_FIGURE.findall(c.source)]
    assert shown[:2] == ["custom_cnn_confusion_matrix", "baselines_macro_f1"] and len(shown) == 11


# -- summary: notebook 07's ablation rows and notebook 10's closing prose


def test_variant_row_keeps_the_sd_only_over_several_seeds():
    cam = {"pointing": 0.8, "energy": 0.3, "iou": 0.2, "extra": 1.0}
    row = summary.variant_row(3, {"mean": 0.99, "sd": 0.001}, cam, 0.0)
    assert row == {"seeds": 3, "testing_accuracy": 0.99, "testing_accuracy_sd": 0.001, "pointing": 0.8,
                   "energy": 0.3, "iou": 0.2, "blank_maps": 0.0}
    assert summary.variant_row(1, {"mean": 0.98}, cam, 0.1)["testing_accuracy_sd"] is None
    assert summary.variant_row(0, None, cam, 0.0)["testing_accuracy"] is None
    assert summary.ablation_accuracy(row) == "99.00% ± 0.10%"


def metrics_files() -> dict:
    """`data`, `leakage` and `class_weighting_ablation`, as much of them as the conclusions read."""
    return {
        "data": {"counts": {"Training": {"glioma": 1321, "meningioma": 1339, "notumor": 1595, "pituitary": 1457}}},
        "leakage": {"shortcut_classifier": {"test_balanced_accuracy": 0.612},
                    "testing_with_near_duplicate_in_training": {"total": 131, "notumor": 97},
                    "patient_level": {"testing_images_with_patient_id": {"total": 619},
                                      "testing_images_of_training_patients": {"total": 600},
                                      "patients": {"testing_also_in_training": 200, "testing": 210}}},
        "class_weighting_ablation": {"variants": {
            "inverse": {"over_seeds": {"macro_f1": {"mean": 0.9900, "sd": 0.0020}}},
            "none": {"over_seeds": {"macro_f1": {"mean": 0.9890, "sd": 0.0010}}}}},
    }


GRADCAM = {"pointing_tolerance_px": 8, "models": {"custom_cnn": {"methods": {
    "gradcam": {"all": {"pointing": {"mean": 0.41}, "energy": {"mean": 0.12}}},
    "centred_blob": {"all": {"pointing": {"mean": 0.30}, "energy": {"mean": 0.08}}}}}}}
FOLDS = {"max_steps": {"custom_cnn": 1860, "resnet50": 154}, "models": {
    n: {"per_split": {"official": {"figshare": {"accuracy": a}}},
        "over_folds": {"figshare": {"accuracy": {"mean": a - 0.02, "sd": 0.01}}}}
    for n, a in (("custom_cnn", 0.99), ("resnet50", 0.97))}}
GUIDED = {"variants": {
    "mask_term": {"testing_accuracy": 0.99, "testing_accuracy_sd": 0.002, "pointing": 0.81, "energy": 0.33},
    "plain": {"testing_accuracy": 0.991, "testing_accuracy_sd": None, "pointing": 0.18, "energy": 0.03}},
    "unseen_patients": {"gradcam": {"all": {"pointing": {"mean": 0.75}, "energy": {"mean": 0.3}}}}}


def test_conclusions_before_the_later_notebooks_ran_say_so():
    cnn = model_record("custom_cnn", 0.95, seeds=(0, 1))
    cnn.header = type("H", (), {"profile": "cpu"})()
    text = summary.conclusions(metrics_files(), cnn, {}, None, None, None)
    for missing in ("Baselines: not run yet (notebook 04).", "not computed yet (notebook 05)",
                    "Patient-disjoint folds: not run yet (notebook 06).",
                    "Mask-guided model: not run yet (notebook 07)."):
        assert missing in text
    assert text.startswith("\n- **Accuracy.** A 0.00 M-parameter CNN") and text.endswith("  profile.\n")
    assert "131 of 1,311 Testing images (10%)" in text and "most of them *notumor* (97 of 405)" in text
    assert "61.2% balanced accuracy" in text and "imbalance ratio of 1.21" in text
    assert "the effect is small compared with the spread between seeds" in text
    assert "Of the 619 Testing images whose patient is known (figshare), 600" in text
    assert "Numbers from the `cpu`\n  profile." in text


def test_conclusions_with_every_notebook_run_quote_their_numbers():
    cnn = model_record("custom_cnn", 0.95, seeds=(0, 1))
    cnn.header = type("H", (), {"profile": "cpu"})()
    base = model_record("resnet50", 0.9)
    base.mcnemar_vs_custom_cnn = {"p_value": 0.0123}
    text = summary.conclusions(metrics_files(), cnn, {"resnet50": base}, GRADCAM, FOLDS, GUIDED)
    assert (f"the best baseline, ResNet-50 (0.0 M parameters, 2.5 epochs), reaches {base.test['accuracy']:.2%} "
            f"Testing accuracy against {cnn.test['accuracy']:.2%}") in text and "McNemar p = 0.012)" in text
    assert "within 8 px of) the expert tumour outline for 41% of the masked Testing images" in text
    assert f"({summary.fold_run_length(FOLDS)} per run)" in text
    assert "99.00% on the official split, 97.00% ± 1.00% on held-out patients" in text
    assert "points inside it for 81% of the masked Testing images (energy 33%; 75% and 30% on held-out" in text
    assert "at 99.00% ± 0.20% Testing accuracy against the plain model's 99.10% (mean ± sd" in text


def test_conclusions_leave_out_the_patient_sentence_where_the_audit_has_no_patient_level():
    metrics = metrics_files()
    del metrics["leakage"]["patient_level"]
    cnn = model_record("custom_cnn", 0.95)
    cnn.header = type("H", (), {"profile": "smoke"})()
    text = summary.conclusions(metrics, cnn, {}, None, None, None)
    assert "The official split was cut by image.  Notebook 06's folds" in text
    assert "Numbers from the `smoke`" in text
