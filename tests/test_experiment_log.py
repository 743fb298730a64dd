"""docs/experiments.md's result-file table: read from the result files, and kept up to date with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braintumour.config import project_root
from braintumour.reporting import experiment_log


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def screen(precision: str | None, commit: str) -> dict:
    return {"name": "screen_recipe", "overrides": {"precision": precision},
            "runs": [{"seed": s, "test_errors": 10 + s, "test_accuracy": 0.99 - s / 1000, "train_minutes": 12.5,
                      "config": {"precision": precision}} for s in (0, 1)],
            "compute": {"device_name": "AMD EPYC", "cpu_id": "AuthenticAMD 25-1-1", "precision": "bfloat16"},
            "git_commit": commit}


def test_one_row_per_seed_with_the_runs_own_precision(tmp_path: Path) -> None:
    write(tmp_path / "results" / "a.json", screen(None, "0123456789abcdef-dirty"))
    write(tmp_path / "results" / "sub" / "b.json", {"name": "refit", "test_errors_summed": {"as_trained": 30},
                                                     "compute": {"device_name": "cpu", "precision": "float32"},
                                                     "git_commit": "fedcba9876543210"})
    table = experiment_log.results_table(tmp_path / "results", tmp_path)
    assert list(table["result file"]) == ["`results/a.json`"] * 2 + ["`results/sub/b.json`"]
    assert list(table["seed"]) == [0, 1, ""]
    assert list(table["Testing errors"]) == [10, 11, "as_trained 30"]
    assert list(table["Testing accuracy"])[:2] == ["99.00%", "98.90%"]
    # The run trained in float32 (precision None) though the profile's compute record says bfloat16.
    assert list(table["precision"]) == ["float32", "float32", "float32"]
    assert list(table["commit"]) == ["`0123456789ab-dirty`"] * 2 + ["`fedcba987654`"]
    assert table["machine"].iloc[0] == "AMD EPYC (AuthenticAMD 25-1-1)"
    assert table["overrides"].iloc[0] == "`precision=null`"
    assert table["overrides"].iloc[2] == ""  # no recipe trained, so no "none (the recipe)"


def test_rewrite_replaces_only_the_block_and_says_whether_it_changed(tmp_path: Path) -> None:
    write(tmp_path / "results" / "a.json", screen("bf16", "0123456789abcdef"))
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{experiment_log.MARK_START}\nold\n{experiment_log.MARK_END}\nafter\n")
    assert experiment_log.rewrite_log(doc, tmp_path / "results", tmp_path)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| `results/a.json` | `precision=\"bf16\"` | 0 | 10 | 99.00% | 12.5 |" in text
    assert not experiment_log.rewrite_log(doc, tmp_path / "results", tmp_path)


def test_a_broken_result_file_and_missing_markers_are_named(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a readable result file"):
        experiment_log.results_table(tmp_path / "results", tmp_path)
    (tmp_path / "results" / "bad.json").unlink()
    doc = tmp_path / "doc.md"
    doc.write_text("no markers here\n")
    with pytest.raises(ValueError, match="doc.md: markers"):
        experiment_log.rewrite_log(doc, tmp_path / "results", tmp_path)


def test_the_committed_table_matches_the_committed_result_files() -> None:
    root = project_root()
    doc = (root / "docs" / "experiments.md").read_text()
    block = experiment_log.log_block(root / "experiments" / "results", root)
    assert block in doc, "docs/experiments.md's result-file table is stale: run `make experiments-log`"
