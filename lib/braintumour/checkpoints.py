"""The one reader of checkpoint files: `--model`, `best.pt`, `last.pt`, cached pretrained weights.

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
from typing import Any

import torch

ALLOWED_GLOBALS: tuple[Any, ...] = ()


class CheckpointError(ValueError):
    """A model file is missing, unreadable, or does not match its architecture."""


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


def _refusal(e: pickle.UnpicklingError) -> str:
    """The line of torch's refusal that says what was refused (not its advice to load it unsafely)."""
    boiler = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(e).splitlines()]
    lines = [line.removeprefix("WeightsUnpickler error: ") for line in lines if line and not line.startswith(boiler)]
    return lines[0].rstrip(".") if lines else "unsupported content"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
