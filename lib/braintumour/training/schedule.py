"""How long a run trains and how its steps are taken: the planned number of optimiser steps, and
AdamW with a one-cycle learning-rate schedule laid out over exactly those steps."""

from __future__ import annotations

import torch

from braintumour.training.recipes import TrainConfig


def planned_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The optimiser steps a run takes: `cfg.epochs` full epochs, or `cfg.max_steps` if fewer. A
    function of the config and the data alone, never of how fast this machine is."""
    total = cfg.epochs * steps_per_epoch
    return total if cfg.max_steps is None else max(1, min(total, cfg.max_steps))


def build_optimiser(model: torch.nn.Module, cfg: TrainConfig,
                    total_steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW at `cfg.lr` with `cfg.weight_decay` on the weight matrices and kernels only (no weight
    decay on BatchNorm and biases), and a one-cycle schedule (warm-up over `cfg.warmup_fraction` of
    the steps, then annealing) laid out over `total_steps`, so a run ends at the end of its schedule."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps,
                                                pct_start=cfg.warmup_fraction)
    return opt, sched
