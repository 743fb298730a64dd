"""How well `predict`'s two flags catch a model's errors: on a set of images, the share flagged
`unfamiliar` (the out-of-distribution score, `ood`) and `uncertain` (the calibrated top probability,
`calibration`), the share of the errors either flag marks, the error left among unflagged images, and
how well the unfamiliar score alone ranks errors above correct answers (AUROC)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from braintumour.analysis.calibration import Calibration
from braintumour.analysis.collection_scores import NOTUMOR, is_tumour
from braintumour.analysis.ood import OodDetector, logits_and_features


def errors(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Wrong answers: the class, where the label is one of the four; tumour or not, where it is only that."""
    pred = proba.argmax(1)
    known = labels < proba.shape[1]
    return np.where(known, pred != labels, (pred != NOTUMOR) != is_tumour(labels))


def flag_report(model, calibration: Calibration, detector: OodDetector, images: np.ndarray, labels: np.ndarray
                ) -> tuple[dict, dict[str, np.ndarray]]:
    """The flags' measures on one set, and its risk-coverage curve along the unfamiliar score (most
    familiar first)."""
    return flag_measures(calibration, detector, *logits_and_features(model, images, kinds=detector.kinds), labels)


def flag_measures(calibration: Calibration, detector: OodDetector, logits: np.ndarray, features: dict[str, np.ndarray],
                  labels: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """`flag_report` from the model's logits and features (`ood.logits_and_features`) of the set."""
    proba, uncertain = calibration.apply(logits)
    score, unfamiliar = detector.apply(logits, features)
    wrong, flagged = errors(proba, labels), uncertain | unfamiliar
    report = {
        "images": len(labels), "errors": int(wrong.sum()),
        "unfamiliar_share": float(unfamiliar.mean()), "uncertain_share": float(uncertain.mean()),
        "flagged_share": float(flagged.mean()),
        "errors_flagged_share": float(flagged[wrong].mean()) if wrong.any() else None,
        "errors_unfamiliar_share": float(unfamiliar[wrong].mean()) if wrong.any() else None,
        "error_unflagged": float(wrong[~flagged].mean()) if (~flagged).any() else None,
        "unfamiliar_score_auroc": (float(roc_auc_score(wrong, score)) if 0 < wrong.sum() < len(wrong) else None),
    }
    order = np.argsort(score, kind="stable")
    k = np.arange(1, len(order) + 1)
    return report, {"coverage": k / len(order), "risk": np.cumsum(wrong[order]) / k}


def model_flag_reports(model_path, sets: dict[str, tuple[np.ndarray, np.ndarray]]
                       ) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]] | None:
    """`flag_report` of a saved model on each set (images, labels), with the calibration and the
    out-of-distribution detector beside it; None, with a line saying why, where either is missing."""
    from braintumour.analysis.calibration import load_calibration
    from braintumour.analysis.ood_files import load_detector
    from braintumour.training.checkpoints import load_checkpoint

    calibration, detector = load_calibration(model_path), load_detector(model_path)
    if calibration is None or detector is None:
        print(f"{model_path}: no calibration or out-of-distribution file beside it (notebook 09, "
              "`python -m braintumour ood-fit`); left out")
        return None
    model = load_checkpoint(model_path)[0]
    reports, curves = {}, {}
    for name, (images, labels) in sets.items():
        reports[name], curves[name] = flag_report(model, calibration, detector, images, labels)
    return reports, curves


def predict_models_flags(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[dict, dict]]:
    """`model_flag_reports` of each model `predict` can use (`predict.DEFAULT_MODELS`, in this
    profile's reports folder) whose file exists; an absent out-of-distribution file is fitted first
    (`ood_files.fit_for_model`, as `python -m braintumour ood-fit` does)."""
    from pathlib import Path

    from braintumour.analysis.ood_files import fit_for_model, load_detector
    from braintumour.predict import DEFAULT_MODELS
    from braintumour.training.checkpoints import model_file

    out = {}
    for path in (model_file(Path(p).stem) for p in DEFAULT_MODELS):
        if not path.is_file():
            continue
        if load_detector(path) is None:
            fit_for_model(path)
        result = model_flag_reports(path, sets)
        if result is not None:
            out[path.stem] = result
    return out
