"""Screen a change to the custom CNN's training recipe: train it on a few seeds, print Testing numbers.

The recipe is notebook 03's (`recipes.custom_cnn_config`: the profile's width, image size, epochs, batch
size, patience, precision, inverse class weights) with `TrainConfig` fields overridden as key=JSON.
Runs go through `runs.train_or_load`, so they are cached in `data/interim/runs/` under the same key
notebook 03 would use: a recipe that is adopted into the profile is not trained twice. One seed
cannot tell a change of a few errors (the cpu profile's seeds differ by up to 7 of 1,311): screen on
the seeds that matter, then run notebook 03. Train on an otherwise idle machine, or the minutes mean little.
With `mask_weight` set, the Training masks go with it, so notebook 07's mask-guided runs share their
keys too. `experiments/seed_errors.py` takes the same command line.

Prints one JSON line per seed and writes them, with each run's key and config and the errors summed
over the seeds, to `experiments/results/screen_recipe[-<overrides>].json` (`common.result_name`).

    .venv/bin/python experiments/screen_recipe.py --seeds 1,2 epochs=40
    .venv/bin/python experiments/screen_recipe.py --seeds 1 'augment={"rotate_deg": 12.0, "translate": 0.06}'
    .venv/bin/python experiments/screen_recipe.py --profile smoke --runs /tmp/runs --out /tmp/results
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis import evaluate


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    overrides = common.overrides_of(args)
    d = common.load_recipe_data(args.profile, overrides)
    rows = []
    for seed in args.seeds:
        run = common.train_recipe(d, seed, overrides, runs_root=args.runs)
        val_pred = evaluate.predict_proba(run.model, d.images[d.split.val]).argmax(1)
        row = {"seed": seed, "overrides": overrides, **common.testing(run.model, d),
               "val_accuracy": round(float((val_pred == d.labels[d.split.val]).mean()), 4),
               "train_minutes": round(run.train_seconds / 60, 1), "best_epoch": run.best_epoch,
               "reused": run.reused, "run": run.run_dir.name}
        print(json.dumps(row), flush=True)
        rows.append({**row, **common.run_record(run)})
    common.write_result(args, common.result_name("screen_recipe", overrides), d.dataset.fingerprint,
                        overrides=overrides, seeds=args.seeds, split=d.split.sizes(),
                        test_errors_summed=sum(r["test_errors"] for r in rows), runs=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
