"""Source balance: the custom CNN with and without per-source loss multipliers, same seeds.

An experiment notebook 03 does not run (it did not help; see README): within each class, each
training image's class weight is multiplied by `splits.source_balance` of its source group
(`splits.source_groups`: original size 512 x 512 or not), against the archive's entanglement of class
and collection. Everything else is notebook 03's cpu-profile recipe, so the runs without it are
notebook 03's own (reused from `data/interim/runs/` when they exist, as are earlier balanced runs;
otherwise about 15 min per run on the 2-core CPU).

    .venv/bin/python benchmarks/source_balance.py [--power 0.5] [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
from sklearn.metrics import f1_score

from braintumour import data, evaluate, runs, splits
from braintumour.profiles import get_profile
from braintumour.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--power", type=float, default=0.5, help="splits.source_balance power (fixed before any run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    params = get_profile("cpu")
    dataset = data.load_dataset()
    images = data.load_images(dataset, params["image_size"])
    labels = dataset.manifest.label.to_numpy()
    split = splits.load_split(dataset, per_class_limit=params["per_class_limit"])
    groups = splits.source_groups(dataset.manifest)
    weights = splits.class_weights(labels[split.train], "inverse")
    y_test = labels[split.test]

    def run(seed: int, power: float | None) -> runs.RunResult:
        cfg = TrainConfig(model="custom_cnn", image_size=params["image_size"], epochs=params["epochs"],
                          batch_size=params["batch_size"], patience=params["patience"], class_weighting="inverse",
                          seed=seed, source_balance=power)
        return runs.train_or_load(cfg, images, labels, split, weights, dataset.fingerprint,
                                  train_groups=None if power is None else groups[split.train])

    variants = {"class weights only (notebook 03)": None, f"+ source balance, power {args.power}": args.power}
    results: dict = {"power": args.power, "seeds": args.seeds, "variants": {}}
    preds = {}
    for name, power in variants.items():
        per_seed = {}
        for s in args.seeds:
            r = run(s, power)
            pred = evaluate.predict_proba(r.model, images[split.test]).argmax(1)
            preds[(name, s)] = pred
            per_seed[s] = {"accuracy": float((pred == y_test).mean()),
                           "macro_f1": float(f1_score(y_test, pred, average="macro")),
                           "train_seconds": r.train_seconds, "best_epoch": r.best_epoch,
                           "recall_by_source": evaluate.recall_by_group(y_test, pred, groups[split.test],
                                                                        splits.SOURCE_GROUP_NAMES)}
        results["variants"][name] = {
            "per_seed": per_seed,
            **{k: evaluate.mean_sd([m[k] for m in per_seed.values()]) for k in ("accuracy", "macro_f1")},
        }
    plain, balanced = variants
    results["mcnemar_per_seed"] = {s: evaluate.mcnemar(y_test, preds[(balanced, s)], preds[(plain, s)])
                                   for s in args.seeds}

    table = pd.DataFrame({
        name: {"accuracy": f"{v['accuracy']['mean']:.4f} ± {v['accuracy']['sd']:.4f}",
               "macro-F1": f"{v['macro_f1']['mean']:.4f} ± {v['macro_f1']['sd']:.4f}",
               "accuracy per seed": " ".join(f"{m['accuracy']:.4f}" for m in v["per_seed"].values()),
               "train s per seed": " ".join(f"{m['train_seconds']:.0f}" for m in v["per_seed"].values()),
               "meningioma recall, other size": " ".join(
                   f"{m['recall_by_source']['meningioma']['other size']:.3f}" for m in v["per_seed"].values())}
        for name, v in results["variants"].items()})
    print(f"Testing ({len(y_test)} images), seeds {args.seeds}")
    print(table.to_string())
    for s, m in results["mcnemar_per_seed"].items():
        print(f"seed {s}: balanced right / plain wrong {m['a_right_b_wrong']}, the reverse {m['a_wrong_b_right']}, "
              f"McNemar p = {m['p_value']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
