"""Does mask guidance help on a collection left out? Notebook 11's leave-one-out runs beside their
mask-guided variant, each scored on all of the collection it never saw.

experiments/generalised_guided.py showed that mask guidance (`generalisation.MASK_GUIDED`, towards
`generalisation.Guide`'s masks and boxes) moves the shipped recipe's Grad-CAM onto the BraTS tumours of
the `tune` part at the same Kaggle validation accuracy. A recipe is chosen on validation and on the
leave-one-collection-out folds as well, so this trains each fold both ways (seed 0, the profile's
`generalise_steps`; the guide reads only the Kaggle masks and the boxes of the collections trained on)
and writes each fold's detection or specificity on the held-out collection (BraTS by plane too) and the
Kaggle validation accuracy to experiments/results/generalised_guided_folds.json. Neither Kaggle Testing
nor a `test` part is read apart from the held-out collection's `all`, which notebook 11 reports for the
recipe.

    .venv/bin/python experiments/generalised_guided_folds.py
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.training import generalisation


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0], default_seeds=None, overrides=False,
                         runs_root=False).parse_args(argv)
    d = common.load_collections_data(args.profile)
    collections = d.collections
    parts, pool = d.parts, d.pool
    guide = generalisation.Guide.build(pool, d.dataset, d.split, collections, d.params["image_size"])
    rows = []
    for held in collections:
        trained_on = tuple(n for n in collections if n != held)
        for variant, g in (("recipe", None), ("mask_guided", guide)):
            run = generalisation.train_generalised(d.params, 0, pool, d.split, parts, trained_on, guide=g,
                                                   progress=False)
            row = {"held_out": held, "variant": variant, **common.fold_record(d, held, run)}
            measure, value = common.held_out_measure(row["held_out_scores"])
            print(json.dumps({"held_out": held, "variant": variant, measure: value,
                              "validation_accuracy": row["validation_accuracy"]}), flush=True)
            rows.append(row)
    common.write_result(args, "generalised_guided_folds", pool.fingerprint, runs=rows,
                        chosen_on="the leave-one-collection-out folds and Kaggle validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
