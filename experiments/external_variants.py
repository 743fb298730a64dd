"""Train seeds of the generalising variants of the custom CNN (`external.VARIANTS`) through the run
cache, under the keys the external-validation notebook uses, and print each seed's validation and
held-out Br35H (`tune` part) numbers: what the variants are chosen on. Kaggle Testing is not read.

    .venv/bin/python experiments/external_variants.py partial_label --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json

from braintumour import audit, data, evaluate, external, splits
from braintumour.folds import AUDIT_IMAGE_SIZE
from braintumour.profiles import get_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=sorted(external.VARIANTS))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0])
    args = ap.parse_args()
    params = get_profile(args.profile)
    kaggle, br35h = data.load_dataset(), external.load_br35h()
    frame = external.audit_against_kaggle(
        br35h, audit.perceptual_hashes(data.load_images(br35h, AUDIT_IMAGE_SIZE)),
        kaggle, audit.perceptual_hashes(data.load_images(kaggle, AUDIT_IMAGE_SIZE)))
    parts = external.external_parts(frame)
    size = params["image_size"]
    images, br_images = data.load_images(kaggle, size), data.load_images(br35h, size)
    split = splits.load_split(kaggle, per_class_limit=params["per_class_limit"])
    labels = kaggle.manifest.label.to_numpy()
    for seed in args.seeds:
        run = external.train_variant(params, args.variant, seed, kaggle, images, split, br35h,
                                     br_images[parts["train"]], progress=False)
        val = evaluate.predict_proba(run.model, images[split.val]).argmax(1)
        notumor = labels[split.val] == external.NOTUMOR
        tune = external.detection(evaluate.predict_proba(run.model, br_images[parts["tune"]]).argmax(1))
        print(json.dumps({"variant": args.variant, "seed": seed, "run": run.run_dir.name, "reused": run.reused,
                          "train_minutes": round(run.train_seconds / 60, 1),
                          "val_accuracy": round(float((val == labels[split.val]).mean()), 4),
                          "val_notumor_recall": round(float((val[notumor] == external.NOTUMOR).mean()), 4),
                          "br35h_tune_detected": round(tune.detected, 4), "br35h_tune_n": tune.n}), flush=True)


if __name__ == "__main__":
    main()
