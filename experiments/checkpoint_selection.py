"""Which epoch's weights to keep: replay the custom CNN's runs and score every selection rule on Testing.

A run keeps the epoch with the best validation macro-F1 (`train.train`). Validation has 572 images, so
the best epoch is often best by one image, and ties go to the earliest. This script retrains the
recipe's seeds (deterministic: a seed trains the same weights as notebook 03's run of it) with
`train(on_epoch_end=...)` recording every epoch's validation and Testing probabilities from
`--from-epoch` on, then prints the Testing errors each rule would have given:
- best validation macro-F1, earliest epoch (the rule in use) and latest epoch among ties;
- lowest class-weighted validation loss; the last epoch;
- the averaged probabilities of the last k epochs' weights (a checkpoint ensemble: k forward
  passes per image at inference, no extra training);
- the averaged weights of the last k epochs, BatchNorm statistics re-estimated on the training
  images (stochastic weight averaging's recipe, Izmailov et al., 2018; `torch.optim.swa_utils`).
The probabilities and each recorded epoch's weights are saved under data/interim/checkpoint_selection/
(git-ignored; `--work DIR` elsewhere) so the rules can be re-scored with `--score-only`. A diagnosis for
choosing a rule, not a result the notebooks report. Prints one JSON line per seed and the sums; writes
them, each rule's chosen epochs and Testing errors and each seed's config, to
`experiments/results/checkpoint_selection[-<overrides>].json`.

    .venv/bin/python experiments/checkpoint_selection.py --seeds 0,1,2
    .venv/bin/python experiments/checkpoint_selection.py --seeds 0,1,2 --score-only
    .venv/bin/python experiments/checkpoint_selection.py --profile smoke --from-epoch 1 --work /tmp/cs --out /tmp/r
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import common
import numpy as np
import torch
import torch.nn.functional as F
from common import RecipeData
from sklearn.metrics import f1_score

from braintumour import config
from braintumour.analysis import evaluate
from braintumour.datasets import splits
from braintumour.training.checkpoints import read_checkpoint, reestimate_batchnorm
from braintumour.training.models import build_model
from braintumour.training.train import train


def replay(seed: int, overrides: dict, from_epoch: int, out: Path, d: RecipeData) -> None:
    cfg = common.recipe_config(d, seed, overrides)
    weights = splits.class_weights(d.labels[d.split.train], cfg.class_weighting)
    epochs, val, test = [], [], []

    def record(epoch: int, model: torch.nn.Module) -> None:
        if epoch >= from_epoch:
            epochs.append(epoch)
            val.append(evaluate.predict_proba(model, d.images[d.split.val]))
            test.append(evaluate.predict_proba(model, d.images[d.split.test]))
            torch.save(model.state_dict(), weights_dir / f"epoch{epoch}.pt")  # to rebuild any rule's model

    run_dir, weights_dir = out / f"seed{seed}-run", out / f"seed{seed}-weights"
    shutil.rmtree(run_dir, ignore_errors=True)  # a resumed run would skip the epochs before it
    weights_dir.mkdir(parents=True, exist_ok=True)
    train(cfg, d.images, d.labels, d.split.train, d.split.val, weights, run_dir, progress=False,
          train_masks=d.train_masks, on_epoch_end=record)
    np.savez(out / f"seed{seed}.npz", epochs=np.array(epochs), val=np.stack(val), test=np.stack(test),
             val_labels=d.labels[d.split.val], test_labels=d.labels[d.split.test], class_weights=weights)


def score(path: Path, ks: tuple[int, ...] = (3, 5)) -> dict:
    z = np.load(path)
    epochs, val, test, yv, yt = z["epochs"], z["val"], z["test"], z["val_labels"], z["test_labels"]
    val_f1 = np.array([f1_score(yv, v.argmax(1), average="macro") for v in val])
    w = torch.as_tensor(z["class_weights"], dtype=torch.float32)
    val_loss = np.array([F.nll_loss(torch.log(torch.from_numpy(v).clamp_min(1e-12)), torch.from_numpy(yv).long(),
                                    weight=w).item() for v in val])

    def test_errors(proba: np.ndarray) -> int:
        return errors(proba, yt)

    best = np.flatnonzero(val_f1 == val_f1.max())
    rules = {
        "best_val_f1_earliest": (int(epochs[best[0]]), test_errors(test[best[0]])),
        "best_val_f1_latest": (int(epochs[best[-1]]), test_errors(test[best[-1]])),
        "lowest_val_loss": (int(epochs[val_loss.argmin()]), test_errors(test[val_loss.argmin()])),
        "last_epoch": (int(epochs[-1]), test_errors(test[-1])),
    }
    for k in (k for k in ks if k <= len(epochs)):
        rules[f"mean_of_last_{k}"] = (f"{epochs[-k]}-{epochs[-1]}", test_errors(test[-k:].mean(0)))
    return {"errors_by_epoch": {int(e): test_errors(t) for e, t in zip(epochs, test, strict=True)}, "rules": rules}


def averaged_weights_proba(out: Path, seed: int, epochs: list[int], overrides: dict,
                           d: RecipeData) -> tuple[np.ndarray, np.ndarray]:
    """(validation, Testing) probabilities of the mean of the given epochs' weights, BatchNorm's statistics
    re-estimated on the un-augmented Training images (one epoch: that epoch's weights, only BN redone)."""
    cfg = common.recipe_config(d, seed, overrides)
    states = [read_checkpoint(out / f"seed{seed}-weights" / f"epoch{e}.pt") for e in epochs]
    model = build_model(cfg.model, **cfg.model_kwargs)
    model.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                           for k, v in states[-1].items()})
    reestimate_batchnorm(model, d.images[d.split.train])
    return tuple(evaluate.predict_proba(model, d.images[rows]) for rows in (d.split.val, d.split.test))


