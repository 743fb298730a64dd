"""The table of docs/experiments.md that lists every experiment result file, written from the files.

`experiments/*.py` write their results as JSON under `experiments/results/` (`outputs.write_result`);
this renders one row per file and seed, so the numbers in that table are read from the results, never
typed. `make experiments-log` rewrites the marked block; a test checks that it is up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from braintumour import files
from braintumour.reporting.summary import markdown_table
from braintumour.training.device import precision_name

MARK_START, MARK_END = "<!-- experiment-results:start -->", "<!-- experiment-results:end -->"
COLUMNS = ["result file", "overrides", "seed", "Testing errors", "Testing accuracy", "training minutes",
           "machine", "precision", "commit"]


def _overrides(result: dict[str, Any]) -> str:
    """The recipe fields a screen changed; blank for an experiment that trains no recipe."""
    if "overrides" not in result:
        return ""
    overrides = result["overrides"] or {}
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(overrides.items())) or "none (the recipe)"


def _errors(value: Any) -> str:
    """`test_errors_summed` as an int, or a dict of them by checkpoint rule."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return "" if value is None else str(value)


def _machine(compute: dict[str, Any]) -> str:
    """The device's name, with the CPU's `cpu_id` and instruction set where the file records them."""
    details = [compute[k] for k in ("cpu_id", "cpu_capability") if compute.get(k)]
    return compute.get("device_name", "") + (f" ({', '.join(details)})" if details else "")


def _precision(run: dict[str, Any], compute: dict[str, Any]) -> str:
    """What the run trained in: its own config's precision, else the profile's."""
    if "precision" not in run.get("config", {}):
        return compute.get("precision", "")
    return precision_name(run["config"]["precision"])


def _rows(path: Path, result: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """One row per seed where the result has runs with their Testing numbers, else one for the file."""
    compute = result.get("compute", {})
    commit = result.get("git_commit", "")
    common = {"result file": f"`{path.relative_to(root).as_posix()}`", "overrides": _overrides(result),
              "machine": _machine(compute),
              "commit": f"`{commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}`"}
    runs = [r for r in result.get("runs", []) if isinstance(r, dict) and "test_errors" in r]
    if not runs:
        return [{**common, "seed": "", "Testing errors": _errors(result.get("test_errors_summed")),
                 "Testing accuracy": "", "training minutes": "", "precision": compute.get("precision", "")}]
    return [{**common, "seed": r.get("seed", ""), "Testing errors": r["test_errors"],
             "Testing accuracy": f"{r['test_accuracy']:.2%}" if "test_accuracy" in r else "",
             "training minutes": r.get("train_minutes", ""), "precision": _precision(r, compute)} for r in runs]


def results_table(results_dir: Path, root: Path) -> pd.DataFrame:
    """Every `*.json` under `results_dir` (sorted by path), as rows of `COLUMNS`."""
    rows = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a readable result file ({e})") from e
        rows += _rows(path, result, root)
    return pd.DataFrame(rows, columns=COLUMNS)


def log_block(results_dir: Path, root: Path) -> str:
    """The Markdown between the markers: the table, or a line saying there are no results yet."""
    table = results_table(results_dir, root)
    body = markdown_table(table) if len(table) else "No result files yet."
    return "\n".join([MARK_START, "", body, "", MARK_END])


def rewrite_log(doc: Path, results_dir: Path, root: Path) -> bool:
    """Replace the marked block of `doc` with `log_block`; True when the file changed."""
    return files.rewrite_marked_block(doc, MARK_START, MARK_END, log_block(results_dir, root))
