"""Which training images should the shipped model's unfamiliar score know? The Kaggle training images
alone, as for every other model, or every image the shipped model trained on?

The shipped model (notebook 11) trains on the Kaggle set and each collection's `train` part, so an image
like those parts is familiar to it; a detector fitted on the Kaggle images alone calls most of them
unfamiliar all the same. For each of the profile's shipped seeds (through the run cache), the detector
(`ood.default_scores`) is fitted both ways and thresholded on Kaggle validation (`ood.fit_detector`'s
rule), the calibration as `shipped.fit_flags` fits it; measured on each collection's `tune` part: the
share flagged unfamiliar, the share of the errors flagged either way, and the error among the unflagged
images (the issue's target: at most 5% on every collection). Writes
experiments/results/shipped_flags.json. Neither Kaggle Testing nor a `test` part is read.

    .venv/bin/python experiments/shipped_flags.py
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis import flag_scores, ood, shipped
from braintumour.training import generalisation


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0], default_seeds=None, overrides=False,
                         runs_root=False).parse_args(argv)
    d = common.load_collections_data(args.profile)
    collections = d.collections
    parts, pool = d.parts, d.pool
    fits = {"kaggle_training": (d.images[d.split.train], d.labels[d.split.train]),
            "all_training": pool.trained_images(d.split, {name: p["train"] for name, p in parts.items()})}
    validation = d.images[d.split.val], d.labels[d.split.val]
    tune = {name: (c.rows("tune")["images"], c.rows("tune")["labels"]) for name, c in collections.items()}
    rows = []
    for seed in d.params["generalise_seeds"]:
        run = generalisation.train_generalised(d.params, seed, pool, d.split, parts, tuple(collections),
                                               steps=d.params["shipped_steps"], progress=False)
        calibration, trained = shipped.fit_flags(run.model, fits["all_training"], validation, pool.fingerprint)
        detectors = {"kaggle_training": ood.fit_detector(run.model, fits["kaggle_training"], validation[0]),
                     "all_training": trained}
        for fit, detector in detectors.items():
            reports = {name: flag_scores.flag_report(run.model, calibration, detector, *s)[0]
                       for name, s in tune.items()}
            worst = max(r["error_unflagged"] or 0.0 for r in reports.values())
            rows.append({"seed": seed, "fit_on": fit, "n_fit": detector.n_fit,
                         "validation_flagged": detector.validation_flagged, "worst_unflagged_error": worst,
                         "tune": reports, **common.run_record(run)})
            print(json.dumps({"seed": seed, "fit_on": fit, "worst_unflagged_error": round(worst, 4)}
                             | {name: round(r["unfamiliar_share"], 3) for name, r in reports.items()}), flush=True)
    common.write_result(args, "shipped_flags", pool.fingerprint, runs=rows,
                        chosen_on="the collections' tune parts (Kaggle validation for thresholds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
