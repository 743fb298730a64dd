"""One training loop: class-weighted cross-entropy, batch augmentation, AdamW + one-cycle schedule,
early stopping on validation macro-F1, atomic best/last checkpoints, resume, CSV history.

Deterministic for a given seed on the CPU: all randomness (init, shuffling, augmentation, dropout)
comes from seeded generators whose states are saved in the checkpoint, so an interrupted run that
resumes gives the same weights as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm import tqdm

from braintumour import files
from braintumour.evaluate import predict_proba
from braintumour.models import build_model
from braintumour.transforms import Augment


@dataclass
class TrainConfig:
    model: str = "custom_cnn"
    model_kwargs: dict = field(default_factory=dict)
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.05
    class_weighting: str = "inverse"  # "inverse", "effective" or "none"
    patience: int = 10  # epochs without a better validation macro-F1 before stopping
    augment: dict = field(default_factory=dict)  # overrides of transforms.Augment's defaults
    seed: int = 0
    threads: int = 0  # 0: leave torch's default

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


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
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train `cfg.model` on images[train_idx], select on images[val_idx]; return (best model, history).

    `run_dir` receives `last.pt` (every epoch, for resume), `best.pt` (best validation macro-F1)
    and `history.csv`. If `run_dir/last.pt` exists with the same config, training resumes from it.
    `stop_after_epochs` simulates an interruption (used by the resume test).
    """
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on BN and biases
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps_per_epoch = len(train_idx) // cfg.batch_size  # drop the last partial batch: BN needs >1
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=cfg.warmup_fraction
    )
    augment = Augment(**cfg.augment)
    class_w = torch.as_tensor(weights, dtype=torch.float32)
    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels.astype(np.int64))

    state = {"epoch": 0, "best_f1": -1.0, "bad_epochs": 0, "history": []}
    last = run_dir / "last.pt"
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        if ckpt["config"] == cfg.to_dict():
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            state = ckpt["state"]

    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        model.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total_loss = 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{cfg.model} seed {cfg.seed} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
            mininterval=3.0,  # a few updates per epoch: executed notebooks keep every update's text
        )
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = augment(x_all[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y_all[idx], weight=class_w, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        train_seconds = time.perf_counter() - t0

        val_proba = predict_proba(model, images[val_idx])
        val_pred = val_proba.argmax(1)
        val_true = labels[val_idx]
        val_loss = F.nll_loss(
            torch.log(torch.from_numpy(val_proba).clamp_min(1e-12)),
            torch.from_numpy(val_true.astype(np.int64)),
            weight=class_w,
        ).item()
        val_f1 = f1_score(val_true, val_pred, average="macro")
        row = {
            "epoch": epoch + 1,
            "train_loss": total_loss / steps_per_epoch,
            "val_loss": val_loss,
            "val_accuracy": float((val_pred == val_true).mean()),
            "val_macro_f1": float(val_f1),
            "lr": opt.param_groups[0]["lr"],
            "seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0 - train_seconds,
        }
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if val_f1 > state["best_f1"]:
            state["best_f1"], state["bad_epochs"] = float(val_f1), 0
            save_checkpoint(run_dir / "best.pt", model, cfg, extra={"epoch": epoch + 1, "val_macro_f1": float(val_f1)})
        else:
            state["bad_epochs"] += 1
        files.write_with(
            last,
            lambda tmp: torch.save(
                {
                    "config": cfg.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "state": state,
                },
                tmp,
            ),
        )
        history = pd.DataFrame(state["history"])
        files.write_text(run_dir / "history.csv", history.to_csv(index=False))
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: loss {row['train_loss']:.4f} val acc {row['val_accuracy']:.4f} "
                f"val F1 {val_f1:.4f} ({train_seconds:.0f}s)"
            )
        if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
            break

    best, _ = load_checkpoint(run_dir / "best.pt")
    return best, pd.DataFrame(state["history"])


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: TrainConfig, extra: dict | None = None) -> Path:
    """Weights plus the config that rebuilds the model, written atomically."""
    payload = {"config": cfg.to_dict(), "model": model.state_dict(), **(extra or {})}
    return files.write_with(path, lambda tmp: torch.save(payload, tmp))


class CheckpointError(ValueError):
    """A model file is missing, unreadable, or does not match its architecture."""


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as and load its weights (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: model file not found (train one with `make reproduce`, "
            "or use the committed reports/models/custom_cnn.pt)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        cfg = payload["config"]
        model = build_model(cfg["model"], **cfg.get("model_kwargs", {}))
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint ({str(e).splitlines()[0]})") from e
    return model.eval(), payload
