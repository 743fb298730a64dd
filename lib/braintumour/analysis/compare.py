"""Models side by side: the comparison table of notebook 04 (ours, the baselines, the quoted
literature), built from the model records notebooks 03 and 04 write."""

from __future__ import annotations

import pandas as pd

from braintumour.reporting.record import ModelRecord
from braintumour.reporting.summary import LITERATURE, seed_mean
from braintumour.training.models import MODEL_TITLES


def comparison_table(records: dict[str, ModelRecord], profile: str,
                     mcnemar_vs_custom: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per model: size, cost, time, and Testing / leakage-free Testing metrics with 95%
    bootstrap intervals (of the model's selected seed), then the quoted literature rows.

    `records` maps a model id to its record; `mcnemar_vs_custom` maps an id to `evaluate.mcnemar` of
    that model against the custom CNN on the Testing images."""
    rows = []
    for name, m in records.items():
        row = {
            "model": MODEL_TITLES[name],
            "source": f"this repo, {profile} profile",
            "parameters": m.params,
            "MACs per image": m.multiply_adds,
            "train minutes per seed": seed_mean(m.train_seconds) / 60,
            "epochs run": seed_mean(m.epochs_run),
            "inference images/s": m.inference_images_per_second,
            "seeds": len(m.seeds),
        }
        for subset, t in (("Testing", m.test), ("leakage-free", m.test_dedup)):
            for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
                row[f"{subset} {metric}"] = t[metric]
                row[f"{subset} {metric} ci95"] = tuple(t["ci95"][metric])
        row["Testing accuracy mean over seeds"] = m.test_over_seeds["accuracy"]["mean"]
        p = (mcnemar_vs_custom or {}).get(name)
        row["McNemar p vs custom CNN"] = None if p is None else p["p_value"]
        rows.append(row)
    for lit in LITERATURE:
        rows.append({"model": lit["model"], "source": "quoted, not re-run", "Testing accuracy": lit["accuracy"]})
    return pd.DataFrame(rows)


def interval_rows(records: dict[str, ModelRecord], metric: str) -> pd.DataFrame:
    """Long table (model, subset, metric, lo, hi) for `plots.model_comparison`."""
    rows = []
    for name, m in records.items():
        for subset, t in (("Testing", m.test), ("leakage-free Testing", m.test_dedup)):
            lo, hi = t["ci95"][metric]
            rows.append({"model": MODEL_TITLES[name], "subset": subset, metric: t[metric],
                         f"{metric}_lo": lo, f"{metric}_hi": hi})
    return pd.DataFrame(rows)
