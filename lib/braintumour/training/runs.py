"""Training runs as cached, reusable artefacts.

A run is identified by its training config, its split and the data fingerprint. A finished run
(`done.json` beside `best.pt`) is reused instead of retrained unless `retrain=True`, so a notebook
stepped through interactively, or re-executed after an unrelated change, costs seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braintumour import files
from braintumour.config import interim_dir
from braintumour.datasets.splits import Split
from braintumour.training.checkpoints import load_checkpoint, reestimate_batchnorm, save_checkpoint
from braintumour.training.device import choose_device
from braintumour.training.models import build_architecture
from braintumour.training.recipes import TrainConfig, baseline_config, custom_cnn_config
from braintumour.training.train import train
from braintumour.training.transforms import Augment


@dataclass
class RunResult:
    config: TrainConfig
    model: torch.nn.Module
    history: pd.DataFrame
    train_seconds: float
    best_epoch: int
    run_dir: Path
    reused: bool

    @cached_property
    def plan(self) -> dict:
        """The steps the run takes (`schedule.planned_steps`) and the device it was trained on."""
        path = self.run_dir / "plan.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def epochs_run(self) -> float:
        """Passes over the training images, fractional when `max_steps` cut the last one short."""
        if "steps" in self.history and self.plan:
            return float(self.history.steps.sum() / self.plan["steps_per_epoch"])
        return float(len(self.history))


def run_key(cfg: TrainConfig, split: Split, data_fingerprint: str, train_masks: np.ndarray | None = None) -> str:
    """Hash of everything that determines a run's weights: the config with the augmentation and
    architecture it resolves to (so a changed library default retrains), the split and the data.
    Threads and the device are left out: a finished run is reused wherever it is loaded. Options left
    at None are left out too, so adding an option later does not retrain the runs that never used it;
    so is `reestimate_bn`, a step `train_or_load` applies to the kept checkpoint, which never changes
    what is trained."""
    unkeyed = ("threads", "reestimate_bn", "device")
    cfg_dict = {k: v for k, v in cfg.to_dict().items() if k not in unkeyed and v is not None}
    cfg_dict["augment_resolved"] = dataclasses.asdict(Augment(**cfg.augment))
    cfg_dict["architecture"] = repr(build_architecture(cfg.model, **cfg.model_kwargs))  # the layers, not their values
    h = hashlib.sha256(json.dumps(cfg_dict, sort_keys=True).encode())
    for part in (split.train, split.val):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(data_fingerprint.encode())
    if train_masks is not None:  # the masks are not part of the data fingerprint
        h.update(np.ascontiguousarray(train_masks).tobytes())
    return h.hexdigest()[:16]


def train_or_load(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    split: Split,
    weights: np.ndarray,
    data_fingerprint: str,
    *,
    retrain: bool = False,
    runs_root: Path | None = None,
    progress: bool = True,
    train_masks: np.ndarray | None = None,
    checkpoint: str = "best",
) -> RunResult:
    """Train one run, or reuse the finished run with the same key. `train_masks`: for mask-guided
    runs, aligned with `split.train` (see `kaggle.training_masks`). `checkpoint`: the epoch returned, "best"
    (best validation macro-F1, `best.pt`) or "last" (`last.pt`: for a refit, `splits.refit_split`, whose
    validation images are training images); both are written by every run, so it is not part of the
    key. With `cfg.reestimate_bn` the returned model's BatchNorm statistics are recomputed over the
    un-augmented training images (the checkpoint keeps the trained ones; the result is cached as
    `best_bn.pt` or `last_bn.pt`)."""
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    key = run_key(cfg, split, data_fingerprint, train_masks)
    run_dir = (runs_root or interim_dir() / "runs") / f"{cfg.model}-seed{cfg.seed}-{key}"
    done = run_dir / "done.json"
    if retrain and run_dir.exists():
        shutil.rmtree(run_dir)
    reused = done.is_file()
    if reused:
        seconds = json.loads(done.read_text())["train_seconds"]
        model, epoch = _kept_checkpoint(run_dir, checkpoint, cfg)
        history = pd.read_csv(run_dir / "history.csv")
    else:
        t0 = time.perf_counter()
        _, history = train(cfg, images, labels, split.train, split.val, weights, run_dir, progress=progress,
                           train_masks=train_masks)
        # Wall-clock of the whole run as the epochs recorded it (resumed runs add up their parts).
        seconds = (float(history.seconds.sum() + history.eval_seconds.sum()) if len(history)
                   else time.perf_counter() - t0)
        model, epoch = _kept_checkpoint(run_dir, checkpoint, cfg)
        best_epoch = epoch if checkpoint == "best" else load_checkpoint(run_dir / "best.pt")[1]["epoch"]
        files.write_json(done, {"key": key, "config": cfg.to_dict(), "train_seconds": seconds,
                                "best_epoch": best_epoch, "data_fingerprint": data_fingerprint})
    if cfg.reestimate_bn:
        model = with_reestimated_bn(model, cfg, images, split, run_dir, checkpoint)
    return RunResult(cfg, model, history, seconds, epoch, run_dir, reused=reused)


def _kept_checkpoint(run_dir: Path, checkpoint: str, cfg: TrainConfig) -> tuple[torch.nn.Module, int]:
    """The run's best or last checkpoint and its epoch (`last.pt` also holds the resume state), on
    the run's device."""
    model, payload = load_checkpoint(run_dir / f"{checkpoint}.pt", choose_device(cfg.device))
    return model, payload["epoch"] if checkpoint == "best" else payload["state"]["epoch"]


