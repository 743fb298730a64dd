"""One training loop: class-weighted cross-entropy, batch augmentation, AdamW + one-cycle schedule,
early stopping on validation macro-F1, atomic best/last checkpoints, resume, CSV history.

Deterministic for a given seed on the CPU: all randomness (init, shuffling, augmentation, dropout)
comes from seeded generators whose states are saved in the checkpoint, so an interrupted run that
resumes gives the same weights as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch.optim.swa_utils import update_bn
from tqdm import tqdm

from braintumour import files
from braintumour.checkpoints import CheckpointError, read_checkpoint
from braintumour.config import CLASSES
from braintumour.device import autocast, choose_device, cpu_native_bf16, describe, model_device
from braintumour.device import native_bf16 as native_bf16_on
from braintumour.evaluate import predict_proba
from braintumour.models import build_model
from braintumour.profiles import profile_precision
from braintumour.randomise import Randomise
from braintumour.splits import source_balance
from braintumour.transforms import Augment, to_input

# AdamW's peak learning rate where an architecture needs another than TrainConfig's 3e-3: the
# batch-normalised networks (ours, VGG-16-BN, ResNet-50) and the tiny LeNet-5 train at 3e-3 from
# scratch; AlexNet has no normalisation layers and gets 5e-4, the usual Adam rate for such nets.
PEAK_LR: dict[str, float] = {"alexnet": 5e-4}
PARTIAL_LABEL = len(CLASSES)  # the label of an image known to hold a tumour of unknown type (Br35H `yes`)


@dataclass
class TrainConfig:
    model: str = "custom_cnn"
    model_kwargs: dict = field(default_factory=dict)
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4  # the baselines' (their run keys hold it); the custom CNN's is its profile's
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.05
    class_weighting: str = "inverse"  # "inverse", "effective" or "none"
    patience: int = 10  # epochs without a better validation macro-F1 before stopping
    augment: dict = field(default_factory=dict)  # overrides of transforms.Augment's defaults
    seed: int = 0
    threads: int = 0  # 0: leave torch's default
    # Optimiser steps the run takes at most (None: `epochs` full epochs). A run's length is fixed in
    # steps or epochs, never by a clock, so the same profile trains the same steps on any machine; the
    # one-cycle schedule is laid out over these steps and runs to its end.
    max_steps: int | None = None
    # Weight of the mask-alignment term (models with `logits_and_maps`, Training images with an
    # expert mask): `mask_alignment_loss`, the true class's map against the mask. None: plain loss.
    mask_weight: float | None = None
    # Power of `splits.source_balance`: per-image loss multipliers, within each class, that boost
    # the source groups (`splits.source_groups`) the class has few images of. None: class weights only.
    source_balance: float | None = None
    # "bf16": the forward pass and the loss run under autocast to bfloat16, while weights, optimiser state
    # and every evaluation stay float32 (mixed precision, Micikevicius et al., 2018). None: float32
    # throughout. Profiles say "auto" and `device.choose_precision` resolves it to what the device runs
    # natively, so the resolved value is what a run key holds.
    precision: str | None = None
    # mixup (Zhang et al., 2018): each augmented batch is blended with a shuffled copy of itself, the
    # blend weight drawn from Beta(alpha, alpha), and the loss blended with the same weight. None: off.
    # Screened on the custom CNN (alpha 0.2, with weight decay 0.05, 50 epochs, seed 0): 21 Testing errors
    # against 10 without; no profile uses it.
    mixup_alpha: float | None = None
    # True: BatchNorm's running statistics of the kept checkpoint are recomputed over the un-augmented
    # training images (`reestimate_batchnorm`) whenever the run is loaded (`runs.train_or_load`). A run's
    # own statistics are momentum averages over augmented batches (intensity jitter, zero-padded warps),
    # taken while the weights still moved; at inference the model sees clean images. Replayed on the
    # custom CNN's three seeds (`benchmarks/checkpoint_selection.py`), the same checkpoints made 28
    # Testing errors instead of 33, the mask-guided model's 22 instead of 29 (the baselines lost by it:
    # `baseline_config`). A step after training, so not part of the run key: a finished run is not
    # retrained for it. None: the statistics as trained.
    reestimate_bn: bool | None = None
    # Acquisition and contrast randomisation (`randomise.Randomise`'s fields overridden; {} its
    # defaults) applied to each uint8 batch before `augment`. None: off.
    randomise: dict | None = None
    # Weight of the partial-label term: images labelled `PARTIAL_LABEL` (a tumour of unknown type) add
    # -log P(any tumour class), which moves probability off *notumor* and leaves the split between the
    # three tumour classes free. None: every label is one of the four classes.
    partial_label_weight: float | None = None
    # Where to train: None for `device.choose_device()` ($BRAINTUMOUR_DEVICE, else CUDA, MPS, CPU), or
    # a profile's `device`. Not part of the run key: a finished run is reused on any device.
    device: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def custom_cnn_config(params: dict, seed: int, class_weighting: str = "inverse", **overrides) -> TrainConfig:
    """The custom CNN's training recipe from a profile's parameters (`profiles.get_profile`), with
    `TrainConfig` fields overridden: notebook 03 and `benchmarks/screen_recipe.py` build it here, so a
    screened recipe and the notebook's share one run cache key; notebooks 06 (patient folds, a fixed
    number of steps) and 07 (the mask-guided model) too, so every custom-CNN run trains with the same recipe."""
    return TrainConfig(**{"model": "custom_cnn", "model_kwargs": {"width": params["width"]},
                          "image_size": params["image_size"], "epochs": params["epochs"],
                          "batch_size": params["batch_size"], "patience": params["patience"],
                          "weight_decay": params["weight_decay"],
                          "class_weighting": class_weighting, "precision": profile_precision(params),
                          "seed": seed, "reestimate_bn": params["reestimate_bn"], "device": params["device"],
                          **overrides})


def baseline_config(params: dict, model: str, seed: int, max_steps: int | None = None,
                    pretrained: bool = False) -> TrainConfig:
    """A baseline's training recipe (LeNet-5, AlexNet, VGG-16-BN, ResNet-50) from a profile's parameters:
    the custom CNN's optimiser, schedule, weight decay, precision and class weights, only the peak
    learning rate per architecture (`PEAK_LR`), and no width. Notebooks 04 and 06 build it here, so a
    baseline trains with one recipe wherever it appears. BatchNorm statistics stay as trained
    (`reestimate_bn` off): re-estimated, ResNet-50 fell from 88.02% to 82.38% on Testing and VGG-16 from
    43.86% to 43.63% (notebook 04 at b32e20e), so the step is the custom CNN's, not the protocol's."""
    return TrainConfig(model=model, model_kwargs={"pretrained": True} if pretrained else {},
                       image_size=params["image_size"], epochs=params["epochs"],
                       batch_size=params["batch_size"], patience=params["patience"], class_weighting="inverse",
                       lr=PEAK_LR.get(model, TrainConfig.lr), weight_decay=params["weight_decay"], seed=seed,
                       max_steps=max_steps, precision=profile_precision(params), device=params["device"])



def reestimate_batchnorm(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> torch.nn.Module:
    """Recompute every BatchNorm layer's running mean and variance as the plain average over `images`
    (uint8 (N, H, W), preprocessed as at inference, no augmentation), with torch's
    `swa_utils.update_bn`; the weights are untouched. Returns `model`, changed in place, in eval mode.
    A model without BatchNorm (LeNet-5, AlexNet) is returned as it was."""
    x, device = torch.from_numpy(images), model_device(model)
    batches = (to_input(x[i : i + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
               for i in range(0, len(x), batch_size))
    with torch.no_grad():
        update_bn(batches, model, device=device)
    return model.eval()


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
    train_groups: np.ndarray | None = None,
    on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train `cfg.model` on images[train_idx], select on images[val_idx]; return (best model, history).

    `train_masks` (aligned with `train_idx`, all zero where an image has none) are needed when
    `cfg.mask_weight` is set; only training images' masks are ever passed in. `train_groups` (aligned
    with `train_idx`, `splits.source_groups`) are needed when `cfg.source_balance` is set.

    `run_dir` receives `last.pt` (every epoch, for resume), `best.pt` (best validation macro-F1)
    and `history.csv`. If `run_dir/last.pt` exists with the same config, training resumes from it.
    `stop_after_epochs` simulates an interruption (used by the resume test). `on_epoch_end(epoch, model)`
    is called after each epoch's checkpoints, the model in eval mode; it must not draw random numbers
    (`benchmarks/checkpoint_selection.py` uses it to look at every epoch's weights).
    """
    run_dir = Path(run_dir)
    if cfg.precision not in (None, "bf16"):
        raise ValueError(f"precision={cfg.precision!r}: use None (float32) or 'bf16'")
    device = choose_device(cfg.device)
    if cfg.precision == "bf16" and not native_bf16_on(device):
        warnings.warn(f"precision='bf16' on a {device.type} without native bfloat16: training will be several "
                      "times slower than in float32 (a profile's precision 'auto' avoids it)", stacklevel=2)
    if cfg.mixup_alpha and (cfg.mask_weight or cfg.source_balance is not None):
        raise ValueError("mixup_alpha cannot be combined with mask_weight or source_balance: a blended image "
                         "has no single mask or source group")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs).to(device, memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on BN and biases
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps_per_epoch = len(train_idx) // cfg.batch_size  # drop the last partial batch: BN needs >1
    augment = Augment(**cfg.augment)
    randomiser = None if cfg.randomise is None else Randomise(**cfg.randomise)
    class_w = torch.as_tensor(weights, dtype=torch.float32, device=device)
    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels.astype(np.int64))
    if cfg.mask_weight:
        if train_masks is None or len(train_masks) != len(train_idx):
            raise ValueError(f"mask_weight={cfg.mask_weight} needs train_masks aligned with the {len(train_idx)} "
                             "training images")
        masks_t = torch.from_numpy(train_masks)
    sample_w = None  # per-image multipliers of the class weights, aligned with train_idx
    if cfg.source_balance is not None:
        if train_groups is None or len(train_groups) != len(train_idx):
            raise ValueError(f"source_balance={cfg.source_balance} needs train_groups aligned with the "
                             f"{len(train_idx)} training images")
        sample_w = torch.from_numpy(source_balance(labels[train_idx], train_groups, cfg.source_balance)).float()

    last = run_dir / "last.pt"
    ckpt = read_checkpoint(last) if last.is_file() else None
    if ckpt is not None and ckpt["config"] == cfg.to_dict():
        state = ckpt["state"]
    else:
        ckpt = None
        total_steps = planned_steps(cfg, steps_per_epoch)
        state = {"epoch": 0, "best_f1": -1.0, "bad_epochs": 0, "history": [], "total_steps": total_steps}
        files.write_json(run_dir / "plan.json", {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                                                 "max_steps": cfg.max_steps, "device": describe(device, cfg.precision)})
    total_steps = state["total_steps"]
    n_epochs = -(-total_steps // steps_per_epoch)  # the last epoch may be partial under max_steps
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.warmup_fraction
    )
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)

    while state["epoch"] < n_epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train_idx), generator=gen)
        order = torch.from_numpy(train_idx)[perm]
        total_loss = 0.0
        steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        bar = tqdm(
            range(steps),
            desc=f"{cfg.model} seed {cfg.seed} epoch {epoch + 1}/{n_epochs}",
            disable=not progress,
            leave=False,
            mininterval=3.0,  # a few updates per epoch: executed notebooks keep every update's text
        )
        for step in bar:
            batch = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
            idx = order[batch]
            pos = perm[batch]
            loss = batch_loss(model, cfg, augment, x_all[idx], y_all[idx], masks_t[pos] if cfg.mask_weight else None,
                              class_w, gen, None if sample_w is None else sample_w[pos], randomiser)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step_loss = loss.item()  # one sync of the loss per step, for the sum and the bar
            total_loss += step_loss
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)  # a refresh here would bypass mininterval
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
            "steps": steps,
            "train_loss": total_loss / steps,
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
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "state": state,
                },
                tmp,
            ),
        )
        history = pd.DataFrame(state["history"])
        files.write_text(run_dir / "history.csv", history.to_csv(index=False))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: loss {row['train_loss']:.4f} val acc {row['val_accuracy']:.4f} "
                f"val F1 {val_f1:.4f} ({train_seconds:.0f}s)"
            )
        if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
            break

    best, _ = load_checkpoint(run_dir / "best.pt", device)
    return best, pd.DataFrame(state["history"])


