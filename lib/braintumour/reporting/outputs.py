"""One schema and one writer for every metrics file (the notebooks' reports/metrics/, the experiments'
results), and one way to save figures."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from braintumour import files
from braintumour.config import metrics_dir, project_root, reports_dir
from braintumour.training.device import choose_device, describe
from braintumour.training.profiles import PROFILES, profile_precision

# The folders whose uncommitted changes mark a notebook's metrics file, or an experiment's result, '-dirty'.
NOTEBOOK_SOURCES: tuple[str, ...] = ("lib", "notebooks")
EXPERIMENT_SOURCES: tuple[str, ...] = ("lib", "experiments")
HEADER_FIELDS: tuple[str, ...] = ("name", "profile", "compute", "data_fingerprint", "git_commit", "written_at")


def git_commit(sources: tuple[str, ...] = NOTEBOOK_SOURCES) -> str:
    """HEAD's commit, suffixed with '-dirty' when tracked files under `sources` have uncommitted changes."""
    root = project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *sources],
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
    return metrics_dir() / f"{name}.json"


def write_metrics(name: str, *, profile: str, data_fingerprint: str, **fields: Any) -> Path:
    """Write reports/metrics/<name>.json with the shared header fields first, atomically. `compute`
    records the device, its name, the precision the profile resolves to there, and torch's threads."""
    return _write_record(metrics_path(name), name, profile, data_fingerprint, fields, NOTEBOOK_SOURCES)


def results_dir(profile: str) -> Path:
    """Where the experiments (experiments/*.py) write their results: `$BRAINTUMOUR_RESULTS` if set, else
    experiments/results/ for the cpu profile (committed, as reports/ is) and build/<profile>/results/
    for the others, so a smoke or full run never overwrites the cpu profile's results."""
    env = os.environ.get("BRAINTUMOUR_RESULTS")
    if env:
        return Path(env).resolve()
    root = project_root()
    return root / "experiments" / "results" if profile == "cpu" else root / "build" / profile / "results"


def write_result(experiment: str, *, profile: str, data_fingerprint: str, out_dir: Path | None = None,
                 **fields: Any) -> Path:
    """Write an experiment's result, <results folder>/<experiment>.json (`out_dir`, else `results_dir`),
    atomically, with the header fields of every metrics file (`write_metrics`'s writer). Its commit is
    marked '-dirty' when lib/ or experiments/ has uncommitted changes."""
    if not experiment or Path(experiment).name != experiment or experiment.startswith("."):
        raise ValueError(f"experiment name {experiment!r}: expected a plain file name")
    reserved = sorted(set(fields) & set(HEADER_FIELDS))
    if reserved:
        raise ValueError(f"result field(s) {', '.join(reserved)} are header fields, written by write_result")
    path = Path(out_dir if out_dir is not None else results_dir(profile)) / f"{experiment}.json"
    return _write_record(path, experiment, profile, data_fingerprint, fields, EXPERIMENT_SOURCES)


def _write_record(path: Path, name: str, profile: str, data_fingerprint: str, fields: dict[str, Any],
                  sources: tuple[str, ...]) -> Path:
    """The one writer of a metrics file: the header fields (`HEADER_FIELDS`), `name` and `profile`
    first, the record's own fields, then where it was computed, from what data and code, and when."""
    payload = {
        "name": name,
        "profile": profile,
        **fields,
        "compute": compute_record(profile),
        "data_fingerprint": data_fingerprint,
        "git_commit": git_commit(sources),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return files.write_json(path, payload)


def write_csv(table: pd.DataFrame, name: str, *, data_fingerprint: str) -> Path:
    """Write reports/metrics/<name>.csv atomically, with the data fingerprint and commit as columns
    (a CSV has no header block; every metrics file records both)."""
    table = table.assign(data_fingerprint=data_fingerprint, git_commit=git_commit())
    return files.write_text(metrics_dir() / f"{name}.csv", table.to_csv(index=False))


def save_figure(fig: plt.Figure, name: str, dpi: int = 300) -> list[Path]:
    """Save a figure as PNG (300 dpi) and PDF (vector, for LaTeX) under reports/figures/. The PDF
    carries no creation date, so the same figure is the same file."""
    out = []
    for ext in ("png", "pdf"):
        path = reports_dir() / "figures" / f"{name}.{ext}"
        metadata = {"CreationDate": None} if ext == "pdf" else None
        files.write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=metadata))
        out.append(path)
    return out
