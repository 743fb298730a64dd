"""Refit the custom CNN's recipe on Training and validation together, keep the last epoch, print Testing.

Notebook 03 holds 572 of Training's 5,712 images out as validation and keeps the epoch with the best
validation macro-F1. `benchmarks/checkpoint_selection.py` found that choice worth about one Testing
error over three seeds once BatchNorm is re-estimated (best epoch 28, last epoch 29), so the held-out
images may be worth more as training data: the usual "refit on all training data once the recipe is
fixed". This script trains the recipe (the profile's epochs, nothing tuned on the refit) on the union,
keeps `last.pt`, re-estimates BatchNorm over the union's un-augmented images, and scores Testing.
Nothing is held out for choosing a checkpoint, and the validation numbers in its history are on images
it trained on: a measurement for deciding whether to change the protocol, not a notebook result.
Runs are cached in `data/interim/runs/` under their own keys (the split is part of the key).

    .venv/bin/python benchmarks/refit_train_val.py --seeds 0,1,2
"""

from __future__ import annotations

import json

from screen_recipe import RecipeData, load_recipe_data, recipe_args

from braintumour import evaluate, runs, splits
from braintumour.checkpoints import reestimate_batchnorm
from braintumour.recipes import custom_cnn_config


def main() -> None:
    p, overrides, seeds = recipe_args(__doc__.splitlines()[0], [0])
    d = load_recipe_data(p, overrides)
    if d.train_masks is not None:
        raise SystemExit("mask_weight: the Training masks are aligned with the split's training images only")
    refit = splits.refit_split(d.split)
    for seed in seeds:
        # Statistics as trained first, then re-estimated here (as notebook 03's reestimate_bn does;
        # it is not part of the run key, so the notebook reuses these runs).
        cfg = custom_cnn_config(p, seed, **{**overrides, "reestimate_bn": False})
        weights = splits.class_weights(d.labels[refit.train], cfg.class_weighting)
        run = runs.train_or_load(cfg, d.images, d.labels, refit, weights, d.dataset.fingerprint, progress=False,
                                 checkpoint="last")
        row = {"seed": seed, "overrides": overrides, "train_images": len(refit.train), "epochs": len(run.history),
               "train_minutes": round(run.train_seconds / 60, 1), "reused": run.reused, "run": run.run_dir.name,
               "as_trained": testing(run.model, d)}
        row["bn_reestimated"] = testing(reestimate_batchnorm(run.model, d.images[refit.train]), d)  # in place: after
        print(json.dumps(row))


def testing(model, d: RecipeData) -> dict:
    proba = evaluate.predict_proba(model, d.images[d.split.test])
    test = evaluate.classification_metrics(d.labels[d.split.test], proba)
    return {"test_accuracy": round(test["accuracy"], 4), "test_macro_f1": round(test["macro_f1"], 4),
            "test_errors": test["errors"]}


if __name__ == "__main__":
    main()
