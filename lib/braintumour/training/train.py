"""One training loop: class-weighted cross-entropy, batch augmentation, AdamW + one-cycle schedule,
early stopping on validation macro-F1, atomic best/last checkpoints, resume, CSV history.

Deterministic for a given seed on the CPU: all randomness (init, shuffling, augmentation, dropout)
comes from seeded generators whose states are saved in the checkpoint, so an interrupted run that
resumes gives the same weights as one that never stopped.

The recipe is in `recipes`, the losses in `losses`, the optimiser and step plan in `schedule`, the
checkpoint files in `checkpoints`: each name is imported from the module that defines it.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm import tqdm

from braintumour import files
from braintumour.analysis.evaluate import predict_proba
from braintumour.training.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from braintumour.training.device import choose_device, cpu_native_bf16, describe
from braintumour.training.device import native_bf16 as native_bf16_on
from braintumour.training.losses import batch_loss
from braintumour.training.models import build_model
from braintumour.training.randomise import Randomise
from braintumour.training.recipes import TrainConfig
from braintumour.training.schedule import build_optimiser, planned_steps
from braintumour.training.transforms import Augment


def native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX); without it autocast
    to bfloat16 is emulated and makes training several times slower, not faster."""
    return cpu_native_bf16()


def seed_everything(seed: int) -> torch.Generator:
    # cuBLAS is deterministic only with a fixed workspace (torch's reproducibility notes); harmless elsewhere.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainingData:
    """What the training batches are drawn from: every image and label (uint8 (N, H, W), int64), the
    training rows, their masks (aligned with `train_idx`; None without `mask_weight`), the class
    weights on the training device, and the batch transforms."""

    images: torch.Tensor
    labels: torch.Tensor
    train_idx: torch.Tensor
    masks: torch.Tensor | None
    class_weights: torch.Tensor
    augment: Augment
    randomiser: Randomise | None


def train(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    weights: np.ndarray,
    run_dir: str | Path,
    *,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    train_masks: np.ndarray | None = None,
    on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train `cfg.model` on images[train_idx], select on images[val_idx]; return (best model, history).
    `train_masks` (aligned with `train_idx`, all zero where an image has none; training images' only) are
    needed when `cfg.mask_weight` is set. `run_dir` receives `last.pt` (every epoch; a run with the same
    config resumes from it), `best.pt` (best validation macro-F1) and `history.csv`. `stop_after_epochs`
    simulates an interruption (the resume test). `on_epoch_end(epoch, model)`, after each epoch's checkpoints
    with the model in eval mode, must not draw random numbers (`experiments/checkpoint_selection.py`)."""
    run_dir = Path(run_dir)
    device = _training_device(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs).to(device, memory_format=torch.channels_last)
    steps_per_epoch = len(train_idx) // cfg.batch_size  # drop the last partial batch: BN needs >1
    data = _training_data(cfg, images, labels, train_idx, weights, train_masks, device)
    state, opt, sched = _start_or_resume(run_dir, cfg, model, gen, steps_per_epoch, device)
    n_epochs = -(-state["total_steps"] // steps_per_epoch)  # the last epoch may be partial under max_steps

    while state["epoch"] < n_epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"]
        steps = min(steps_per_epoch, state["total_steps"] - epoch * steps_per_epoch)
        train_loss, train_seconds = train_one_epoch(model, cfg, data, opt, sched, gen, steps, progress=progress,
                                                    desc=f"{cfg.model} seed {cfg.seed} epoch {epoch + 1}/{n_epochs}")
        row = _epoch_row(model, images[val_idx], labels[val_idx], data.class_weights, opt, epoch, steps,
                         train_loss, train_seconds)
        _save_epoch(run_dir, row, state, model, cfg, opt, sched, gen, device)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {train_loss:.4f} val acc {row['val_accuracy']:.4f} "
                       f"val F1 {row['val_macro_f1']:.4f} ({train_seconds:.0f}s)")
        if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
            break

    best, _ = load_checkpoint(run_dir / "best.pt", device)
    return best, pd.DataFrame(state["history"])


def _epoch_row(model: torch.nn.Module, val_images: np.ndarray, val_labels: np.ndarray, class_weights: torch.Tensor,
               opt: torch.optim.Optimizer, epoch: int, steps: int, train_loss: float, train_seconds: float) -> dict:
    """One row of the history: the epoch's training loss and time, then validation and its time."""
    eval_start = time.perf_counter()
    row = {"epoch": epoch + 1, "steps": steps, "train_loss": train_loss,
           **validate(model, val_images, val_labels, class_weights),
           "lr": opt.param_groups[0]["lr"], "seconds": train_seconds}
    row["eval_seconds"] = time.perf_counter() - eval_start
    return row


def train_one_epoch(
    model: torch.nn.Module,
    cfg: TrainConfig,
    data: TrainingData,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    steps: int,
    *,
    desc: str = "",
    progress: bool = True,
) -> tuple[float, float]:
    """`steps` optimiser steps (and schedule steps) on batches of a fresh shuffle of the training rows,
    drawn from `gen`; returns the mean training loss over the steps and the seconds they took."""
    t0 = time.perf_counter()
    model.train()
    perm = torch.randperm(len(data.train_idx), generator=gen)
    order = data.train_idx[perm]
    total_loss = 0.0
    # mininterval: a few updates per epoch, since executed notebooks keep every update's text.
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=3.0)
    for step in bar:
        batch = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        idx, pos = order[batch], perm[batch]
        loss = batch_loss(model, cfg, data.augment, data.images[idx], data.labels[idx],
                          None if data.masks is None else data.masks[pos], data.class_weights, gen, data.randomiser)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step_loss = loss.item()  # one sync of the loss per step, for the sum and the bar
        total_loss += step_loss
        bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)  # a refresh here would bypass mininterval
    return total_loss / steps, time.perf_counter() - t0