def batch_loss(
    model: torch.nn.Module,
    cfg: TrainConfig,
    augment: Augment,
    images: torch.Tensor,
    targets: torch.Tensor,
    masks: torch.Tensor | None,
    class_weights: torch.Tensor,
    gen: torch.Generator,
    sample_weights: torch.Tensor | None = None,
    randomiser: Randomise | None = None,
) -> torch.Tensor:
    """The training loss of one uint8 batch: augment it (masks warped with their images), class-weighted
    cross-entropy, plus `cfg.mask_weight` times the mask-alignment term on the images that have a mask.
    `sample_weights` multiply each image's class weight (`cfg.source_balance`); the loss stays a
    weighted mean, normalised by the batch's total weight as PyTorch's class-weighted mean is.
    With `cfg.mixup_alpha` the augmented batch is blended with a permutation of itself, and the loss too.
    One function for the training loop and `benchmarks/cpu_precision.py`, so the benchmark times the real step."""
    if randomiser is not None:
        images = randomiser(images, gen)
    x, m = augment.with_masks(images, masks if cfg.mask_weight else None, gen)
    if cfg.mixup_alpha:
        lam, partner = mixup_pairs(len(x), cfg.mixup_alpha, gen)
        x = lam * x + (1 - lam) * x[partner]
    # Augmentation draws from the host generator (its state is in the checkpoint); the batch moves after it.
    device = model_device(model)
    x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    targets, m = targets.to(device), None if m is None else m.to(device)
    sample_weights = None if sample_weights is None else sample_weights.to(device)
    if cfg.mixup_alpha:
        partner = partner.to(device)
    with autocast(device, cfg.precision):
        logits, maps = model.logits_and_maps(x) if cfg.mask_weight else (model(x), None)
    logits = logits.float()
    maps = None if maps is None else maps.float()

    if cfg.partial_label_weight is not None:
        return partial_label_loss(logits, targets, class_weights, cfg)

    def cross_entropy(t: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits, t, weight=class_weights, label_smoothing=cfg.label_smoothing,
                               reduction=reduction)

    if cfg.mixup_alpha:
        loss = lam * cross_entropy(targets) + (1 - lam) * cross_entropy(targets[partner])
    elif sample_weights is None:
        loss = cross_entropy(targets)
    else:
        per_image = cross_entropy(targets, reduction="none")
        loss = (per_image * sample_weights).sum() / (class_weights[targets] * sample_weights).sum()
    if cfg.mask_weight:
        has = masks.flatten(1).amax(1) > 0  # images without a mask train as before
        if has.any():
            loss = loss + cfg.mask_weight * mask_alignment_loss(maps[has], m[has], targets[has]).mean()
    return loss