def with_reestimated_bn(model: torch.nn.Module, cfg: TrainConfig, images: np.ndarray, split: Split,
                        run_dir: Path, checkpoint: str = "best") -> torch.nn.Module:
    """`model` (the run's kept checkpoint) with BatchNorm re-estimated on the run's training images,
    cached in the run as `best_bn.pt` (`last_bn.pt`): for VGG-16 the pass over 5,140 images takes
    minutes on the CPU. The cache goes with the run (`retrain` removes both); it depends on nothing the
    key does not hold."""
    cached = run_dir / f"{checkpoint}_bn.pt"
    if cached.is_file():
        return load_checkpoint(cached, choose_device(cfg.device))[0]
    model = reestimate_batchnorm(model, images[split.train])
    save_checkpoint(cached, model, cfg, extra={"reestimated_on": "training images, un-augmented"})
    return model


def model_config(params: dict, name: str, seed: int = 0, max_steps: int | None = None) -> TrainConfig:
    """The recipe of a model named in `config.MODELS`, stopped after `max_steps` steps: the custom CNN's
    (`recipes.custom_cnn_config`) or a baseline's (`recipes.baseline_config`); notebook 06's fold runs."""
    if name == "custom_cnn":
        return custom_cnn_config(params, seed=seed, max_steps=max_steps)
    return baseline_config(params, name, seed=seed, max_steps=max_steps)


def guided_config(params: dict, seed: int, mask_weight: float | None, max_steps: int | None = None) -> TrainConfig:
    """Notebook 07's recipe: the custom CNN's (width, weight decay, precision) for the mask-guided model,
    with its length and the weight of the mask term (None: the architecture alone)."""
    return custom_cnn_config(params, seed, model="custom_cnn_guided", max_steps=max_steps, mask_weight=mask_weight)



def train_seeds(configs: dict[int, TrainConfig], images: np.ndarray, labels: np.ndarray, split: Split,
                weights: np.ndarray, data_fingerprint: str, *, retrain: bool = False,
                checkpoint: str = "best") -> dict[int, RunResult]:
    """One run per seed (`train_or_load`), each with its recipe from `configs` (seed -> config), all on
    one split with the same class weights: notebook 03's and notebook 04's runs."""
    return {s: train_or_load(cfg, images, labels, split, weights, data_fingerprint, retrain=retrain,
                             checkpoint=checkpoint) for s, cfg in configs.items()}
