"""Which Testing images each seed of the custom CNN gets wrong, and what averaging the seeds would leave.

Reads notebook 03's runs (`train.custom_cnn_config`, cached in `data/interim/runs/`; a missing one is
trained) and prints, per seed, its Testing errors; then how many images are wrong in 1, 2, ... seeds,
and the errors of the seeds' averaged probabilities. Errors that differ between seeds are the seed's
variance; errors shared by every seed are hard (or mislabelled) images. The seed average is a
diagnosis, not a model this project reports: it costs the training time of every seed.

    .venv/bin/python benchmarks/seed_errors.py
    .venv/bin/python benchmarks/seed_errors.py model='"custom_cnn_guided"' time_budget_s=900 mask_weight=1.0
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
from screen_recipe import override

from braintumour import data, evaluate, runs, splits
from braintumour.profiles import get_profile
from braintumour.train import custom_cnn_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", type=override, help="TrainConfig fields as FIELD=JSON")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0, 1, 2])
    args = ap.parse_args()
    p = get_profile(args.profile)
    overrides = dict(args.overrides)
    dataset = data.load_dataset()
    images = data.load_images(dataset, p["image_size"])
    labels = dataset.manifest.label.to_numpy()
    split = splits.load_split(dataset, per_class_limit=p["per_class_limit"])
    y = labels[split.test]
    masks = None
    if overrides.get("mask_weight"):
        masks = data.training_masks(dataset, split.train, p["image_size"])
    proba, wrong = {}, {}
    for seed in args.seeds:
        cfg = custom_cnn_config(p, seed, **overrides)
        weights = splits.class_weights(labels[split.train], cfg.class_weighting)
        run = runs.train_or_load(cfg, images, labels, split, weights, dataset.fingerprint, progress=False,
                                 train_masks=masks)
        proba[seed] = evaluate.predict_proba(run.model, images[split.test])
        wrong[seed] = set(np.flatnonzero(proba[seed].argmax(1) != y).tolist())
        print(json.dumps({"seed": seed, "run": run.run_dir.name, "test_errors": len(wrong[seed])}))
    times_wrong = Counter(i for w in wrong.values() for i in w)
    averaged = np.mean([proba[s] for s in args.seeds], axis=0).argmax(1)
    print(json.dumps({
        "overrides": overrides, "seeds": args.seeds,
        "images_wrong_in_k_seeds": {k: n for k, n in sorted(Counter(times_wrong.values()).items())},
        "images_wrong_in_any_seed": len(times_wrong),
        "averaged_probabilities_errors": int((averaged != y).sum()),
        "wrong_in_every_seed": sorted(dataset.manifest.path.iloc[split.test[i]]
                                      for i, k in times_wrong.items() if k == len(args.seeds)),
    }))


if __name__ == "__main__":
    main()
