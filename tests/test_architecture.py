"""The library's shape: one package per stage, no import circles, and no module that re-exports another's
names."""

import ast
import re
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "braintumour"
STAGES = ("datasets", "training", "analysis", "reporting")
TOP_LEVEL = {"__init__", "__main__", "config", "files", "inputcheck", "predict"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The library modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("braintumour"):
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found & modules


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in LIB.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    # a package's __init__ importing its own modules is how a package is assembled, not a circle
    return {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


def test_the_library_has_no_import_circle():
    assert _cycle(_graph()) == []


def test_the_circle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_library_module_re_exports_names_with_all():
    assert [p.name for p in LIB.rglob("*.py") if "__all__" in p.read_text() and p.name != "__init__.py"] == []


def test_every_module_lives_in_its_stage_package():
    assert {p.stem for p in LIB.glob("*.py")} == TOP_LEVEL
    assert sorted(p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").is_file()) == sorted(STAGES)
    assert [str(p.relative_to(LIB)) for p in LIB.glob("*/*/*.py")] == []  # one level of packages


def test_a_stage_package_is_its_docstring_and_re_exports_nothing():
    for stage in STAGES:
        body = ast.parse((LIB / stage / "__init__.py").read_text()).body
        assert body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), stage
        if stage == "datasets":  # its registries of the sources, built from its own modules
            assert {t.id for n in body if isinstance(n, ast.AnnAssign | ast.Assign)
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])} == {"EXTERNAL", "SOURCES"}
        else:
            assert body[1:] == [], f"{stage}/__init__.py holds more than its docstring"


def test_no_module_is_only_imports():
    """A module kept only to import another's names under an old path (a shim) defines nothing."""
    shims = [str(p.relative_to(LIB)) for p in LIB.rglob("*.py") if p.name != "__init__.py"
             and all(isinstance(n, ast.Import | ast.ImportFrom | ast.Expr) for n in ast.parse(p.read_text()).body)]
    assert shims == []


def test_make_help_lists_every_target():
    makefile = LIB.parents[1] / "Makefile"
    phony = re.search(r"^\.PHONY:(.*)$", makefile.read_text(), re.M).group(1).split()
    shown = subprocess.run(["make", "--no-print-directory", "-f", str(makefile), "help"], capture_output=True,
                           text=True, check=True, cwd=makefile.parent).stdout
    assert [t for t in phony if t != "FORCE" and f"make {t} " not in shown] == []


def test_no_library_function_is_over_50_lines():
    long = [f"{path.relative_to(LIB)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in LIB.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 50]
    assert long == []
