"""Which Testing images each seed of the custom CNN gets wrong, and what averaging the seeds would leave.

Reads notebook 03's runs (`recipes.custom_cnn_config`, cached in `data/interim/runs/`; a missing one is
trained) and prints, per seed, its Testing errors; then how many images are wrong in 1, 2, ... seeds,
and the errors of the seeds' averaged probabilities. Errors that differ between seeds are the seed's
variance; errors shared by every seed are hard (or mislabelled) images. The seed average is a
diagnosis, not a model this project reports: it costs the training time of every seed.

    .venv/bin/python benchmarks/seed_errors.py
    .venv/bin/python benchmarks/seed_errors.py model='"custom_cnn_guided"' time_budget_s=900 mask_weight=1.0
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from screen_recipe import load_recipe_data, recipe_args, train_recipe

from braintumour import evaluate


def main() -> None:
    p, overrides, seeds = recipe_args(__doc__.splitlines()[0], [0, 1, 2])
    d = load_recipe_data(p, overrides)
    y = d.labels[d.split.test]
    proba, wrong = {}, {}
    for seed in seeds:
        run = train_recipe(p, seed, overrides, d)
        proba[seed] = evaluate.predict_proba(run.model, d.images[d.split.test])
        wrong[seed] = set(np.flatnonzero(proba[seed].argmax(1) != y).tolist())
        print(json.dumps({"seed": seed, "run": run.run_dir.name, "test_errors": len(wrong[seed])}))
    times_wrong = Counter(i for w in wrong.values() for i in w)
    averaged = np.mean([proba[s] for s in seeds], axis=0).argmax(1)
    print(json.dumps({
        "overrides": overrides, "seeds": seeds,
        "images_wrong_in_k_seeds": {k: n for k, n in sorted(Counter(times_wrong.values()).items())},
        "images_wrong_in_any_seed": len(times_wrong),
        "averaged_probabilities_errors": int((averaged != y).sum()),
        "wrong_in_every_seed": sorted(d.dataset.manifest.path.iloc[d.split.test[i]]
                                      for i, k in times_wrong.items() if k == len(seeds)),
    }))


if __name__ == "__main__":
    main()