def validate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
             class_weights: torch.Tensor) -> dict[str, float]:
    """The history row's validation columns: the class-weighted negative log-likelihood of the
    predicted probabilities, accuracy and macro-F1 (what early stopping and `best.pt` select on)."""
    proba = predict_proba(model, images)
    pred = proba.argmax(1)
    loss = F.nll_loss(
        torch.log(torch.from_numpy(proba).clamp_min(1e-12)),
        torch.from_numpy(labels.astype(np.int64)),
        weight=class_weights,
    ).item()
    f1 = f1_score(labels, pred, average="macro")
    return {"val_loss": loss, "val_accuracy": float((pred == labels).mean()), "val_macro_f1": float(f1)}


def _training_device(cfg: TrainConfig) -> torch.device:
    """The device `cfg` trains on, once its precision is known to be one the loop runs."""
    if cfg.precision not in (None, "bf16"):
        raise ValueError(f"precision={cfg.precision!r}: use None (float32) or 'bf16'")
    device = choose_device(cfg.device)
    if cfg.precision == "bf16" and not native_bf16_on(device):
        warnings.warn(f"precision='bf16' on a {device.type} without native bfloat16: training will be several "
                      "times slower than in float32 (a profile's precision 'auto' avoids it)", stacklevel=3)
    return device


def _training_data(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray,
                   weights: np.ndarray, train_masks: np.ndarray | None, device: torch.device) -> TrainingData:
    augment = Augment(**cfg.augment)
    randomiser = None if cfg.randomise is None else Randomise(**cfg.randomise)
    class_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    masks = None
    if cfg.mask_weight:
        if train_masks is None or len(train_masks) != len(train_idx):
            raise ValueError(f"mask_weight={cfg.mask_weight} needs train_masks aligned with the {len(train_idx)} "
                             "training images")
        masks = torch.from_numpy(train_masks)
    return TrainingData(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)),
                        torch.from_numpy(train_idx), masks, class_weights, augment, randomiser)


def _start_or_resume(run_dir: Path, cfg: TrainConfig, model: torch.nn.Module, gen: torch.Generator,
                     steps_per_epoch: int, device: torch.device) -> tuple[dict, torch.optim.Optimizer,
                                                                          torch.optim.lr_scheduler.LRScheduler]:
    """The run's state, optimiser and schedule: from `run_dir/last.pt` when it was written with this
    config (the model's weights, the optimiser, schedule and generator states restored with it),
    else fresh, with the step plan written to `plan.json`."""
    last = run_dir / "last.pt"
    ckpt = read_checkpoint(last) if last.is_file() else None
    if ckpt is not None and _same_config(ckpt["config"], cfg):
        state = ckpt["state"]
    else:
        ckpt = None
        total_steps = planned_steps(cfg, steps_per_epoch)
        state = {"epoch": 0, "best_f1": -1.0, "bad_epochs": 0, "history": [], "total_steps": total_steps}
        files.write_json(run_dir / "plan.json", {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                                                 "max_steps": cfg.max_steps, "device": describe(device, cfg.precision)})
    opt, sched = build_optimiser(model, cfg, state["total_steps"])
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
    return state, opt, sched


def _same_config(saved: dict, cfg: TrainConfig) -> bool:
    """Whether a `last.pt` was written by a run of `cfg`. A field TrainConfig has since lost does not
    count where it was left unset (None), as in `runs.run_key`: a run interrupted before an unused
    option was removed resumes instead of starting over."""
    current = cfg.to_dict()
    return {k: v for k, v in saved.items() if k in current or v is not None} == current


def _save_epoch(run_dir: Path, row: dict, state: dict, model: torch.nn.Module, cfg: TrainConfig,
                opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator,
                device: torch.device) -> None:
    """Add the epoch's `row` to `state` and write its files, each atomically: `best.pt` when validation
    macro-F1 improved, `last.pt` (everything a resume needs) and `history.csv`."""
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    if row["val_macro_f1"] > state["best_f1"]:
        state["best_f1"], state["bad_epochs"] = row["val_macro_f1"], 0
        save_checkpoint(run_dir / "best.pt", model, cfg,
                        extra={"epoch": row["epoch"], "val_macro_f1": row["val_macro_f1"]})
    else:
        state["bad_epochs"] += 1
    files.write_with(
        run_dir / "last.pt",
        lambda tmp: torch.save(
            {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "state": state,
            },
            tmp,
        ),
    )
    files.write_text(run_dir / "history.csv", pd.DataFrame(state["history"]).to_csv(index=False))
