"""An ingredient weighed on the leave-one-collection-out folds: notebook 11's four leave-one-out runs with
`FIELD=JSON` changes to the recipe, each scored on all of the collection it never saw.

Each fold trains on the Kaggle set and the `train` parts of the other collections (seed 0, the profile's
`generalise_steps`, the run kept by Kaggle validation macro-F1, as notebook 11's) with the recipe's fields
overridden (`generalisation.generalised_config`; e.g. `max_steps=6000 epochs=100`) and the other collections'
share of the training rows set by `--collection-share`, every fold or those named by `--held-out`. It writes
each fold's detection or specificity on the held-out collection (BraTS by plane too) and the Kaggle
validation accuracy to experiments/results/generalised_folds-<changes>.json,
beside the recipe's own scores as notebook 11 wrote them (reports/metrics/generalisation.json,
`leave_one_out`: the same folds, seed and scoring). Neither Kaggle Testing nor a `test` part is read apart
from the held-out collection's `all`, which notebook 11 reports for the recipe.

    .venv/bin/python experiments/generalised_folds.py max_steps=6000 epochs=100 [--held-out brats,openneuro]
    .venv/bin/python experiments/generalised_folds.py --collection-share 1
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.reporting.summary import load_metrics
from braintumour.training import generalisation


def recipe_reported(profile: str) -> dict:
    """Notebook 11's leave-one-out scores of the recipe, where its metrics file is of this profile."""
    reported = load_metrics("generalisation")
    if reported is None or reported.get("profile") != profile:
        return {}
    return reported["leave_one_out"]


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], default_seeds=None, runs_root=False)
    ap.add_argument("--held-out", type=lambda text: text.split(","), default=None,
                    help="the folds to train, by the collection held out, e.g. brats,openneuro (default: every one)")
    ap.add_argument("--collection-share", type=float, default=generalisation.MIN_SHARE,
                    help="each other collection's training rows repeated up to this share of the Kaggle training "
                         f"rows (default {generalisation.MIN_SHARE}; 1: sampling balanced by collection)")
    args = ap.parse_args(argv)
    changes = common.overrides_of(args)
    share = {} if args.collection_share == generalisation.MIN_SHARE else {"collection_share": args.collection_share}
    recorded = changes | share  # the recipe's changes, as the result's name and overrides say them
    d = common.load_collections_data(args.profile)
    reported = recipe_reported(args.profile)
    rows = []
    unknown = set(args.held_out or ()) - set(d.collections)
    if unknown:
        raise SystemExit(f"--held-out: no collection {', '.join(sorted(unknown))}; known: {', '.join(d.collections)}")
    for held in args.held_out or d.collections:
        trained_on = tuple(n for n in d.collections if n != held)
        run = generalisation.train_generalised(d.params, 0, d.pool, d.split, d.parts, trained_on, progress=False,
                                               collection_share=args.collection_share, **changes)
        row = {"held_out": held, **common.fold_record(d, held, run), "recipe_held_out_scores": reported.get(held)}
        measure, value = common.held_out_measure(row["held_out_scores"])
        recipe = reported.get(held, {}).get(measure, {}).get("value")
        print(json.dumps({"held_out": held, measure: value, "recipe": recipe,
                          "validation_accuracy": row["validation_accuracy"]}), flush=True)
        rows.append(row)
    common.write_result(args, common.result_name("generalised_folds", recorded), d.pool.fingerprint,
                        overrides=recorded, runs=rows,
                        chosen_on="the leave-one-collection-out folds and Kaggle validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
