"""Train seeds of the generalising variants of the custom CNN (`external.VARIANTS`) through the run
cache, under the keys the external-validation notebook uses, and print each seed's validation and
held-out Br35H (`tune` part) numbers: what the variants are chosen on. Kaggle Testing is not read.

The Br35H parts are notebook 08's (`external.audit_and_parts`, the profile's `external_limit`), and
the runs go to the notebooks' run cache, `data/interim/runs/` (`external.train_variant`), where notebook
08 finds them. Prints one JSON line per seed and writes them, with each run's key and config, to
`experiments/results/external_variants-<variant>.json`.

    .venv/bin/python experiments/external_variants.py partial_label --seeds 0,1,2
"""

from __future__ import annotations

import json
import sys

import common

from braintumour.analysis import evaluate
from braintumour.datasets import splits
from braintumour.datasets.kaggle import load_dataset, load_images
from braintumour.training import external
from braintumour.training.profiles import get_profile


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], overrides=False, runs_root=False)
    ap.add_argument("variant", choices=sorted(external.VARIANTS))
    args = ap.parse_args(argv)
    params = get_profile(args.profile)
    kaggle, br35h = load_dataset(), external.load_br35h()
    _, parts = external.audit_and_parts(kaggle, br35h, limit=params["external_limit"])
    size = params["image_size"]
    images, br_images = load_images(kaggle, size), load_images(br35h, size)
    split = splits.load_split(kaggle, per_class_limit=params["per_class_limit"])
    labels = kaggle.manifest.label.to_numpy()
    rows = []
    for seed in args.seeds:
        run = external.train_variant(params, args.variant, seed, kaggle, images, split, br35h,
                                     br_images[parts["train"]], progress=False)
        val = evaluate.predict_proba(run.model, images[split.val]).argmax(1)
        notumor = labels[split.val] == external.NOTUMOR
        tune = external.detection(evaluate.predict_proba(run.model, br_images[parts["tune"]]).argmax(1))
        row = {"variant": args.variant, "seed": seed, "run": run.run_dir.name, "reused": run.reused,
               "train_minutes": round(run.train_seconds / 60, 1),
               "val_accuracy": round(float((val == labels[split.val]).mean()), 4),
               "val_notumor_recall": round(float((val[notumor] == external.NOTUMOR).mean()), 4),
               "br35h_tune_detected": round(tune.detected, 4), "br35h_tune_n": tune.n}
        print(json.dumps(row), flush=True)
        rows.append({**row, "br35h_tune": tune.as_dict(), **common.run_record(run)})
    common.write_result(args, f"external_variants-{args.variant}", f"{kaggle.fingerprint}+{br35h.fingerprint}",
                        variant=args.variant, variant_fields=external.VARIANTS[args.variant], seeds=args.seeds,
                        external_limit=params["external_limit"], split=split.sizes(),
                        br35h_parts={k: len(v) for k, v in parts.items()}, runs=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
