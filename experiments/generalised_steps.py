"""Does the generalised recipe lose Kaggle accuracy for want of steps? Notebook 11's shipped run with
more optimiser steps, scored on what may choose a recipe: Kaggle validation and each collection's
`tune` part.

Notebook 11's shipped model (the recipe on the Kaggle set and every collection's `train` part) trains
the cpu profile's `generalise_steps`; its Kaggle validation accuracy is about 95%, where notebook 03's
plain recipe, which spends every step on the Kaggle set, reaches about 99%. This trains the same
recipe for `--steps` steps (the epochs raised so that they do not stop it first) through the run cache,
and writes Kaggle validation accuracy and *notumor* recall, and detection or specificity on each `tune`
part, to experiments/results/generalised_steps-<steps>.json. Neither Kaggle Testing nor a `test` part
is read.

    .venv/bin/python experiments/generalised_steps.py --steps 6000
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis.collection_scores import model_scores
from braintumour.analysis.shipped import validation_accuracy
from braintumour.config import CLASSES
from braintumour.datasets import audit, splits
from braintumour.datasets.folds import AUDIT_IMAGE_SIZE
from braintumour.datasets.kaggle import load_dataset, load_images
from braintumour.training import generalisation
from braintumour.training.profiles import get_profile

NOTUMOR = CLASSES.index("notumor")


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], overrides=False, runs_root=False)
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps of the run")
    args = ap.parse_args(argv)
    params = get_profile(args.profile)
    kaggle = load_dataset()
    images, labels = load_images(kaggle, params["image_size"]), kaggle.manifest.label.to_numpy()
    split = splits.load_split(kaggle, per_class_limit=params["per_class_limit"])
    hashes = audit.perceptual_hashes(load_images(kaggle, AUDIT_IMAGE_SIZE))
    collections = generalisation.load_collections(kaggle, hashes, params["image_size"], params["collection_limit"])
    parts = {name: c.parts for name, c in collections.items()}
    pool = generalisation.Pool.stack(kaggle, images, collections)
    epochs = max(params["epochs"], -(-args.steps * params["epochs"] // params["generalise_steps"]))
    rows = []
    for seed in args.seeds:
        run = generalisation.train_generalised(params, seed, pool, split, parts, tuple(collections), progress=False,
                                               max_steps=args.steps, epochs=epochs)
        val = images[split.val], labels[split.val]
        notumor = val[1] == NOTUMOR
        row = {"seed": seed, "steps": args.steps,
               "validation_accuracy": round(validation_accuracy(run.model, *val), 4),
               "validation_notumor_recall": round(validation_accuracy(run.model, val[0][notumor], val[1][notumor]), 4),
               "tune": model_scores(run.model, collections, "tune"), **common.run_record(run)}
        print(json.dumps({k: row[k] for k in ("seed", "steps", "validation_accuracy", "validation_notumor_recall")}),
              flush=True)
        rows.append(row)
    common.write_result(args, f"generalised_steps-{args.steps}", pool.fingerprint, runs=rows,
                        chosen_on="Kaggle validation and the collections' tune parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
