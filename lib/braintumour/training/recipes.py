"""Training recipes: `TrainConfig`, the fields a run is trained from, and the two recipes every notebook
builds its runs with (`custom_cnn_config`, `baseline_config`), read from a profile's parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from braintumour.training.models import model_spec
from braintumour.training.profiles import profile_precision


@dataclass(kw_only=True)
class TrainConfig:
    """A run's fields. Those a recipe sets from the profile or the model's spec (model, image size, epochs,
    batch size, peak learning rate, weight decay, patience, seed) have no default: a config built by hand
    states them, and no library default can silently differ from the recipe. The field order is the run
    key's (`runs.run_key`) and the checkpoints'."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    image_size: int
    epochs: int
    batch_size: int
    lr: float  # AdamW's peak learning rate: the model's `ModelSpec.peak_lr` in the recipes
    weight_decay: float
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.05
    class_weighting: str = "inverse"  # "inverse", "effective" or "none"
    patience: int  # epochs without a better validation macro-F1 before stopping
    augment: dict = field(default_factory=dict)  # overrides of transforms.Augment's defaults
    seed: int
    threads: int = 0  # 0: leave torch's default
    # Optimiser steps the run takes at most (None: `epochs` full epochs). A run's length is fixed in
    # steps or epochs, never by a clock, so the same profile trains the same steps on any machine; the
    # one-cycle schedule is laid out over these steps and runs to its end.
    max_steps: int | None = None
    # Weight of the mask-alignment term (models with `logits_and_maps`, Training images with an
    # expert mask): `losses.mask_alignment_loss`, the true class's map against the mask. None: plain loss.
    mask_weight: float | None = None
    # "bf16": the forward pass and the loss run under autocast to bfloat16, while weights, optimiser state
    # and every evaluation stay float32 (mixed precision, Micikevicius et al., 2018). None: float32
    # throughout. Profiles say "auto" and `device.choose_precision` resolves it to what the device runs
    # natively, so the resolved value is what a run key holds.
    precision: str | None = None
    # True: BatchNorm's running statistics of the kept checkpoint are recomputed over the un-augmented
    # training images (`checkpoints.reestimate_batchnorm`) whenever the run is loaded (`runs.train_or_load`).
    # A run's own statistics are momentum averages over augmented batches (intensity jitter, zero-padded
    # warps), taken while the weights still moved; at inference the model sees clean images. Replaying the
    # custom CNN's seeds (`experiments/checkpoint_selection.py`) found fewer Testing errors with the same
    # checkpoints, for the mask-guided model too (docs/experiments.md); not for the baselines
    # (`baseline_config`). A step after training, so not part of the run key: a finished run is not
    # retrained for it. None: the statistics as trained.
    reestimate_bn: bool | None = None
    # Acquisition and contrast randomisation (`randomise.Randomise`'s fields overridden; {} its
    # defaults) applied to each uint8 batch before `augment`. None: off.
    randomise: dict | None = None
    # Weight of the partial-label term: images labelled `config.PARTIAL_LABEL` (a tumour of unknown type) add
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
    `TrainConfig` fields overridden: notebook 03 and `experiments/screen_recipe.py` build it here, so a
    screened recipe and the notebook's share one run cache key; notebooks 06 (patient folds, a fixed
    number of steps) and 07 (the mask-guided model) too, so every custom-CNN run trains with the same recipe.
    The peak learning rate is the model's (`ModelSpec.peak_lr`; the mask-guided model's is the custom CNN's)."""
    model = overrides.get("model", "custom_cnn")
    return TrainConfig(**{"model": model, "model_kwargs": {"width": params["width"]}, "lr": model_spec(model).peak_lr,
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
    learning rate per architecture (`ModelSpec.peak_lr`), and no width. Notebooks 04 and 06 build it here, so a
    baseline trains with one recipe wherever it appears. BatchNorm statistics stay as trained
    (`reestimate_bn` off): in notebook 04, re-estimating them lowered the baselines' Testing accuracy
    (docs/experiments.md), so the step is the custom CNN's, not the protocol's."""
    return TrainConfig(model=model, model_kwargs={"pretrained": True} if pretrained else {},
                       image_size=params["image_size"], epochs=params["epochs"],
                       batch_size=params["batch_size"], patience=params["patience"], class_weighting="inverse",
                       lr=model_spec(model).peak_lr, weight_decay=params["weight_decay"], seed=seed,
                       max_steps=max_steps, precision=profile_precision(params), device=params["device"])
