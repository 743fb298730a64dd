"""The training losses: one batch's loss as the loop takes it (`batch_loss`), and its terms: the
partial-label term for images known only to hold a tumour, and the mask-alignment term that trains a
class map towards an expert tumour mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from braintumour.config import CLASSES, PARTIAL_LABEL
from braintumour.training.device import autocast, model_device
from braintumour.training.randomise import Randomise
from braintumour.training.recipes import TrainConfig
from braintumour.training.transforms import Augment


def batch_loss(
    model: torch.nn.Module,
    cfg: TrainConfig,
    augment: Augment,
    images: torch.Tensor,
    targets: torch.Tensor,
    masks: torch.Tensor | None,
    class_weights: torch.Tensor,
    gen: torch.Generator,
    randomiser: Randomise | None = None,
) -> torch.Tensor:
    """The training loss of one uint8 batch: randomise and augment it (masks warped with their images),
    class-weighted cross-entropy (or `partial_label_loss` with `cfg.partial_label_weight`), plus
    `cfg.mask_weight` times the mask-alignment term on the images that have a mask. One function for the
    training loop and `benchmarks/cpu_precision.py`, so the benchmark times the real step."""
    if randomiser is not None:
        images = randomiser(images, gen)  # MONAI's and the JPEG steps: on the host
    # The uint8 batch moves to the device (a quarter of its float size) and is warped there, so a GPU
    # does not wait on the host's interpolation; the random draws stay on the host generator.
    device = model_device(model)
    masks = masks.to(device) if masks is not None and cfg.mask_weight else None
    x, m = augment.with_masks(images.to(device, non_blocking=True), masks, gen)
    x, targets = x.contiguous(memory_format=torch.channels_last), targets.to(device)
    with autocast(device, cfg.precision):
        logits, maps = model.logits_and_maps(x) if cfg.mask_weight else (model(x), None)
    logits = logits.float()
    maps = None if maps is None else maps.float()

    if cfg.partial_label_weight is not None:
        loss = partial_label_loss(logits, targets, class_weights, cfg)
    else:
        loss = F.cross_entropy(logits, targets, weight=class_weights, label_smoothing=cfg.label_smoothing)
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


def mask_alignment_loss(maps: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per image, how far the target class's map (N, classes, h, w) is from its mask (N, H, W, values
    in [0, 1]; for an image labelled `PARTIAL_LABEL`, a tumour of unknown type, the logsumexp of the
    tumour classes' maps): a binary cross-entropy that reads each map cell as a logit for "tumour
    here", the target being the cell's tumour coverage relative to the image's best-covered cell
    (`tumour_coverage`), with the cells inside and outside weighted by how much tumour they hold (a
    tumour covers a few per cent of the image). Supervising the attention map with the mask is GAIN's
    external supervision (Li et al., 2018).

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
    partial = targets == PARTIAL_LABEL
    logits = maps[torch.arange(len(targets)), targets.masked_fill(partial, 0)]
    if partial.any():
        tumour = [i for i in range(maps.shape[1]) if i != CLASSES.index("notumor")]
        logits = torch.where(partial[:, None, None], maps[:, tumour].logsumexp(1), logits)
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