def partial_label_loss(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor,
                       cfg: TrainConfig) -> torch.Tensor:
    """A weighted mean over the batch's images: the class-weighted cross-entropy of each image with
    one of the four labels (weight: its class's), and -log P(tumour) = logsumexp(all logits) -
    logsumexp(tumour logits) of each image labelled `PARTIAL_LABEL` (weight `cfg.partial_label_weight`).
    A partial label (the answer is one of a set of classes; Cour et al., 2011): it moves probability
    off *notumor* and leaves the split between glioma, meningioma and pituitary to the labelled
    images. Per image, not per term: as a second mean of its own, the few partial images of a batch
    weighed as much as all the labelled ones, and validation accuracy fell (docs/experiments.md)."""
    partial = targets == PARTIAL_LABEL
    known = targets[~partial]
    total = F.cross_entropy(logits[~partial], known, weight=class_weights, label_smoothing=cfg.label_smoothing,
                            reduction="sum") if len(known) else logits.new_zeros(())
    weight = class_weights[known].sum()
    if partial.any():
        tumour = [i for i in range(logits.shape[1]) if i != CLASSES.index("notumor")]
        z = logits[partial]
        total = total + cfg.partial_label_weight * (z.logsumexp(1) - z[:, tumour].logsumexp(1)).sum()
        weight = weight + cfg.partial_label_weight * int(partial.sum())
    return total / weight


