"""Which Testing images each seed of the custom CNN gets wrong, and what averaging the seeds would leave.

Reads notebook 03's runs (`recipes.custom_cnn_config`, cached in `data/interim/runs/`; a missing one is
trained) and prints, per seed, its Testing errors; then how many images are wrong in 1, 2, ... seeds,
and the errors of the seeds' averaged probabilities. Errors that differ between seeds are the seed's
variance; errors shared by every seed are hard (or mislabelled) images. The seed average is a
diagnosis, not a model this project reports: it costs the training time of every seed.
Takes `experiments/screen_recipe.py`'s command line; writes what it prints, with each run's key and
config, to `experiments/results/seed_errors[-<overrides>].json`.

    .venv/bin/python experiments/seed_errors.py
    .venv/bin/python experiments/seed_errors.py model='"custom_cnn_guided"' mask_weight=1.0
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import common
import numpy as np

from braintumour.analysis import evaluate


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0], default_seeds=(0, 1, 2)).parse_args(argv)
    overrides = common.overrides_of(args)
    d = common.load_recipe_data(args.profile, overrides)
    y = d.labels[d.split.test]
    proba, wrong, per_seed = {}, {}, []
    for seed in args.seeds:
        run = common.train_recipe(d, seed, overrides, runs_root=args.runs)
        proba[seed] = evaluate.predict_proba(run.model, d.images[d.split.test])
        wrong[seed] = set(np.flatnonzero(proba[seed].argmax(1) != y).tolist())
        row = {"seed": seed, "run": run.run_dir.name, "test_errors": len(wrong[seed])}
        print(json.dumps(row), flush=True)
        per_seed.append({**row, **common.run_record(run)})
    times_wrong = Counter(i for w in wrong.values() for i in w)
    averaged = np.mean([proba[s] for s in args.seeds], axis=0).argmax(1)
    summary = {
        "overrides": overrides, "seeds": args.seeds,
        "images_wrong_in_k_seeds": {k: n for k, n in sorted(Counter(times_wrong.values()).items())},
        "images_wrong_in_any_seed": len(times_wrong),
        "averaged_probabilities_errors": int((averaged != y).sum()),
        "wrong_in_every_seed": sorted(d.dataset.manifest.path.iloc[d.split.test[i]]
                                      for i, k in times_wrong.items() if k == len(args.seeds)),
    }
    print(json.dumps(summary), flush=True)
    common.write_result(args, common.result_name("seed_errors", overrides), d.dataset.fingerprint,
                        **summary, test_images=len(y), runs=per_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
