"""Execute notebooks with papermill, then export them for a reader (`export`): the engine behind
`make reproduce`.

A notebook is executed into a temporary file; only a complete, successful run is renamed over the
executed copy. A failed run is kept as `<name>.FAILED.ipynb` (never over a good one) and the
failing cell is named.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import papermill as pm

from braintumour import files
from braintumour.config import project_root, reports_dir
from braintumour.reporting.export import export

KERNEL_NAME = "braintumour"


class NotebookFailed(RuntimeError):
    pass


def _failing_cell(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                src = cell.source.strip().splitlines()
                first = next((line for line in src if not line.startswith("#")), src[0] if src else "")
                return f"cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


def execute(notebook: str | Path, profile: str, reports: Path | None = None, position: str = "",
            parameters: dict | None = None) -> Path:
    """Execute `notebook` with `profile` (and any other `parameters` of its parameters cell) into
    `<reports>/executed/` (code and outputs), then export HTML and PDF without code (`export.export`)."""
    notebook = Path(notebook)
    reports = Path(reports) if reports else reports_dir()
    out = reports / "executed" / notebook.name
    failed = out.with_suffix(".FAILED.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"==> {position} {notebook.name} (profile {profile}) -> {out}", flush=True)
    env_before = os.environ.get("BRAINTUMOUR_REPORTS")
    os.environ["BRAINTUMOUR_REPORTS"] = str(reports.resolve())  # the kernel inherits it
    t0 = time.perf_counter()
    try:
        with files.atomic_path(out) as tmp:
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(tmp),
                    parameters={"profile": profile, **(parameters or {})},
                    kernel_name=KERNEL_NAME,
                    cwd=str(notebook.parent.resolve()),
                    progress_bar=True,
                    log_output=False,
                )
            except pm.PapermillExecutionError as e:
                os.replace(tmp, failed)
                raise NotebookFailed(
                    f"{notebook.name} failed in {_failing_cell(failed)}; partial output kept in {failed}"
                ) from e
    finally:
        if env_before is None:
            os.environ.pop("BRAINTUMOUR_REPORTS", None)
        else:
            os.environ["BRAINTUMOUR_REPORTS"] = env_before
    failed.unlink(missing_ok=True)
    export(out, reports)
    print(f"<== {notebook.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
