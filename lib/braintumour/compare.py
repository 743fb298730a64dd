"""Models side by side: the comparison table of notebook 04 (ours, the baselines, the quoted
literature), built from the same metrics dictionaries every notebook writes."""

from __future__ import annotations

import pandas as pd

from braintumour.summary import BASELINES, LITERATURE, seed_mean

NAMES = {"custom_cnn": "Custom CNN (ours)", **BASELINES,
         **{f"{k}_imagenet": f"{BASELINES[k]}, ImageNet weights" for k in ("vgg16_bn", "resnet50")}}


def comparison_table(models: dict[str, dict], mcnemar_vs_custom: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per model: size, cost, time, and Testing / leakage-free Testing metrics with 95%
    bootstrap intervals (of the model's selected seed), then the quoted literature rows.

    `models` maps a factory name to its metrics file's content (schema of notebook 03);
    `mcnemar_vs_custom` maps a name to `evaluate.mcnemar` of that model against the custom CNN on
    the Testing images."""
    rows = []
    for name, m in models.items():
        row = {
            "model": NAMES.get(name, name),
            "source": f"this repo, {m['profile']} profile",
            "parameters": m["params"],
            "MACs per image": m.get("multiply_adds"),
            "train minutes per seed": seed_mean(m["train_seconds"]) / 60,
            "epochs run": seed_mean(m.get("epochs_run")),
            "inference images/s": m["inference_images_per_second"],
            "seeds": len(m["seeds"]),
        }
        for subset, key in (("Testing", "test"), ("leakage-free", "test_dedup")):
            t = m[key]
            for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
                row[f"{subset} {metric}"] = t[metric]
                row[f"{subset} {metric} ci95"] = tuple(t["ci95"][metric])
        row["Testing accuracy mean over seeds"] = m["test_over_seeds"]["accuracy"]["mean"]
        p = (mcnemar_vs_custom or {}).get(name)
        row["McNemar p vs custom CNN"] = None if p is None else p["p_value"]
        rows.append(row)
    for lit in LITERATURE:
        rows.append({"model": lit["model"], "source": "quoted, not re-run", "Testing accuracy": lit["accuracy"]})
    return pd.DataFrame(rows)


def interval_rows(models: dict[str, dict], metric: str) -> pd.DataFrame:
    """Long table (model, subset, metric, lo, hi) for `plots.model_comparison`."""
    rows = []
    for name, m in models.items():
        for subset, key in (("Testing", "test"), ("leakage-free Testing", "test_dedup")):
            lo, hi = m[key]["ci95"][metric]
            rows.append({"model": NAMES.get(name, name), "subset": subset, metric: m[key][metric],
                         f"{metric}_lo": lo, f"{metric}_hi": hi})
    return pd.DataFrame(rows)
