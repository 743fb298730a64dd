"""The one prepared check for a lent GPU (about 15 minutes): the full profile's custom CNN for one
seed and one epoch of a baseline, on CUDA, with the step times and Testing numbers as JSON.

The data set does not travel to the device machine (the working tree's limit is 64 MiB): pass the
decoded image cache, `data/interim/images_<size>px_<fingerprint>.npy` with its `.json`, and the
manifest, in the `carry` of the device call, e.g.

    python benchmarks/gpu_check.py --out $OUT            # on the device machine
    python benchmarks/gpu_check.py --profile smoke       # here: the same code on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from braintumour.analysis import evaluate
from braintumour.datasets import kaggle, splits
from braintumour.training import runs
from braintumour.training.device import choose_device, describe
from braintumour.training.profiles import get_profile, profile_precision
from braintumour.training.recipes import baseline_config, custom_cnn_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--baseline", default="resnet50")
    ap.add_argument("--out", type=Path, default=Path("build/gpu_check"))
    args = ap.parse_args()
    params = get_profile(args.profile)
    dataset = kaggle.load_dataset()
    images = kaggle.load_images(dataset, params["image_size"])
    labels = dataset.manifest.label.to_numpy()
    split = splits.load_split(dataset, per_class_limit=params["per_class_limit"])
    weights = splits.class_weights(labels[split.train])
    steps_per_epoch = len(split.train) // params["batch_size"]
    result = {"compute": describe(choose_device(params["device"]), profile_precision(params)), "runs": {}}
    for name, cfg in (("custom_cnn", custom_cnn_config(params, seed=0)),
                      (args.baseline, baseline_config(params, args.baseline, 0, max_steps=steps_per_epoch))):
        t0 = time.perf_counter()
        run = runs.train_or_load(cfg, images, labels, split, weights, dataset.fingerprint,
                                 runs_root=args.out / "runs", progress=False)
        proba = evaluate.predict_proba(run.model, images[split.test])
        test = evaluate.classification_metrics(labels[split.test], proba)
        result["runs"][name] = {"wall_seconds": time.perf_counter() - t0, "train_seconds": run.train_seconds,
                                "steps": int(run.history.steps.sum()),
                                "seconds_per_step": float(run.history.seconds.sum() / run.history.steps.sum()),
                                "epochs_run": run.epochs_run, "test_accuracy": test["accuracy"],
                                "test_macro_f1": test["macro_f1"], "test_errors": test["errors"]}
        print(json.dumps({name: result["runs"][name]}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
