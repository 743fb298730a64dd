"""Which unfamiliar score `predict` uses: every candidate scored by how many of the models' errors it
flags on collections the models never trained on, with the threshold each sets on validation.

For each model `predict` can use that has a file (`predict.DEFAULT_MODELS`), each candidate (a method of
`ood.METHODS`, the features it reads, KNN's k; or KNN on the stage statistics together with Mahalanobis
on the penultimate features or KNN on the thumbnail, or all three, the 2% shared between them) is
fitted on the Kaggle training part and thresholded so that at most 2% of validation is flagged
(`ood.fit_detector`'s rule). Measured on each collection's `tune` part: the share of the model's errors
flagged `uncertain` or `unfamiliar`; and whether every non-brain test image (tests/nonbrain.py) that
the input check lets through is flagged. The candidate kept is the one whose worst collection is best,
averaged over the models, among those that flag every such non-brain image for every model: the issue
asks for half of the errors flagged on *each* collection, and for every non-brain input refused or
flagged. The `test` parts and Kaggle Testing are scored too and written beside, for the record; the
choice reads only the `tune` parts and the non-brain images. Writes experiments/results/ood_screen.json.

    .venv/bin/python experiments/ood_screen.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import common
import numpy as np

from braintumour.analysis import ood
from braintumour.analysis.calibration import load_calibration
from braintumour.analysis.flag_scores import flag_measures
from braintumour.inputcheck import NotABrainSlice
from braintumour.predict import DEFAULT_MODELS, read_checked_scan
from braintumour.training.checkpoints import load_checkpoint, model_file

SHARE = ood.MAX_VALIDATION_FLAGGED
CANDIDATES: dict[str, tuple[ood.ScoreSpec, ...]] = {
    "mahalanobis-penultimate": (ood.ScoreSpec("mahalanobis", "penultimate", SHARE),),
    "mahalanobis-stages": (ood.ScoreSpec("mahalanobis", "stages", SHARE),),
    "energy": (ood.ScoreSpec("energy", "penultimate", SHARE),),
    **{f"knn-{kind}-k{k}": (ood.ScoreSpec("knn", kind, SHARE, k),) for kind in ("penultimate", "stages")
       for k in (1, 10, 50)},
    **{f"knn-stages-k1-{knn:.1%}-or-mahalanobis-{SHARE - knn:.1%}": (
        ood.ScoreSpec("knn", "stages", knn, 1), ood.ScoreSpec("mahalanobis", "penultimate", round(SHARE - knn, 6)))
       for knn in (0.015, 0.01, 0.005)},
    "knn-thumbnail-k1": (ood.ScoreSpec("knn", "thumbnail", SHARE, 1),),
    **{f"knn-stages-k1-{knn:.1%}-or-knn-thumbnail-k1-{SHARE - knn:.1%}": (
        ood.ScoreSpec("knn", "stages", knn, 1), ood.ScoreSpec("knn", "thumbnail", round(SHARE - knn, 6), 1))
       for knn in (0.015, 0.01)},
    "knn-stages-k1-1.0%-or-knn-thumbnail-k1-0.5%-or-mahalanobis-0.5%": (
        ood.ScoreSpec("knn", "stages", 0.01, 1), ood.ScoreSpec("knn", "thumbnail", 0.005, 1),
        ood.ScoreSpec("mahalanobis", "penultimate", 0.005)),
}


def image_sets(d: common.CollectionsData) -> tuple[dict, dict]:
    """(Kaggle training images with labels, and validation images), and {set name: (images, labels)} for
    Kaggle Testing and each collection's `tune` and `test` parts."""
    images, labels, split = d.images, d.labels, d.split
    fit = {"train": (images[split.train], labels[split.train]), "val": images[split.val]}
    sets = {"kaggle_testing": (images[split.test], labels[split.test])}
    for part in ("tune", "test"):
        sets |= {f"{n}.{part}": (c.rows(part)["images"], c.rows(part)["labels"]) for n, c in d.collections.items()}
    return fit, sets