def mixup_pairs(n: int, alpha: float, gen: torch.Generator) -> tuple[float, torch.Tensor]:
    """mixup's blend weight, drawn from Beta(alpha, alpha), and each image's partner (a permutation of
    the batch). torch's Beta sampler takes no generator, so numpy draws it from a seed taken from `gen`:
    the run stays deterministic and resumes exactly (gen's state is in the checkpoint)."""
    seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(n, generator=gen)


def mask_alignment_loss(maps: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per image, how far the target class's map (N, classes, h, w) is from its mask (N, H, W, values
    in [0, 1]): a binary cross-entropy that reads each map cell as a logit for "tumour here", the target
    being the cell's tumour coverage relative to the image's best-covered cell (`tumour_coverage`),
    with the cells inside and outside weighted by how much tumour they hold (a tumour covers a few per
    cent of the image). Supervising the attention map with the mask is GAIN's external supervision
    (Li et al., 2018).

    Why not penalise only the share of the rectified map outside the mask (Ross et al.'s idea on the
    map)? A map that is negative everywhere has no share outside, and its ReLU passes no gradient:
    in a cpu pilot that is where most glioma and meningioma maps ended, Grad-CAM blank. The
    cross-entropy keeps a gradient everywhere and asks for positive evidence inside the mask.
    Why relative coverage? The plain fraction of each cell inside the mask asks for a negative logit
    wherever a tumour covers under half a cell: at 8 pixels a cell, every cell of a small pituitary
    tumour, whose maps then came out blank (most blank maps of that version were pituitary).
    "Any tumour in the cell" (target 1 on every touched cell) fixed that but, in a pilot on one fold,
    spread the map over the tumour's border cells and lowered the energy inside the mask. Relative
    coverage asks for positive evidence on the tumour's core whatever its size, and little on cells
    it only grazes."""
    logits = maps[torch.arange(len(targets)), targets]
    inside = tumour_coverage(masks, logits.shape[-2:])
    bce = F.binary_cross_entropy_with_logits(logits, inside, reduction="none")
    outside = 1 - inside
    return 0.5 * ((bce * inside).sum(dim=(1, 2)) / (inside.sum(dim=(1, 2)) + 1e-6)
                  + (bce * outside).sum(dim=(1, 2)) / (outside.sum(dim=(1, 2)) + 1e-6))


def tumour_coverage(masks: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) masks in [0, 1] -> (N, h, w): each map cell's share of tumour pixels, relative to the
    image's best-covered cell (which gets 1, however small the tumour)."""
    cover = F.adaptive_avg_pool2d(masks.unsqueeze(1).float(), cells).squeeze(1)
    return cover / cover.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]


