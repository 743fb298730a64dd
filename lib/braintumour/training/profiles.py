"""Run profiles: plain dictionaries of notebook parameters, passed by the Makefile to papermill.

A notebook never checks which machine it is on; it reads its profile here.
- smoke: a small subset and tiny budgets, for tests and `make smoke` (minutes).
- cpu:   the default real run on a 2-core CPU (the committed reports/).
- full:  paper-scale settings for a GPU machine.

Every run's length is fixed here in epochs or optimiser steps, never planned from a clock, so a
profile trains the same steps on any machine. `device` (None: `device.choose_device`'s pick) and
`precision` ("auto": bfloat16 where the device runs it natively, else float32) say where and how.
"""

from __future__ import annotations

import copy
from typing import Any

from braintumour.training.device import choose_device, choose_precision

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "image_size": 64,
        "per_class_limit": 40,
        "epochs": 2,
        "width": 32,
        "weight_decay": 0.05,
        "batch_size": 32,
        "seeds": [0],
        "ablation_seeds": [0],
        "patience": 2,
        "device": None,
        "precision": "float32",  # the same numbers on every kind of CPU
        "reestimate_bn": True,
        "baseline_seeds": [0],
        "baseline_steps": {"lenet5": 4, "alexnet": 4, "vgg16_bn": 2, "resnet50": 2},
        "pretrained_baselines": [],
        "fold_steps": {"custom_cnn": 4, "resnet50": 2, "custom_cnn_guided": 4},
        "external_limit": 24,  # Br35H images per part (notebook 08)
        "collection_limit": 24,  # images per part of each collection (notebook 11)
        "generalise_steps": 4,  # optimiser steps of each leave-one-out and ablation run (notebook 11)
        "shipped_steps": 4,  # optimiser steps of each of the shipped model's seeds (notebook 11)
        "generalise_seeds": [0],  # the shipped model's
        "generalise_ablations": {"no_other_collections": ["brats"], "no_skull_strip": ["brats"]},
        # Notebook 05's subsets of the masked Testing images: Score-CAM costs one forward pass per
        # channel of the target layer, ROAD's imputation a sparse solve per image and step.
        "scorecam_images": 8,
        "baseline_scorecam_images": 1,
        "baseline_cam_images": 8,
        "road_images": 1,
        "guided_cam_images": 24,  # notebook 07's masked Testing images for Grad-CAM, evenly spaced
        "misclassified_shown": 12,  # images in notebook 05's figures of misclassified Testing images
    },
    "cpu": {
        "image_size": 128,
        "per_class_limit": None,
        # The custom CNN's epochs: what fits a seed in about a quarter of an hour on a 2-core CPU with
        # native bfloat16 (docs/running.md); the accuracy came from the epochs (docs/experiments.md).
        "epochs": 50,
        # The custom CNN's width (BrainTumourCNN's w); the widths screened: docs/experiments.md.
        "width": 32,
        # AdamW's decoupled weight decay: the ConvNeXt/DeiT value (its screen: docs/experiments.md).
        "weight_decay": 0.05,
        "device": None,
        "precision": "auto",
        # TrainConfig.reestimate_bn for the custom CNN (plain and mask-guided; `custom_cnn_config`): the kept
        # checkpoint's BatchNorm statistics recomputed over the un-augmented training images, since the
        # trained ones average augmented batches (docs/experiments.md). Not for the baselines (`baseline_config`).
        "reestimate_bn": True,
        "batch_size": 64,
        "seeds": [0, 1, 2],
        "ablation_seeds": [0, 1, 2],  # class weighting off, the same 3 seeds as on
        # Early stopping in effect off: under the one-cycle schedule validation macro-F1 is noisy while the
        # learning rate is high, and a short patience stops a run before the rate has come down
        # (docs/experiments.md). The best-validation checkpoint is still the one kept.
        "patience": 50,
        # "The same CPU time for every model": each baseline takes the optimiser steps that fitted in the
        # minutes of one custom-CNN seed on the 2-core AVX-512-BF16 machine (docs/running.md), fixed so
        # that every machine trains the same steps.
        "baseline_seeds": [0],
        "baseline_steps": {"lenet5": 4000, "alexnet": 1324, "vgg16_bn": 121, "resnet50": 421},
        "pretrained_baselines": [],  # from scratch only: the committed comparison
        # Patient-disjoint folds (notebooks 06, 07): the median of the steps the committed runs took in
        # their 5 minutes each on the same machine (their spread: docs/running.md).
        "fold_steps": {"custom_cnn": 1860, "resnet50": 154, "custom_cnn_guided": 1568},
        "external_limit": None,
        "collection_limit": None,
        # Notebook 11's runs in steps (docs/running.md has their minutes): each leave-one-out and ablation
        # run, and each of the shipped model's seeds, which take twice the steps: chosen on Kaggle validation
        # and the collections' `tune` parts (experiments/generalised_steps.py, docs/experiments.md).
        "generalise_steps": 3000,
        "shipped_steps": 6000,
        "generalise_seeds": [0, 1, 2],
        # Ablations (generalisation.ABLATIONS) and the leave-one-out folds each is run on: the Kaggle-only
        # run (one run serves every fold). The other ablations are the full profile's.
        "generalise_ablations": {"no_other_collections": ["brats", "br35h", "oasis", "openneuro"]},
        "scorecam_images": 120,
        "baseline_scorecam_images": 8,
        "baseline_cam_images": 619,
        "road_images": 32,
        "guided_cam_images": 619,
        "misclassified_shown": None,  # all of them
    },
    "full": {
        "image_size": 224,
        "per_class_limit": None,
        "epochs": 60,
        "width": 32,
        "weight_decay": 0.05,
        "batch_size": 64,
        "seeds": [0, 1, 2, 3, 4],
        "ablation_seeds": [0, 1, 2, 3, 4],
        "patience": 15,
        "device": None,
        "precision": "auto",
        "reestimate_bn": True,
        "baseline_seeds": [0, 1, 2],
        "baseline_steps": None,  # every baseline trains the custom CNN's epochs
        # Extra rows fine-tuned from torchvision's ImageNet weights, where they can be downloaded.
        "pretrained_baselines": ["vgg16_bn", "resnet50"],
        "fold_steps": None,
        "external_limit": None,
        "collection_limit": None,
        "generalise_steps": None,  # epochs, as notebook 03
        "shipped_steps": None,
        "generalise_seeds": [0, 1, 2, 3, 4],
        "generalise_ablations": {name: ["brats", "br35h", "oasis", "openneuro"]
                                 for name in ("no_other_collections", "no_skull_strip", "no_randomise")},
        "scorecam_images": 619,
        "baseline_scorecam_images": 619,
        "baseline_cam_images": 619,
        "road_images": 200,
        "guided_cam_images": 619,
        "misclassified_shown": None,
    },
}


def get_profile(name: str, **overrides: Any) -> dict[str, Any]:
    """The named profile with notebook overrides applied (None means "keep the profile's value")."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    params = copy.deepcopy(PROFILES[name])
    unknown = set(overrides) - set(params)
    if unknown:
        raise ValueError(f"unknown profile parameter(s): {', '.join(sorted(unknown))}")
    params.update({k: v for k, v in overrides.items() if v is not None})
    params["profile"] = name
    return params


def steps_for(params: dict[str, Any], key: str, model: str) -> int | None:
    """A model's fixed run length under `params[key]` ("baseline_steps" or "fold_steps"); None: its epochs."""
    steps = params[key]
    return None if steps is None else steps[model]


def profile_precision(params: dict[str, Any]) -> str | None:
    """A profile's `precision` ("auto", "bf16" or "float32") resolved for the device it runs on:
    `TrainConfig.precision`'s "bf16" or None."""
    return choose_precision(choose_device(params["device"]), params["precision"])
