"""A `TrainConfig` for tests that need one but no recipe: the fields a recipe sets, filled in with small,
explicit values (a real run's come from `recipes.custom_cnn_config` / `baseline_config`)."""

from __future__ import annotations

from braintumour.training.recipes import TrainConfig

TINY = {"model": "custom_cnn", "image_size": 128, "epochs": 30, "batch_size": 64, "lr": 3e-3, "weight_decay": 5e-4,
        "patience": 10, "seed": 0}


def tiny_config(**kw) -> TrainConfig:
    """A TrainConfig with `TINY`'s values where `kw` does not say otherwise."""
    return TrainConfig(**{**TINY, **kw})
