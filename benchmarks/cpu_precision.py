"""Training-step time per model on this CPU, float32 vs bfloat16 autocast (`TrainConfig.precision`).

One real training step each (`train.batch_loss`: batch augmentation, channels-last, class-weighted
loss, AdamW), timed by `train.step_seconds`. Whether bfloat16 pays depends on the CPU: with
AVX-512 BF16 (or AMX) oneDNN runs bf16 convolutions natively; on an AVX2-only CPU autocast makes
every model several times slower (what an earlier machine of this project measured).

    .venv/bin/python benchmarks/cpu_precision.py [--models custom_cnn lenet5 ...] [--size 128]
    .venv/bin/python benchmarks/cpu_precision.py --models custom_cnn --kwargs '{"width": 40, "stem_width": 20}'
"""

from __future__ import annotations

import argparse
import json

import torch

from braintumour.models import build_model
from braintumour.train import TrainConfig, batch_loss, native_bf16, step_seconds
from braintumour.transforms import Augment


def timed(name: str, precision: str | None, size: int, batch: int, repeats: int, kwargs: dict) -> float:
    torch.manual_seed(0)
    cfg = TrainConfig(model=name, model_kwargs=kwargs, image_size=size, batch_size=batch, precision=precision)
    model = build_model(name, **kwargs).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 4, (batch,), generator=gen)
    augment, weights = Augment(), torch.ones(4)
    return step_seconds(model, lambda m: batch_loss(m, cfg, augment, x, y, None, weights, gen), cfg.lr, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["custom_cnn", "lenet5", "resnet50"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kwargs", type=json.loads, default={}, help="build_model keyword arguments as JSON")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size} px, "
          f"native bfloat16: {native_bf16()}")
    for name in args.models:
        fp32 = timed(name, None, args.size, args.batch, args.repeats, args.kwargs)
        bf16 = timed(name, "bf16", args.size, args.batch, args.repeats, args.kwargs)
        print(f"{name:12s} float32 {fp32:7.3f} s/step   bfloat16 {bf16:7.3f} s/step   ratio {bf16 / fp32:5.2f}x")


if __name__ == "__main__":
    main()