def errors(proba: np.ndarray, labels: np.ndarray) -> int:
    return int((proba.argmax(1) != labels).sum())


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], runs_root=False)
    ap.add_argument("--from-epoch", type=int, default=26, help="first epoch whose probabilities are kept")
    ap.add_argument("--score-only", action="store_true", help="re-score the saved probabilities")
    ap.add_argument("--every-epoch", action="store_true",
                    help="also re-estimate BatchNorm for every recorded epoch and select on validation after it")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the recorded probabilities and weights "
                         "(default: data/interim/checkpoint_selection)")
    args = ap.parse_args(argv)
    overrides = common.overrides_of(args)
    tag = "-".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items())) or "recipe"
    work = args.work or config.interim_dir() / "checkpoint_selection"
    out = work / f"{args.profile}-{tag}".replace("/", "_").replace(" ", "")
    out.mkdir(parents=True, exist_ok=True)
    totals: dict[str, int] = {}
    per_seed = []
    data_for_bn = common.load_recipe_data(args.profile, overrides)  # one load for the replays and the re-scoring
    for seed in args.seeds:
        if not args.score_only:
            replay(seed, overrides, args.from_epoch, out, data_for_bn)
        result = score(out / f"seed{seed}.npz")
        epochs = sorted(result["errors_by_epoch"])
        best_epoch, last = result["rules"]["best_val_f1_earliest"][0], epochs[-1]
        yv, yt = data_for_bn.labels[data_for_bn.split.val], data_for_bn.labels[data_for_bn.split.test]
        bn_rules = {"best_val_f1_bn_reestimated": [best_epoch], "last_epoch_bn_reestimated": [last]}
        bn_rules |= {f"weights_mean_of_last_{k}": epochs[-k:] for k in (3, 5, 10)}
        for rule, chosen in bn_rules.items():
            val, test = averaged_weights_proba(out, seed, chosen, overrides, data_for_bn)
            result["rules"][rule] = (f"{chosen[0]}-{chosen[-1]}, validation errors {errors(val, yv)}",
                                     errors(test, yt))
        if args.every_epoch:  # BN re-estimated after every epoch, then the best validation macro-F1
            redone = {e: averaged_weights_proba(out, seed, [e], overrides, data_for_bn) for e in epochs}
            f1 = {e: f1_score(yv, v.argmax(1), average="macro") for e, (v, _) in redone.items()}
            pick = min(e for e in epochs if f1[e] == max(f1.values()))
            result["rules"]["bn_reestimated_every_epoch_best_val_f1"] = (pick, errors(redone[pick][1], yt))
            result["errors_by_epoch_bn_reestimated"] = {e: errors(t, yt) for e, (_, t) in redone.items()}
        for rule, (_, n) in result["rules"].items():
            totals[rule] = totals.get(rule, 0) + n
        print(json.dumps({"seed": seed, **result}), flush=True)
        rules = {rule: {"chosen": chosen, "test_errors": n} for rule, (chosen, n) in result["rules"].items()}
        per_seed.append({"seed": seed, **result, "rules": rules,
                         "config": common.recipe_config(data_for_bn, seed, overrides).to_dict()})
    print(json.dumps({"seeds": args.seeds, "overrides": overrides, "test_errors_summed": totals}), flush=True)
    common.write_result(args, common.result_name("checkpoint_selection", overrides), data_for_bn.dataset.fingerprint,
                        overrides=overrides, seeds=args.seeds, from_epoch=args.from_epoch,
                        score_only=args.score_only, work=str(out), test_images=len(data_for_bn.split.test),
                        test_errors_summed=totals, per_seed=per_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
