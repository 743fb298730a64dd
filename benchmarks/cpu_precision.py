"""Training-step time per model on this machine's device, float32 vs bfloat16 autocast (`TrainConfig.precision`).

One real training step each (`losses.batch_loss`: batch augmentation, channels-last, class-weighted
loss, AdamW), the median of a few after one untimed step. On `device.choose_device()` (the CPU
unless $BRAINTUMOUR_DEVICE or a GPU says otherwise). Whether bfloat16 pays depends on the CPU: with
AVX-512 BF16 (or AMX) oneDNN runs bf16 convolutions natively; on an AVX2-only CPU autocast makes
every model several times slower (what an earlier machine of this project measured).

With --roofline it also counts a step's floating-point operations (torch's `FlopCounterMode`) and
times a large float32 matrix product, the fastest work this machine's cores do: the step can take no
less than its operations at that rate, which says whether a step-time target is within the hardware.

With --dispatch it counts the operators a step dispatches (forward, backward and AdamW's multi-tensor
step, as on a GPU; views left out). A GPU launches at least one kernel for each, and its host pays for
every launch however little the kernel computes: for a network this small, what bounds a GPU's step.

    .venv/bin/python benchmarks/cpu_precision.py [--models custom_cnn lenet5 ...] [--size 128]
    .venv/bin/python benchmarks/cpu_precision.py --models custom_cnn --kwargs '{"width": 40, "stem_width": 20}'
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from braintumour.training.device import choose_device, describe
from braintumour.training.losses import batch_loss
from braintumour.training.models import build_model, model_spec
from braintumour.training.profiles import get_profile
from braintumour.training.recipes import TrainConfig
from braintumour.training.transforms import Augment


def step_seconds(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor], lr: float,
                 repeats: int = 3) -> float:
    """Median seconds of one AdamW training step on the loss `loss_of(model)`. The first step pays
    for the kernels' choice and is not counted; `loss.item()` waits for an asynchronous GPU."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        one_step(model, loss_of, opt).item()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def one_step(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor],
             opt: torch.optim.Optimizer) -> torch.Tensor:
    """One optimiser step on the loss `loss_of(model)`, as the training loop takes it; returns the loss."""
    loss = loss_of(model)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def training_step(name: str, precision: str | None, size: int, batch: int,
                  kwargs: dict) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor], float]:
    """A freshly built model, the loss of one real batch as a function of it, and the learning rate."""
    torch.manual_seed(0)
    # One step of the model's own recipe (peak learning rate, the cpu profile's weight decay); no run length.
    cfg = TrainConfig(model=name, model_kwargs=kwargs, image_size=size, epochs=1, batch_size=batch,
                      lr=model_spec(name).peak_lr, weight_decay=get_profile("cpu")["weight_decay"], patience=1,
                      seed=0, precision=precision)
    model = build_model(name, **kwargs).to(choose_device(), memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 4, (batch,), generator=gen)
    augment, weights = Augment(), torch.ones(4, device=choose_device())
    return model, partial(batch_loss, cfg=cfg, augment=augment, images=x, targets=y, masks=None,
                          class_weights=weights, gen=gen), cfg.lr


def timed(name: str, precision: str | None, size: int, batch: int, repeats: int, kwargs: dict) -> float:
    model, loss_of, lr = training_step(name, precision, size, batch, kwargs)
    return step_seconds(model, loss_of, lr, repeats)


def step_gflop(name: str, size: int, batch: int, kwargs: dict) -> float:
    """Floating-point operations of one float32 training step (forward and backward), in GFLOP."""
    model, loss_of, _ = training_step(name, None, size, batch, kwargs)
    with FlopCounterMode(display=False) as counter:
        loss_of(model).backward()
    return counter.get_total_flops() / 1e9


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 rate on a large matrix product (median of `repeats`), in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched inside it that compute (views only relabel memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's hook)
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def step_operators(name: str, size: int, batch: int, kwargs: dict) -> int:
    """Operators one training step dispatches, AdamW taking its multi-tensor path as it does on a GPU."""
    model, loss_of, lr = training_step(name, None, size, batch, kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)
    with OperatorCount() as counter:
        one_step(model, loss_of, opt)
    return counter.count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["custom_cnn", "lenet5", "resnet50"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kwargs", type=json.loads, default={}, help="build_model keyword arguments as JSON")
    ap.add_argument("--float32-only", action="store_true", help="skip bfloat16 (minutes per step where emulated)")
    ap.add_argument("--roofline", action="store_true", help="a step's GFLOP against the machine's matmul rate")
    ap.add_argument("--dispatch", action="store_true", help="the operators a step dispatches, each a GPU kernel launch")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, batch {args.batch}, {args.size} px, {describe(choose_device(), None)}")
    if args.roofline and choose_device().type == "cpu":
        rate = matmul_gflops()
        print(f"float32 matrix product: {rate:.1f} GFLOP/s on {torch.get_num_threads()} threads")
        for name in args.models:
            flop = step_gflop(name, args.size, args.batch, args.kwargs)
            print(f"{name:12s} {flop:7.2f} GFLOP a step: no faster than {flop / rate:.3f} s at that rate", flush=True)
    if args.dispatch:
        for name in args.models:
            print(f"{name:12s} {step_operators(name, args.size, args.batch, args.kwargs)} operators a step",
                  flush=True)
    for name in args.models:
        fp32 = timed(name, None, args.size, args.batch, args.repeats, args.kwargs)
        if args.float32_only:
            print(f"{name:12s} float32 {fp32:7.3f} s/step", flush=True)
            continue
        bf16 = timed(name, "bf16", args.size, args.batch, args.repeats, args.kwargs)
        print(f"{name:12s} float32 {fp32:7.3f} s/step   bfloat16 {bf16:7.3f} s/step   ratio {bf16 / fp32:5.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
