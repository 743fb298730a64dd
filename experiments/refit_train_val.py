"""Refit the custom CNN's recipe on Training and validation together, keep the last epoch, print Testing.

Notebook 03 holds 572 of Training's 5,712 images out as validation and keeps the epoch with the best
validation macro-F1. `experiments/checkpoint_selection.py` found that choice worth about one Testing
error over three seeds once BatchNorm is re-estimated (best epoch 28, last epoch 29), so the held-out
images may be worth more as training data: the usual "refit on all training data once the recipe is
fixed". This script trains the recipe (the profile's epochs, nothing tuned on the refit) on the union,
keeps `last.pt`, re-estimates BatchNorm over the union's un-augmented images, and scores Testing.
Nothing is held out for choosing a checkpoint, and the validation numbers in its history are on images
it trained on: a measurement for deciding whether to change the protocol, not a notebook result.
Runs are cached in `data/interim/runs/` under their own keys (the split is part of the key). Prints one
JSON line per seed and writes them, with each run's key and config, to
`experiments/results/refit_train_val[-<overrides>].json`.

    .venv/bin/python experiments/refit_train_val.py --seeds 0,1,2
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.datasets import splits
from braintumour.training.checkpoints import reestimate_batchnorm


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    overrides = common.overrides_of(args)
    d = common.load_recipe_data(args.profile, overrides)
    if d.train_masks is not None:
        raise SystemExit("mask_weight: the Training masks are aligned with the split's training images only")
    refit = splits.refit_split(d.split)
    rows = []
    for seed in args.seeds:
        # Statistics as trained first, then re-estimated here (as notebook 03's reestimate_bn does;
        # it is not part of the run key, so the notebook reuses these runs).
        run = common.train_recipe(d, seed, {**overrides, "reestimate_bn": False}, split=refit, checkpoint="last",
                                  runs_root=args.runs)
        row = {"seed": seed, "overrides": overrides, "train_images": len(refit.train), "epochs": len(run.history),
               "train_minutes": round(run.train_seconds / 60, 1), "reused": run.reused, "run": run.run_dir.name,
               "as_trained": common.testing(run.model, d)}
        row["bn_reestimated"] = common.testing(reestimate_batchnorm(run.model, d.images[refit.train]), d)  # in place
        print(json.dumps(row), flush=True)
        rows.append({**row, **common.run_record(run)})
    common.write_result(args, common.result_name("refit_train_val", overrides), d.dataset.fingerprint,
                        overrides=overrides, seeds=args.seeds, split=refit.sizes(),
                        test_errors_summed={k: sum(r[k]["test_errors"] for r in rows)
                                            for k in ("as_trained", "bn_reestimated")},
                        runs=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
