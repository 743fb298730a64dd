"""Checkpoint files: where a saved model lives (`model_file`, `saved_model`), the one reader (`--model`,
`best.pt`, `last.pt`, cached pretrained weights), the model checkpoint's writer and loader, and BatchNorm
re-estimation on a loaded model.

A `.pt` file is a pickle, and unpickling an arbitrary file can run arbitrary code (a `__reduce__`
that calls `os.system`, say). So every checkpoint is read with `torch.load(weights_only=True)`:
PyTorch's restricted unpickler, which rebuilds tensors, primitive types and the plain containers
(dict, list, tuple, set, OrderedDict) and refuses any other global, naming it.

Allow-list: `ALLOWED_GLOBALS`, passed to `torch.serialization.safe_globals` for the duration of
one read (never added process-wide). It is empty: everything this project writes (weights, the
config as a plain dict, optimiser and one-cycle scheduler state, generator states as uint8
tensors, history as lists of dicts of floats) loads without any extra global. Add a class here
only if a checkpoint needs it, and only a class whose reconstruction cannot run code.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from braintumour import files
from braintumour.config import reports_dir
from braintumour.training.device import choose_device, model_device
from braintumour.training.models import build_architecture, written_by
from braintumour.training.transforms import to_input

if TYPE_CHECKING:
    from braintumour.training.recipes import TrainConfig

ALLOWED_GLOBALS: tuple[Any, ...] = ()
# The input sizes a checkpoint may ask for: the profiles train at 64 to 224 pixels, and nothing above
# the Kaggle slices' own 512 adds information, while each step up costs memory quadratically (30,000
# pixels would be 3.6 GB per image).
IMAGE_SIZES = (8, 512)


class CheckpointError(ValueError):
    """A model file is missing, unreadable, or does not match its architecture."""


class SavedModelMissing(CheckpointError):
    """A saved model (reports/models/<name>.pt) is not there; the message names the notebook that writes it."""


def model_file(name: str) -> Path:
    """Where model `name` (a registered model or a variant, `models.REGISTRY` / `models.VARIANTS`) is
    saved: reports/models/<name>.pt, whether or not it is there yet (what a notebook writes to)."""
    return reports_dir() / "models" / f"{name}.pt"


def saved_model(name: str, data_fingerprint: str | None = None) -> Path:
    """The saved model `name`, checked to be there: `SavedModelMissing` otherwise, saying which notebook to
    re-execute. With `data_fingerprint`, the checkpoint's own must match it (CheckpointError if not: it was
    trained on other data)."""
    path = model_file(name)
    if not path.is_file():
        notebook = written_by(name)
        again = f"re-execute notebook {notebook}" if notebook else "no notebook writes it"
        raise SavedModelMissing(f"{path} is not there ({again}, or make reproduce)")
    if data_fingerprint is not None:
        found = read_checkpoint(path).get("data_fingerprint")
        if found != data_fingerprint:
            raise CheckpointError(f"{path} was trained on other data (fingerprint {found}, not {data_fingerprint}); "
                                  f"re-execute notebook {written_by(name)}")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The dict a checkpoint file holds, read without running any code from it.

    Raises CheckpointError, naming the file, when it is missing, not a checkpoint, or holds
    anything but tensors and plain containers (such a file is refused, never unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # old pickles: refused anyway
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: holds more than tensors and plain containers ({_refusal(e)}); "
            "not unpickled, since that could run code"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint ({_first_line(e)})") from e
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a usable model checkpoint (holds a {type(payload).__name__}, not a dict)")
    return payload


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
        if not isinstance(size, int) or isinstance(size, bool) or not IMAGE_SIZES[0] <= size <= IMAGE_SIZES[1]:
            raise ValueError(f"its config has no usable image_size (got {size!r}; the library supports "
                             f"{IMAGE_SIZES[0]} to {IMAGE_SIZES[1]} pixels)")
        # The file replaces every tensor (a fine-tuned baseline's ImageNet weights included): `assign`
        # makes its tensors the parameters of layers built without values.
        model = build_architecture(cfg["model"], **cfg.get("model_kwargs", {}))
        model.load_state_dict(_float32_weights(payload["model"]), assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise ValueError("some of the model's tensors are not in the file")
        odd = [(name, t.dtype) for name, t in model.named_parameters() if t.dtype != torch.float32]
        if odd:
            raise ValueError(f"weight {odd[0][0]} is {odd[0][1]}, not a real floating-point number")
    except KeyError as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint (no {e} entry)") from e
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint ({str(e).splitlines()[0]})") from e
    return model.to(device or choose_device()).eval(), payload


def _float32_weights(state: dict) -> dict:
    """The file's tensors in float32, the precision every model here computes in: a float16, bfloat16
    or float64 checkpoint is converted (exactly, or to the nearest float32), not run in a dtype the
    input does not have. A weight that is not finite (NaN or infinity, or float64 beyond float32's
    range) would turn every output into NaN, one class for every image: refused, naming the tensor."""
    out = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            t = t.float()
            bad = t.numel() - int(torch.isfinite(t).sum())
            if bad:
                raise ValueError(f"{bad:,} of its {t.numel():,} values in {name} are not finite (NaN or infinity)")
        out[name] = t
    return out


def check_runs(model: torch.nn.Module, size: int, path: str | Path) -> None:
    """One blank size x size image through the model, before any file is read: a model that cannot
    run at its own image size (too small for its architecture), or whose output is not finite, is
    refused as a checkpoint (CheckpointError naming `path`), not found out on the first real batch."""
    x = to_input(torch.zeros(1, size, size, dtype=torch.uint8)).to(model_device(model))
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: not a usable model checkpoint (it cannot run on {size}x{size} images: "
                              f"{_first_line(e)})") from e
    if not torch.isfinite(out).all():
        raise CheckpointError(f"{path}: not a usable model checkpoint (its output on a blank image is not finite)")


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


def _refusal(e: pickle.UnpicklingError) -> str:
    """The line of torch's refusal that says what was refused (not its advice to load it unsafely)."""
    boiler = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(e).splitlines()]
    lines = [line.removeprefix("WeightsUnpickler error: ") for line in lines if line and not line.startswith(boiler)]
    return lines[0].rstrip(".") if lines else "unsupported content"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
