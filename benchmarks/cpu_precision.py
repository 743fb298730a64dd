"""Training-step time per model on this CPU, float32 vs bfloat16 autocast (channels-last both).

Why notebook 04 trains everything in float32: on a CPU without native bfloat16 (AVX2 only, no
AVX-512-BF16 or AMX) autocast makes every model several times slower.

    .venv/bin/python benchmarks/cpu_precision.py [--models custom_cnn lenet5 ...] [--size 128]
"""

from __future__ import annotations

import argparse

import torch

from braintumour.models import build_model
from braintumour.train import step_seconds


def timed(name: str, bf16: bool, size: int, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = build_model(name).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,))
    return step_seconds(model, x, y, lr=1e-3, repeats=repeats, bfloat16=bf16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["custom_cnn", "lenet5", "resnet50"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size} px")
    for name in args.models:
        fp32 = timed(name, False, args.size, args.batch, args.repeats)
        bf16 = timed(name, True, args.size, args.batch, args.repeats)
        print(f"{name:12s} float32 {fp32:7.3f} s/step   bfloat16 {bf16:7.3f} s/step   ratio {bf16 / fp32:5.1f}x")


if __name__ == "__main__":
    main()
