"""Where tensors run and in which precision: decided here, once, for training, BatchNorm
re-estimation, evaluation, CAMs, ROAD and `predict`.

Device: `$BRAINTUMOUR_DEVICE` if set, else the profile's `device`, else the first of CUDA, Apple
MPS and the CPU that this machine has. Precision: bfloat16 autocast where the device runs it
natively (CUDA GPUs that support it, CPUs with AVX-512 BF16 or AMX), float32 elsewhere. On a CPU
without native bfloat16 autocast is emulated and a training step is about 11x slower, so "auto"
never picks it there; a profile or config that asks for "bf16" explicitly still gets it.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

DEVICE_ENV = "BRAINTUMOUR_DEVICE"
PRECISIONS = ("auto", "bf16", "float32")


class DeviceUnavailable(RuntimeError):
    """A device was asked for that this machine does not have."""


def accelerators() -> dict[str, bool]:
    """Which device types this machine has: the one place torch is asked (the tests pretend to be
    other machines here, never by patching torch, whose compiler checks its own functions)."""
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}


def choose_device(requested: str | None = None) -> torch.device:
    """The device to compute on: `$BRAINTUMOUR_DEVICE`, then `requested` (a profile's `device`),
    then "auto" (CUDA, then MPS, then CPU)."""
    name = os.environ.get(DEVICE_ENV) or requested or "auto"
    available = accelerators()
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise DeviceUnavailable(f"device {name!r} is not a torch device ({e}); use auto, cpu, cuda or mps") from e
    if not available.get(device.type, False):
        raise DeviceUnavailable(f"device {name!r} was asked for (${DEVICE_ENV} or the profile) but this machine "
                                "has none; unset it or use auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"device {name!r} was asked for (${DEVICE_ENV} or the profile) but this machine "
                                f"has {torch.cuda.device_count()} CUDA device(s); use cuda, or unset it")
    return device


def cuda_native_bf16() -> bool:
    """Whether this machine's CUDA GPU computes bfloat16 in hardware (Ampere and later)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def cpu_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_bf16(device: torch.device | None = None) -> bool:
    """Whether `device` (default: the CPU) computes bfloat16 natively rather than emulating it."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        return cuda_native_bf16()
    if device.type == "cpu":
        return cpu_native_bf16()
    return False  # MPS: float32, the precision every Apple GPU and torch release handles alike


def choose_precision(device: torch.device, requested: str | None = "auto") -> str | None:
    """`TrainConfig.precision` for `device`: "bf16" (autocast to bfloat16) or None (float32).
    "auto" picks bf16 only where the device runs it natively."""
    if requested not in PRECISIONS and requested is not None:
        raise ValueError(f"precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if native_bf16(device) else None
    return "bf16" if requested == "bf16" else None


def autocast(device: torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 on `device` when `precision` is "bf16", otherwise nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def device_name(device: torch.device) -> str:
    """A human-readable name of the hardware behind `device`."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU ({platform.machine()})"
    return _cpu_model() or platform.processor() or platform.machine()


def cpu_id(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The host CPU's vendor, family, model and stepping ("GenuineIntel 6-207-2"), from `cpuinfo`;
    None where there is none (macOS, Windows)."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in open(cpuinfo, encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() in ("vendor_id", "cpu family", "model", "stepping"):
                fields.setdefault(key.strip(), value.strip())
            elif not line.strip() and fields:
                break  # the first processor's block is enough
    if len(fields) < 4:
        return None
    return f"{fields['vendor_id']} {fields['cpu family']}-{fields['model']}-{fields['stepping']}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def precision_name(precision: str | None) -> str:
    """A resolved `TrainConfig.precision` ("bf16" or None) as metrics files name it."""
    return "bfloat16" if precision == "bf16" else "float32"


def describe(device: torch.device, precision: str | None) -> dict:
    """What a metrics file records about where its numbers were computed. `cpu_capability` is the
    widest vector instruction set torch's CPU kernels use (AVX512, AVX2, ...): the same CPU model
    gives other numbers when it is capped (`ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA`). `cpu_id`
    tells CPU generations apart that share a model name: cloud Xeons of two generations both call
    themselves "Intel(R) Xeon(R) Processor", and oneDNN's kernels, so the numbers, differ between them."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "precision": precision_name(precision),
        "native_bf16": native_bf16(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_id": cpu_id(),
        "threads": torch.get_num_threads(),
    }

