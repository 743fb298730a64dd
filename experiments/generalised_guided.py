"""Does mask guidance make the shipped recipe look at the tumour? Notebook 11's shipped run beside its
mask-guided variant, scored on what may choose a recipe: Kaggle validation, each collection's `tune`
part, and Grad-CAM pointing inside the BraTS boxes of the `tune` part.

The shipped recipe detects BraTS gliomas, but its Grad-CAM maximum falls inside a tumour box for few
of them; notebook 07's mask-guided model, trained on the Kaggle set alone, points inside most BraTS
boxes although it misses most of those tumours. The variant (`generalisation.MASK_GUIDED`) trains
notebook 07's model and mask term inside the recipe, towards the Kaggle training images' expert masks
and the BraTS `train` images' tumour boxes (`generalisation.Guide`); both runs take the profile's
`shipped_steps`. Writes experiments/results/generalised_guided.json. Neither Kaggle Testing nor a
`test` part is read.

    .venv/bin/python experiments/generalised_guided.py --seeds 0
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis.collection_scores import model_scores, pointing_in_boxes
from braintumour.analysis.shipped import tumour_cams, validation_accuracy
from braintumour.config import CLASSES
from braintumour.datasets.images import box_masks
from braintumour.training import generalisation

NOTUMOR = CLASSES.index("notumor")


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0], overrides=False, runs_root=False).parse_args(argv)
    d = common.load_collections_data(args.profile)
    collections, size = d.collections, d.params["image_size"]
    parts, pool = d.parts, d.pool
    guide = generalisation.Guide.build(pool, d.dataset, d.split, collections, size)
    brats = collections["brats"].rows("tune")
    boxes = box_masks(collections["brats"].dataset.manifest.iloc[parts["brats"]["tune"]], size)
    val = d.images[d.split.val], d.labels[d.split.val]
    notumor = val[1] == NOTUMOR
    rows = []
    for seed in args.seeds:
        for variant, g in (("shipped", None), ("mask_guided", guide)):
            run = generalisation.train_generalised(d.params, seed, pool, d.split, parts, tuple(collections),
                                                   steps=d.params["shipped_steps"], guide=g, progress=False)
            row = {"seed": seed, "variant": variant,
                   "validation_accuracy": round(validation_accuracy(run.model, *val), 4),
                   "validation_notumor_recall": round(validation_accuracy(run.model, val[0][notumor],
                                                                          val[1][notumor]), 4),
                   "brats_tune_pointing": pointing_in_boxes(tumour_cams(run.model, brats["images"]), boxes,
                                                            brats["groups"]),
                   "tune": model_scores(run.model, collections, "tune"), **common.run_record(run)}
            print(json.dumps({k: row[k] for k in ("seed", "variant", "validation_accuracy",
                                                  "validation_notumor_recall")}
                             | {"pointing": round(row["brats_tune_pointing"]["value"], 3)}), flush=True)
            rows.append(row)
    common.write_result(args, "generalised_guided", pool.fingerprint, runs=rows,
                        chosen_on="Kaggle validation, the collections' tune parts and the BraTS tune boxes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
