"""The notebooks tell the story and the library holds the logic: no notebook defines a function, and no
code cell is longer than `MAX_LINES` lines of code (blank lines and comment-only lines not counted)."""

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_LINES = 20


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(cell number, source) of each code cell, IPython magics and shell lines blanked so `ast` can read it."""
    nb = nbformat.read(path, as_version=4)
    return [(i, "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines()))
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]


def lines_of_code(source: str) -> int:
    """Lines that are neither blank nor a comment alone."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_defines_a_function(path):
    defined = [f"cell {i}: {node.name}" for i, source in code_cells(path) for node in ast.walk(ast.parse(source))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"{path.name} defines {defined}: move them into lib/braintumour/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_code_cell_is_longer_than_the_limit(path):
    long = {i: n for i, source in code_cells(path) if (n := lines_of_code(source)) > MAX_LINES}
    assert not long, f"{path.name}: cells over {MAX_LINES} lines of code (cell: lines) {long}"


def test_the_line_count_skips_blank_and_comment_lines():
    assert lines_of_code("a = 1\n\n# a comment\n    # indented comment\nb = 2  # trailing comment\n") == 2
