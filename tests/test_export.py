"""The reader's exports: no code, a title, contents, captioned figures, page numbers, a PDF title."""

import base64
import io
import re
import subprocess

import matplotlib.pyplot as plt
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from braintumour.reporting import export


def _png() -> str:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _executed(tmp_path):
    code = new_code_cell('secret_code_line = 1\noutputs.save_figure(fig, "demo_curve")')
    code.outputs = [new_output("stream", name="stderr", text="FutureWarning: noise for the runner\n"),
                    new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})]
    table = new_code_cell("frame")
    wide = "".join(f"<th>column number {i}</th>" for i in range(14)) + "<th>LASTCOLUMN</th>"
    table.outputs = [new_output("execute_result", data={"text/html": f"<table><tr>{wide}</tr><tr><td>a cell</td>"
                                                        "</tr></table>", "text/plain": "a cell"}, execution_count=2)]
    nb = new_notebook(cells=[new_markdown_cell("# 42 · A *demo* notebook\n\nWhat it shows."),
                             new_markdown_cell("## First part"), code, new_markdown_cell("## Second part"), table])
    path = tmp_path / "42_demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_html_for_a_reader_has_no_code_and_has_title_contents_and_captions(tmp_path):
    html = export.export_html(_executed(tmp_path), tmp_path / "out.html").read_text()
    assert "secret_code_line" not in html and "noise for the runner" not in html
    assert "<title>42 · A demo notebook</title>" in html
    assert 'href="#First-part"' in html and 'href="#Second-part"' in html
    assert "Figure 1" in html and "reports/figures/demo_curve.pdf" in html
    assert "a cell" in html  # outputs stay


def test_pdf_carries_the_title_and_page_numbers(tmp_path):
    html = export.export_html(_executed(tmp_path), tmp_path / "out.html")
    pdf = export.export_pdf(html, tmp_path / "out.pdf")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "Title:           42 · A demo notebook" in info
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^1\s*/\s*\d+$", text, re.M) and "secret_code_line" not in text  # the page-number footer
    assert "LASTCOLUMN" in re.sub(r"\s", "", text)  # a wide table with ragged rows is fitted, not cut off


def _tall_png() -> str:
    fig, ax = plt.subplots(figsize=(3, 14))  # taller than an A4 page at the page's width
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def test_a_figure_taller_than_a_page_leaves_no_blank_page_and_no_page_problem(tmp_path):
    text = new_markdown_cell("# Tall\n\n" + "A line of prose before the figure.\n\n" * 25)
    figure = new_code_cell("fig")
    figure.outputs = [new_output("display_data", data={"image/png": _tall_png(), "text/plain": "<Figure>"})]
    nbformat.write(new_notebook(cells=[text, figure, new_markdown_cell("After the figure.")]), tmp_path / "t.ipynb")
    pdf = export.export_pdf(export.export_html(tmp_path / "t.ipynb", tmp_path / "t.html"), tmp_path / "t.pdf")
    assert export.page_problems(pdf) == []


def test_page_problems_names_a_python_repr_and_a_blank_page(tmp_path):
    (tmp_path / "bad.html").write_text(
        "<html><body><p>parts: {'train': 517, 'tune': 98}</p>"
        '<div style="break-before: page; height: 200mm"></div><p style="break-before: page">the end</p>'
        "</body></html>")
    problems = export.page_problems(export.export_pdf(tmp_path / "bad.html", tmp_path / "bad.pdf"))
    assert problems == ["bad.pdf, page 1: a Python repr: parts: {'train': 517, 'tune': 98}", "bad.pdf, page 2: blank"]


def test_a_table_too_wide_for_the_page_is_split_into_tables_that_repeat_the_first_column(tmp_path):
    header = "<th>ROWNAME</th>" + "".join(f"<th>a rather long column header number {i}</th>" for i in range(12))
    cells = "<td>first row</td>" + "".join(f"<td>{i}</td>" for i in range(12))
    table = new_code_cell("frame")
    html = f"<table><tr>{header}</tr><tr>{cells}</tr></table>"
    table.outputs = [new_output("execute_result", data={"text/html": html, "text/plain": "frame"}, execution_count=1)]
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Wide\n\nProse."), table]), tmp_path / "w.ipynb")
    pdf = export.export_pdf(export.export_html(tmp_path / "w.ipynb", tmp_path / "w.html"), tmp_path / "w.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert text.count("ROWNAME") >= 2 and text.count("first row") == text.count("ROWNAME")
    assert "number 11" in text and export.page_problems(pdf) == []


def test_the_reader_gets_a_printed_dict_in_words_and_the_executed_notebook_keeps_it(tmp_path):
    printed = new_code_cell("print(parts)")
    printed.outputs = [new_output("stream", name="stdout", text="external parts: {'train': 517, 'tune': 98}\n")]
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Old run"), printed]), tmp_path / "old.ipynb")
    before = (tmp_path / "old.ipynb").read_text()
    pdf = export.export_pdf(export.export_html(tmp_path / "old.ipynb", tmp_path / "old.html"), tmp_path / "old.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "external parts: train 517 and tune 98" in text and export.page_problems(pdf) == []
    assert (tmp_path / "old.ipynb").read_text() == before
