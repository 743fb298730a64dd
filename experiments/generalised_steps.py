"""Does the generalised recipe lose Kaggle accuracy for want of steps? Notebook 11's shipped run with
more optimiser steps, scored on what may choose a recipe: Kaggle validation and each collection's
`tune` part.

Notebook 11's shipped model (the recipe on the Kaggle set and every collection's `train` part) trained
the cpu profile's `generalise_steps` before its `shipped_steps` were set from this experiment; its Kaggle
validation accuracy was about 95%, where notebook 03's plain recipe, which spends every step on the
Kaggle set, reaches about 99%. This trains the same recipe for `--steps` steps
(`generalisation.generalised_config`: the epochs raised so that they do not stop it first) through the
run cache, and writes Kaggle validation accuracy and *notumor* recall, and detection or specificity on
each `tune` part, to experiments/results/generalised_steps-<steps>.json. Neither Kaggle Testing nor a
`test` part is read.

    .venv/bin/python experiments/generalised_steps.py --steps 6000
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis.collection_scores import model_scores
from braintumour.analysis.shipped import validation_accuracy
from braintumour.config import CLASSES
from braintumour.training import generalisation

NOTUMOR = CLASSES.index("notumor")


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], overrides=False, runs_root=False)
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps of the run")
    args = ap.parse_args(argv)
    d = common.load_collections_data(args.profile)
    params, images, labels, split, collections = d.params, d.images, d.labels, d.split, d.collections
    parts, pool = d.parts, d.pool
    rows = []
    for seed in args.seeds:
        run = generalisation.train_generalised(params, seed, pool, split, parts, tuple(collections), progress=False,
                                               steps=args.steps)
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
