"""One schema and one writer for every metrics file, and one way to save figures."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from braintumour import files
from braintumour.config import project_root, reports_dir
from braintumour.device import choose_device, describe
from braintumour.profiles import PROFILES, profile_precision


def git_commit() -> str:
    """HEAD's commit, suffixed with '-dirty' when tracked files have uncommitted changes."""
    root = project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "lib", "notebooks"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def compute_record(profile: str) -> dict[str, Any]:
    """Where a profile's numbers are computed on this machine (`device.describe`)."""
    params = PROFILES.get(profile, {"device": None, "precision": "auto"})
    device = choose_device(params["device"])
    return describe(device, profile_precision(params))


def metrics_path(name: str) -> Path:
    return reports_dir() / "metrics" / f"{name}.json"


def write_metrics(name: str, *, profile: str, data_fingerprint: str, **fields: Any) -> Path:
    """Write reports/metrics/<name>.json with the shared header fields first, atomically. `compute`
    records the device, its name, the precision the profile resolves to there, and torch's threads."""
    payload = {
        "name": name,
        "profile": profile,
        **fields,
        "compute": compute_record(profile),
        "data_fingerprint": data_fingerprint,
        "git_commit": git_commit(),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return files.write_json(metrics_path(name), payload)


def write_csv(table: pd.DataFrame, name: str, *, data_fingerprint: str) -> Path:
    """Write reports/metrics/<name>.csv atomically, with the data fingerprint and commit as columns
    (a CSV has no header block; every metrics file records both)."""
    table = table.assign(data_fingerprint=data_fingerprint, git_commit=git_commit())
    return files.write_text(reports_dir() / "metrics" / f"{name}.csv", table.to_csv(index=False))


def save_figure(fig: plt.Figure, name: str, dpi: int = 300) -> list[Path]:
    """Save a figure as PNG (300 dpi) and PDF (vector, for LaTeX) under reports/figures/."""
    out = []
    for ext in ("png", "pdf"):
        path = reports_dir() / "figures" / f"{name}.{ext}"
        files.write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
        out.append(path)
    return out
