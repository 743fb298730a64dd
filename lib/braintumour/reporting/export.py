"""Notebooks exported for a reader: self-contained HTML and PDF with no code cells, a title, a
table of contents, numbered figures with captions, tables that fit the page, and page numbers.

The executed notebooks in `reports/executed/` keep the code; these exports are what a thesis
reader or a radiologist opens. Chromium prints the HTML, so the PDF looks like the HTML and takes
its title (the notebook's first heading) as its metadata title.
"""

from __future__ import annotations

import copy
import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import numpy as np
from nbconvert import HTMLExporter
from PIL import Image

from braintumour import files
from braintumour.reporting import readable

# What a reader should never meet on a page: Python reprs of dicts, lists of tuples, arrays.
PYTHON_REPR = re.compile(r"\{'|\['|\[\(|array\(|dtype=")
PAGE_NUMBER = re.compile(r"^\s*\d+ / \d+\s*$", re.M)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A figure a cell saves (`outputs.save_figure(fig, "name")`) or shows (the results notebook's
# `readable.show_figure("name")`): the name is the call's last argument, a plain string.
SAVED_FIGURE = re.compile(r"""(?:save_figure\(|show_figure\()[^;]*?["']([\w.-]+)["']\s*\)\s*;?[ \t]*$""", re.M)
# Page margins with the page number in the footer (CSS page-margin boxes, Chromium 131 and later);
# tables shrink and wrap rather than run off the page. An output may break across pages: JupyterLab's
# print style keeps each whole, which left a blank page wherever one was taller than what remained.
PRINT_CSS = """
@page { size: A4; margin: 18mm 14mm 18mm 14mm;
        @bottom-center { content: counter(page) " / " counter(pages); font: 9pt sans-serif; color: #555; } }
body { font-size: 10.5pt; }
pre { white-space: pre-wrap; word-break: break-word; }
table { font-size: 8pt; max-width: 100%; border-collapse: collapse; }
td, th { word-break: normal; overflow-wrap: break-word; hyphens: manual; padding: 2px 4px; }
.jp-RenderedHTMLCommon table { table-layout: auto; }
img { max-width: 100%; max-height: 245mm; width: auto; height: auto; object-fit: contain; page-break-inside: avoid; }
.figure-caption { font-size: 9pt; color: #333; margin: 2px 0 14px 0; }
nav.toc { border: 1px solid #ccc; padding: 6px 14px; margin: 10px 0 18px 0; font-size: 10pt; }
nav.toc ol { margin: 4px 0; }
.jp-OutputArea-output { overflow: visible !important; }
.jp-OutputArea-child { break-inside: auto !important; }
"""
# A figure is never taller than a page (a taller one, kept whole, once left a blank page before it).
# A table wider than the page (A4 less margins, about 680 CSS px) first tries a smaller type; still too
# wide, a plain table is split into tables of as many columns as fit, each repeating the first column
# (the row's name); one with merged header cells is laid out to the page's width, its cells wrapping.
# (Landscape pages for wide tables, CSS named pages, made Chromium print a trailing blank page.)
FIT_TABLES_JS = """
function splitColumns(t) {
  const rows = [...t.rows], n = rows.length ? rows[0].cells.length : 0;
  if (n < 3 || rows.some(r => r.cells.length !== n || [...r.cells].some(c => c.colSpan > 1 || c.rowSpan > 1)))
    return false;
  const widths = [...Array(n).keys()].map(i => Math.max(...rows.map(r => r.cells[i].getBoundingClientRect().width)));
  const parts = [];
  let part = [], width = widths[0];
  for (let i = 1; i < n; i++) {
    if (part.length && width + widths[i] > 680) { parts.push(part); part = []; width = widths[0]; }
    part.push(i); width += widths[i];
  }
  parts.push(part);
  for (const cols of parts.reverse()) {
    const copy = t.cloneNode(true);
    for (const r of copy.rows) for (let i = n - 1; i >= 1; i--) if (!cols.includes(i)) r.deleteCell(i);
    copy.style.marginBottom = "8px";
    t.after(copy);
  }
  t.remove();
  return true;
}
window.addEventListener("load", () => {
  for (const t of [...document.querySelectorAll("table")]) {
    if (t.scrollWidth <= 680) continue;
    t.style.fontSize = "7pt";
    if (t.scrollWidth <= 680 || splitColumns(t)) continue;
    t.style.tableLayout = "fixed"; t.style.width = "100%";
  }
});
"""


def title_of(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first level-1 heading, without Markdown."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return re.sub(r"[`*_]", "", m.group(1)).strip()
    return fallback


def _for_reader(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` without stderr output, in which every figure a cell saved
    (`outputs.save_figure(..., "name")`) is followed by a numbered caption naming its file."""
    nb, n = copy.deepcopy(nb), 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # warnings and progress bars are for whoever runs the notebook, not for its reader
        cell.outputs = [_said_for_reader(o) for o in cell.get("outputs", []) if o.get("name") != "stderr"]
        images = [i for i, o in enumerate(cell.outputs) if "image/png" in o.get("data", {})]
        captions = []
        for i, name in zip(images, SAVED_FIGURE.findall(cell.source), strict=False):
            n += 1
            text = f"Figure {n}: <code>reports/figures/{html.escape(name)}.pdf</code> (and <code>.png</code>)."
            captions.append((i, nbformat.v4.new_output("display_data", data={
                "text/html": f'<p class="figure-caption">{text}</p>'})))
        for i, caption in reversed(captions):  # from the last, so the earlier positions still hold
            cell.outputs.insert(i + 1, caption)
    return nb


def _said_for_reader(output: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An output with any Python dict or list a notebook printed said as a phrase, and pandas' row numbers
    left out of its tables (`readable`): notebooks show sentences and readable tables now, and this keeps
    the reader's copy of one executed before they did free of both, the same values. The executed
    notebook keeps what was printed."""
    if output.get("output_type") == "stream":
        output.text = readable.without_reprs(output.text)
    data = output.get("data", {})
    if "text/markdown" in data:
        data["text/markdown"] = readable.without_reprs(data["text/markdown"])
    if "text/html" in data:
        data["text/html"] = readable.html_without_row_numbers(readable.html_without_reprs(data["text/html"]))
    return output


def _table_of_contents(body: str) -> str:
    """An ordered list of links to the level-2 headings nbconvert gave ids to."""
    heads = re.findall(r'<h2 id="([^"]+)">(.*?)(?:<a class="anchor-link".*?</a>)?</h2>', body, re.S)
    if not heads:
        return ""
    items = "".join(f'<li><a href="#{i}">{re.sub("<[^>]+>", "", t)}</a></li>' for i, t in heads)
    return f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>'


def export_html(executed: Path, html_path: Path) -> Path:
    """Self-contained HTML (figures embedded) without code cells or prompts, titled by the
    notebook's first heading, with a table of contents after it and captioned figures."""
    nb = _for_reader(nbformat.read(executed, as_version=4))
    title = title_of(nb, executed.stem)
    exporter = HTMLExporter(embed_images=True, exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", f"<style>{PRINT_CSS}</style><script>{FIT_TABLES_JS}</script></head>", 1)
    body = body.replace("</h1>", "</h1>" + _table_of_contents(body), 1)
    return files.write_text(html_path, body)


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
        # The flags keep a root, offline, display-less Chromium from trying the network or a sandbox;
        # Chromium's own header and footer (date, file URL) are off, the page numbers come from PRINT_CSS.
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=10000", f"--print-to-pdf={tmp}", html_path.resolve().as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"PDF export of {html_path} failed: {result.stderr.strip()[-500:]}")
    return pdf_path


def export(executed: Path, reports: Path) -> tuple[Path, Path]:
    """HTML and PDF of an executed notebook into `<reports>/html/` and `<reports>/pdf/`."""
    html_path = export_html(executed, reports / "html" / executed.with_suffix(".html").name)
    return html_path, export_pdf(html_path, reports / "pdf" / executed.with_suffix(".pdf").name)


def _page_is_blank(png: Path) -> bool:
    """Nothing drawn above the footer (its bottom 8%, where the page number is)."""
    pixels = np.asarray(Image.open(png).convert("L"))
    return bool(pixels[: int(pixels.shape[0] * 0.92)].min() >= 245)


def page_problems(pdf: Path) -> list[str]:
    """What a reader should not meet in an exported PDF, one line per page and problem: a Python
    repr in the text, or a blank page (no text but its number, nothing drawn)."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="pages-") as folder:
        subprocess.run(["pdftoppm", "-r", "15", "-gray", "-png", str(pdf), f"{folder}/page"], check=True)
        for number, png in enumerate(sorted(Path(folder).glob("page-*.png")), start=1):
            text = subprocess.run(["pdftotext", "-layout", "-f", str(number), "-l", str(number), str(pdf), "-"],
                                  capture_output=True, text=True, check=True).stdout
            problems += [f"{pdf.name}, page {number}: a Python repr: {line.strip()[:80]}"
                         for line in text.splitlines() if PYTHON_REPR.search(line)]
            if not PAGE_NUMBER.sub("", text).strip() and _page_is_blank(png):
                problems.append(f"{pdf.name}, page {number}: blank")
    return problems
