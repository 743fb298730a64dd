"""Execute notebooks with papermill and export them with nbconvert: the engine behind `make reproduce`.

A notebook is executed into a temporary file; only a complete, successful run is renamed over the
executed copy. A failed run is kept as `<name>.FAILED.ipynb` (never over a good one) and the
failing cell is named.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from braintumour import files
from braintumour.config import project_root, reports_dir

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
    `<reports>/executed/`, then export HTML and PDF."""
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
    html = export_html(out, reports / "html" / notebook.with_suffix(".html").name)
    export_pdf(html, reports / "pdf" / notebook.with_suffix(".pdf").name)
    print(f"<== {notebook.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def export_html(executed: Path, html_path: Path) -> Path:
    """Self-contained HTML (figures embedded as data URIs), without the papermill parameter noise."""
    nb = nbformat.read(executed, as_version=4)
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    # Wrap long code lines instead of cutting them off at the page edge in the PDF.
    body = body.replace("</head>", "<style>pre { white-space: pre-wrap; word-break: break-word; }</style></head>", 1)
    return files.write_text(html_path, body)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no Chromium found for the PDF export: run `make pdf-tools` (installs Debian's chromium)")


def export_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print the self-contained HTML to PDF with headless Chromium (a real browser engine, so the
    PDF looks like the HTML: figures, tables and all)."""
    chromium = find_chromium()
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, files.atomic_path(pdf_path) as tmp:
        # The flags keep a root, offline, display-less Chromium from trying the network or a sandbox.
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=10000",
            f"--print-to-pdf={tmp}",
            html_path.resolve().as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"PDF export of {html_path} failed: {result.stderr.strip()[-500:]}")
    return pdf_path


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
