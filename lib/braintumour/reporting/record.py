"""One model's results as a typed record: the schema of the model metrics files notebooks 03 and 04
write (reports/metrics/<model>.json) and the results summary reads.

A record holds Testing and leakage-free Testing metrics per seed and over seeds, with the model's
size, cost and training time, under the header every metrics file has (`outputs.write_metrics`).
Each seed's training history sits beside it as <model>.history.csv. Keys are ids (snake_case);
tables and sentences look titles up in `models.MODEL_TITLES` when they are drawn.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from braintumour.config import metrics_dir
from braintumour.training.models import written_by

# 1 was the keyword dictionaries the notebooks wrote before this record (no `schema_version`).
SCHEMA_VERSION = 2
HISTORY_SUFFIX = ".history"


class RecordError(ValueError):
    """A metrics file that is not a model record of this schema."""


@dataclass(frozen=True)
class Header:
    """Where and from what a metrics file was computed: the fields `outputs` writes into every one."""

    name: str
    profile: str
    compute: dict[str, Any] | None
    data_fingerprint: str
    git_commit: str
    written_at: str


@dataclass
class Refit:
    """Notebook 03's refit: the same recipe and seeds trained on Training and validation together,
    the last epoch kept (nothing is held out to choose another)."""

    train_images: int
    kept: str
    train_seconds: dict[int, float]
    epochs_run: dict[int, float]
    test_per_seed: dict[int, dict]
    test_over_seeds: dict
    test_dedup_per_seed: dict[int, dict]
    test_dedup_over_seeds: dict
    mcnemar_vs_held_out: dict[int, dict]


@dataclass
class ModelRecord:
    """A model's results: the selected seed (best validation macro-F1), every seed, and over seeds.

    `test*` are `evaluate.classification_metrics` dictionaries on Testing, `test_dedup*` on the
    Testing images with no near-duplicate in Training; `*_over_seeds` are
    `evaluate.summarise_over_seeds` of the per-seed ones. `recall_by_source` is
    `evaluate.recall_by_source`: per subset, recall per class and source group and the images behind it."""

    model: str
    seeds: list[int]
    selected_seed: int
    params: int
    multiply_adds: int
    image_size: int
    config: dict[str, Any]
    train_seconds: dict[int, float]
    epochs_run: dict[int, float]
    best_epoch: dict[int, int]
    inference_images_per_second: float
    torch_threads: int
    split_sizes: dict[str, int]
    test: dict
    test_over_seeds: dict
    test_per_seed: dict[int, dict]
    test_dedup: dict
    test_dedup_over_seeds: dict
    test_dedup_per_seed: dict[int, dict]
    recall_by_source: dict[str, dict]
    pretrained: bool = False
    max_steps: int | None = None
    planned_steps: dict[int, int | None] | None = None
    mcnemar_vs_custom_cnn: dict | None = None
    refit: Refit | None = None
    schema_version: int = SCHEMA_VERSION
    header: Header | None = field(default=None, compare=False)

    @property
    def train_minutes(self) -> list[float]:
        return [s / 60 for s in self.train_seconds.values()]

    def body(self) -> dict[str, Any]:
        """The record's fields as JSON-ready data (the header is the writer's)."""
        out = dataclasses.asdict(self)
        del out["header"]
        return out


def selected_seed(runs: dict) -> int:
    """The seed whose run reached the best validation macro-F1 (`runs`: seed -> `runs.RunResult`):
    chosen without looking at Testing."""
    return max(runs, key=lambda s: runs[s].history.val_macro_f1.max())


def from_runs(model: str, runs: dict, per_seed: dict[int, dict], per_seed_dedup: dict[int, dict], *,
              recall_by_source: dict[str, dict], image_size: int, split_sizes: dict[str, int],
              images_per_second: float, **optional: Any) -> ModelRecord:
    """The record of `runs` (seed -> `runs.RunResult`) scored as `per_seed` on Testing and `per_seed_dedup`
    on leakage-free Testing, its selected seed `selected_seed(runs)`. `optional` fills the record's
    optional fields (`max_steps`, `mcnemar_vs_custom_cnn`, `refit`, ...)."""
    import torch

    from braintumour.analysis.evaluate import summarise_over_seeds
    from braintumour.training.models import count_parameters, multiply_adds

    selected = selected_seed(runs)
    net = runs[selected].model
    return ModelRecord(
        model=model, seeds=list(runs), selected_seed=selected, params=count_parameters(net),
        multiply_adds=multiply_adds(net, image_size), image_size=image_size, config=runs[selected].config.to_dict(),
        train_seconds={s: r.train_seconds for s, r in runs.items()},
        epochs_run={s: r.epochs_run for s, r in runs.items()},
        best_epoch={s: r.best_epoch for s, r in runs.items()},
        inference_images_per_second=images_per_second, torch_threads=torch.get_num_threads(),
        split_sizes=split_sizes, test=per_seed[selected], test_over_seeds=summarise_over_seeds(per_seed),
        test_per_seed=per_seed, test_dedup=per_seed_dedup[selected],
        test_dedup_over_seeds=summarise_over_seeds(per_seed_dedup), test_dedup_per_seed=per_seed_dedup,
        recall_by_source=recall_by_source, **optional)


def write(record: ModelRecord, histories: dict[int, pd.DataFrame], *, profile: str, data_fingerprint: str) -> Path:
    """Write reports/metrics/<model>.json (`outputs.write_metrics`) and each seed's history beside it
    as <model>.history.csv, one row per epoch with a `seed` column."""
    from braintumour.reporting import outputs

    table = pd.concat([h.assign(seed=s) for s, h in histories.items()], ignore_index=True)
    outputs.write_csv(table[["seed", *[c for c in table.columns if c != "seed"]]],
                      record.model + HISTORY_SUFFIX, data_fingerprint=data_fingerprint)
    return outputs.write_metrics(record.model, profile=profile, data_fingerprint=data_fingerprint, **record.body())


def load(name: str, folder: Path | None = None) -> ModelRecord | None:
    """The record in <folder>/<name>.json (default reports/metrics/), None if there is none yet.
    Raises `RecordError`, naming the file and the notebook to re-execute, for any other content."""
    path = metrics_dir(folder) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: not JSON ({e})") from e
    again = f"re-execute notebook {written_by(name) or '03 or 04'} (make reproduce)"
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        found = raw.get("schema_version", 1) if isinstance(raw, dict) else type(raw).__name__
        raise RecordError(f"{path}: model record schema {found}, expected {SCHEMA_VERSION}; {again}")
    raw = _seed_keys(raw)
    names = {f.name for f in dataclasses.fields(Header)}
    try:
        header = Header(**{k: raw.pop(k, None) for k in names})
        refit = raw.pop("refit", None)
        return ModelRecord(**raw, refit=None if refit is None else Refit(**refit), header=header)
    except TypeError as e:
        raise RecordError(f"{path}: not a model record ({e}); {again}") from e


def load_history(name: str, folder: Path | None = None) -> dict[int, pd.DataFrame]:
    """Each seed's training history written beside the record, seed -> one row per epoch."""
    path = metrics_dir(folder) / f"{name}{HISTORY_SUFFIX}.csv"
    table = pd.read_csv(path).drop(columns=["data_fingerprint", "git_commit"])
    return {int(s): h.drop(columns="seed").reset_index(drop=True) for s, h in table.groupby("seed")}


def _seed_keys(obj: Any) -> Any:
    """JSON keys are strings: the seeds that key per-seed fields become ints again."""
    if isinstance(obj, dict):
        digits = bool(obj) and all(isinstance(k, str) and k.isdigit() for k in obj)
        return {(int(k) if digits else k): _seed_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_seed_keys(v) for v in obj]
    return obj
