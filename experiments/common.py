"""What the experiments share: their command line, the data of a profile, notebook 03's custom-CNN recipe
through the run cache, Testing numbers, and where each result is written.

The experiments run as scripts, `.venv/bin/python experiments/<name>.py`: Python puts the script's
folder first on `sys.path`, so `from common import ...` finds this file. Each script's `main(argv)`
prints what it finds as JSON lines and writes the same numbers once, through
`outputs.write_result`, to `experiments/results/<result name>.json` (cpu profile; others under
build/<profile>/results/; `--out DIR` or `$BRAINTUMOUR_RESULTS` instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braintumour.analysis import evaluate
from braintumour.datasets import kaggle, splits
from braintumour.reporting import outputs
from braintumour.training import runs
from braintumour.training.profiles import get_profile
from braintumour.training.recipes import TrainConfig, custom_cnn_config


def override(text: str) -> tuple[str, object]:
    """One `FIELD=JSON` argument: a `TrainConfig` field and its value."""
    key, sep, value = text.partition("=")
    if not sep or key not in TrainConfig.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=JSON with FIELD one of TrainConfig's fields")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON ({e})") from e


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seeds as integers, e.g. 0,1,2") from e


def parser(description: str, *, default_seeds: Sequence[int] | None = (0,), overrides: bool = True,
           runs_root: bool = True) -> argparse.ArgumentParser:
    """The command line every experiment takes: `--profile`, `--out` (the results folder), and where it
    applies `--seeds`, `FIELD=JSON` overrides of the recipe's `TrainConfig` fields and `--runs` (the run
    cache; default `data/interim/runs/`, where notebook 03 finds the runs under the same keys)."""
    ap = argparse.ArgumentParser(description=description)
    if overrides:
        ap.add_argument("overrides", nargs="*", type=override, help="TrainConfig fields as FIELD=JSON")
    ap.add_argument("--profile", default="cpu", help="braintumour.training.profiles: smoke, cpu (default) or full")
    if default_seeds is not None:
        ap.add_argument("--seeds", type=seed_list, default=list(default_seeds), help="e.g. 0,1,2")
    if runs_root:
        ap.add_argument("--runs", type=Path, default=None,
                        help="run cache folder (default: data/interim/runs, shared with the notebooks)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default: $BRAINTUMOUR_RESULTS, else experiments/results for the cpu "
                         "profile, build/<profile>/results for the others)")
    return ap


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    return dict(getattr(args, "overrides", []))


def tag(overrides: dict[str, Any]) -> str:
    """The overrides as a short file-name part ("recipe" when there are none), the same for the same
    overrides in any order."""
    if not overrides:
        return "recipe"
    text = "-".join(f"{k}={json.dumps(v, sort_keys=True, separators=(',', ':'))}" for k, v in sorted(overrides.items()))
    text = re.sub(r"[^A-Za-z0-9._,=+-]+", "_", text).strip("_")
    if len(text) > 100:  # a file name has at most 255 bytes; keep it readable and unique
        text = f"{text[:80]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return text


def result_name(script: str, overrides: dict[str, Any] | None = None) -> str:
    """`<script>` for the recipe as the profile has it, `<script>-<overrides>` for a screened change,
    so results of different screens do not overwrite each other (a rerun with other seeds does)."""
    return script if not overrides else f"{script}-{tag(overrides)}"


def write_result(args: argparse.Namespace, name: str, data_fingerprint: str, **fields: Any) -> Path:
    """`outputs.write_result` into `--out` (else the profile's results folder); prints the path."""
    path = outputs.write_result(name, profile=args.profile, data_fingerprint=data_fingerprint,
                                out_dir=args.out, **fields)
    print(f"result: {path}", flush=True)
    return path


@dataclass
class RecipeData:
    params: dict
    dataset: kaggle.Dataset
    images: np.ndarray
    labels: np.ndarray
    split: splits.Split
    train_masks: np.ndarray | None  # only when the recipe has a mask term (notebook 07's keys)


def load_recipe_data(profile: str, overrides: dict[str, Any]) -> RecipeData:
    """The profile's parameters, the Kaggle set, its images at the recipe's size, the labels and the
    profile's split (the smoke profile's subset included); the Training masks when `mask_weight` is set."""
    params = get_profile(profile)
    dataset = kaggle.load_dataset()
    size = overrides.get("image_size", params["image_size"])
    split = splits.load_split(dataset, per_class_limit=params["per_class_limit"])
    masks = kaggle.training_masks(dataset, split.train, size) if overrides.get("mask_weight") else None
    return RecipeData(params, dataset, kaggle.load_images(dataset, size), dataset.manifest.label.to_numpy(),
                      split, masks)


def recipe_config(d: RecipeData, seed: int, overrides: dict[str, Any]) -> TrainConfig:
    """Notebook 03's custom-CNN recipe (`recipes.custom_cnn_config`) with `overrides` applied."""
    return custom_cnn_config(d.params, seed, **overrides)


def train_recipe(d: RecipeData, seed: int, overrides: dict[str, Any], *, split: splits.Split | None = None,
                 checkpoint: str = "best", runs_root: Path | None = None) -> runs.RunResult:
    """One seed of the recipe through the run cache (`runs.train_or_load`: trained only if no finished
    run has its key), on `split` (default: the profile's), class weights from its training images."""
    split = split or d.split
    cfg = recipe_config(d, seed, overrides)
    weights = splits.class_weights(d.labels[split.train], cfg.class_weighting)
    return runs.train_or_load(cfg, d.images, d.labels, split, weights, d.dataset.fingerprint, progress=False,
                              train_masks=d.train_masks, checkpoint=checkpoint, runs_root=runs_root)


def testing(model: torch.nn.Module, d: RecipeData) -> dict[str, Any]:
    """Testing accuracy and macro-F1 (rounded as printed) and the number of errors."""
    proba = evaluate.predict_proba(model, d.images[d.split.test])
    test = evaluate.classification_metrics(d.labels[d.split.test], proba, with_ci=False)
    return {"test_accuracy": round(test["accuracy"], 4), "test_macro_f1": round(test["macro_f1"], 4),
            "test_errors": test["errors"]}


@dataclass
class CollectionsData(RecipeData):
    """`RecipeData` and notebook 11's collections, each audited and parted (`generalisation.load_collections`),
    with their parts and the pool a generalisation run draws from, as notebook 11 makes them."""

    collections: dict

    @property
    def parts(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: c.parts for name, c in self.collections.items()}

    @cached_property
    def pool(self):
        from braintumour.training import generalisation

        return generalisation.Pool.stack(self.dataset, self.images, self.collections)


def load_collections_data(profile: str) -> CollectionsData:
    """The Kaggle set of the profile and every other collection, as notebook 11 loads them."""
    from braintumour.datasets import audit
    from braintumour.datasets.folds import AUDIT_IMAGE_SIZE
    from braintumour.training import generalisation

    d = load_recipe_data(profile, {})
    hashes = audit.perceptual_hashes(kaggle.load_images(d.dataset, AUDIT_IMAGE_SIZE))
    collections = generalisation.load_collections(d.dataset, hashes, d.params["image_size"],
                                                  d.params["collection_limit"])
    return CollectionsData(d.params, d.dataset, d.images, d.labels, d.split, d.train_masks, collections)


def fold_record(d: CollectionsData, held_out: str, run: runs.RunResult) -> dict[str, Any]:
    """A leave-one-out run's Kaggle validation accuracy, its scores on all of the collection `held_out` that it
    never saw (`collection_scores.model_scores`), and the run (`run_record`)."""
    from braintumour.analysis.collection_scores import model_scores
    from braintumour.analysis.shipped import validation_accuracy

    accuracy = validation_accuracy(run.model, d.images[d.split.val], d.labels[d.split.val])
    return {"validation_accuracy": round(accuracy, 4),
            "held_out_scores": model_scores(run.model, {held_out: d.collections[held_out]}, "all")[held_out],
            **run_record(run)}


def held_out_measure(scores: dict[str, Any]) -> tuple[str, float]:
    """The measure a held-out collection is scored by (`detected` or `specificity`) and its value, rounded."""
    measure = next(k for k in ("detected", "specificity") if k in scores)
    return measure, round(scores[measure]["value"], 4)


def run_record(run: runs.RunResult) -> dict[str, Any]:
    """What identifies a run and how it was obtained: its folder (model, seed and run key), the key,
    whether it was reused from the cache, and the config it was trained from."""
    return {"run": run.run_dir.name, "run_key": run.run_dir.name.rsplit("-", 1)[-1], "reused": run.reused,
            "config": run.config.to_dict()}