def planned_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The optimiser steps a run takes: `cfg.epochs` full epochs, or `cfg.max_steps` if fewer. A
    function of the config and the data alone, never of how fast this machine is."""
    total = cfg.epochs * steps_per_epoch
    return total if cfg.max_steps is None else max(1, min(total, cfg.max_steps))


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: TrainConfig, extra: dict | None = None) -> Path:
    """Weights plus the config that rebuilds the model, written atomically."""
    payload = {"config": cfg.to_dict(), "model": model.state_dict(), **(extra or {})}
    return files.write_with(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as and load its weights (eval mode), on `device`
    (default `device.choose_device()`): evaluation, CAMs and ROAD then run where the model is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: model file not found (train one with `make reproduce`, "
            "or use the committed reports/models/custom_cnn.pt)"
        )
    payload = read_checkpoint(path)  # weights_only: no code from the file runs
    try:
        cfg = payload["config"]
        size = cfg.get("image_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ValueError(f"its config has no usable image_size (got {size!r})")
        model = build_model(cfg["model"], **cfg.get("model_kwargs", {}))
        model.load_state_dict(payload["model"])
    except KeyError as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint (no {e} entry)") from e
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint ({str(e).splitlines()[0]})") from e
    return model.to(device or choose_device()).eval(), payload