def nonbrain_images(size: int) -> dict[str, np.ndarray]:
    """The non-brain test images (tests/nonbrain.py, loaded from its file: the tests are no package) that
    the input check lets through, as the model sees them."""
    file = Path(__file__).resolve().parents[1] / "tests" / "nonbrain.py"
    spec = importlib.util.spec_from_file_location("nonbrain", file)
    nonbrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nonbrain)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for paths in nonbrain.nonbrain_images(Path(folder)).values():
            for name, path in paths.items():
                try:
                    out[name] = read_checked_scan(path, size)
                except NotABrainSlice:
                    pass
    return out


def model_outputs(model, fit: dict, sets: dict, nonbrain: dict) -> dict:
    """The model's logits and features of every kind on every image set, from one pass each: every
    candidate is fitted and scored on these."""
    kinds = ood.FEATURE_KINDS
    return {"train": (ood.logits_and_features(model, fit["train"][0], 256, kinds)[1], fit["train"][1]),
            "val": ood.logits_and_features(model, fit["val"], 256, kinds),
            "nonbrain": ood.logits_and_features(model, np.stack(list(nonbrain.values())), kinds=kinds),
            **{name: ood.logits_and_features(model, images, kinds=kinds) for name, (images, _) in sets.items()}}


def errors_flagged(model, calibration, outputs: dict, sets: dict, specs: tuple, nonbrain: dict) -> dict:
    """Per set: the share flagged unfamiliar, and the share of the errors flagged either way
    (`flag_scores.flag_measures`); and the non-brain images left unflagged."""
    detector = ood.fit_on_features(model, specs, outputs["train"], outputs["val"])
    missed = detector.apply(*outputs["nonbrain"])[1]
    out = {"nonbrain_unflagged": [n for n, flagged in zip(nonbrain, missed, strict=True) if not flagged]}
    for name, (_, labels) in sets.items():
        report = flag_measures(calibration, detector, *outputs[name], labels)[0]
        share = report["errors_flagged_share"]
        out[name] = {"unfamiliar": round(report["unfamiliar_share"], 4), "errors": report["errors"],
                     "errors_flagged": None if share is None else round(share, 4)}
    return out


def worst_tune(result: dict) -> float:
    """The lowest share of errors flagged over the collections' `tune` parts that have errors."""
    return min((v["errors_flagged"] for name, v in result.items() if name.endswith(".tune") and v["errors"]),
               default=1.0)


def admissible(by_model: dict) -> bool:
    return not any(r["nonbrain_unflagged"] for r in by_model.values())


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0], default_seeds=None, overrides=False,
                         runs_root=False).parse_args(argv)
    d = common.load_collections_data(args.profile)
    fit, sets = image_sets(d)
    nonbrain = nonbrain_images(d.params["image_size"])
    results: dict[str, dict] = {}
    for path in (model_file(Path(p).stem) for p in DEFAULT_MODELS):
        if not path.is_file():
            continue
        model, calibration = load_checkpoint(path)[0], load_calibration(path)
        outputs = model_outputs(model, fit, sets, nonbrain)
        for name, specs in CANDIDATES.items():
            result = errors_flagged(model, calibration, outputs, sets, specs, nonbrain)
            results.setdefault(name, {})[path.stem] = result
            print(json.dumps({"candidate": name, "model": path.stem, "worst_tune": worst_tune(result),
                              "nonbrain_unflagged": result["nonbrain_unflagged"]}), flush=True)
    ranking = {name: round(float(np.mean([worst_tune(r) for r in by_model.values()])), 4)
               for name, by_model in results.items()}
    best = max((n for n in ranking if admissible(results[n])), key=ranking.get)
    print(json.dumps({"ranking": ranking, "chosen": best}), flush=True)
    common.write_result(args, "ood_screen", d.dataset.fingerprint, chosen=best, worst_tune_mean=ranking,
                        candidates=results, nonbrain_images=len(nonbrain),
                        chosen_on="the collections' tune parts and the non-brain test images the input check lets "
                                  "through (Kaggle validation for thresholds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
