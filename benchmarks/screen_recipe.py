"""Screen a change to the custom CNN's training recipe: train it on a few seeds, print Testing numbers.

The recipe is notebook 03's (`recipes.custom_cnn_config`: the profile's width, image size, epochs, batch
size, patience, precision, inverse class weights) with `TrainConfig` fields overridden as key=JSON.
Runs go through `runs.train_or_load`, so they are cached in `data/interim/runs/` under the same key
notebook 03 would use: a recipe that is adopted into the profile is not trained twice. One seed
cannot tell a change of a few errors (the cpu profile's seeds differ by up to 7 of 1,311): screen on
the seeds that matter, then run notebook 03. Train on an otherwise idle machine, or the minutes mean little.
With `mask_weight` set, the Training masks go with it, so notebook 07's mask-guided runs share their
keys too. `benchmarks/seed_errors.py` takes the same command line.

    .venv/bin/python benchmarks/screen_recipe.py --seeds 1,2 epochs=40
    .venv/bin/python benchmarks/screen_recipe.py --seeds 1 'augment={"rotate_deg": 12.0, "translate": 0.06}'
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np

from braintumour import data, evaluate, runs, splits
from braintumour.profiles import get_profile
from braintumour.recipes import TrainConfig, custom_cnn_config


def override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in TrainConfig.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=JSON with FIELD one of TrainConfig's fields")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON ({e})") from e


def recipe_args(description: str, default_seeds: list[int]) -> tuple[dict, dict, list[int]]:
    """The command line both screening scripts take: TrainConfig overrides, --profile, --seeds."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("overrides", nargs="*", type=override, help="TrainConfig fields as FIELD=JSON")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=default_seeds,
                    help="e.g. 0,1,2")
    args = ap.parse_args()
    return get_profile(args.profile), dict(args.overrides), args.seeds


@dataclass
class RecipeData:
    dataset: data.Dataset
    images: np.ndarray
    labels: np.ndarray
    split: splits.Split
    train_masks: np.ndarray | None  # only when the recipe has a mask term (notebook 07's keys)


def load_recipe_data(p: dict, overrides: dict) -> RecipeData:
    dataset = data.load_dataset()
    size = overrides.get("image_size", p["image_size"])
    split = splits.load_split(dataset, per_class_limit=p["per_class_limit"])
    masks = data.training_masks(dataset, split.train, size) if overrides.get("mask_weight") else None
    return RecipeData(dataset, data.load_images(dataset, size), dataset.manifest.label.to_numpy(), split, masks)


def train_recipe(p: dict, seed: int, overrides: dict, d: RecipeData) -> runs.RunResult:
    """One seed of the recipe, through the run cache (trained only if no finished run has its key)."""
    cfg = custom_cnn_config(p, seed, **overrides)
    weights = splits.class_weights(d.labels[d.split.train], cfg.class_weighting)
    return runs.train_or_load(cfg, d.images, d.labels, d.split, weights, d.dataset.fingerprint, progress=False,
                              train_masks=d.train_masks)


def main() -> None:
    p, overrides, seeds = recipe_args(__doc__.splitlines()[0], [0])
    d = load_recipe_data(p, overrides)
    for seed in seeds:
        run = train_recipe(p, seed, overrides, d)
        proba = evaluate.predict_proba(run.model, d.images[d.split.test])
        test = evaluate.classification_metrics(d.labels[d.split.test], proba)
        val_pred = evaluate.predict_proba(run.model, d.images[d.split.val]).argmax(1)
        print(json.dumps({"seed": seed, "overrides": overrides, "test_accuracy": round(test["accuracy"], 4),
                          "test_macro_f1": round(test["macro_f1"], 4), "test_errors": test["errors"],
                          "val_accuracy": round(float((val_pred == d.labels[d.split.val]).mean()), 4),
                          "train_minutes": round(run.train_seconds / 60, 1), "best_epoch": run.best_epoch,
                          "reused": run.reused, "run": run.run_dir.name}))


if __name__ == "__main__":
    main()
