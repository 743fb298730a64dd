"""The comparison table of notebook 04 and the README's headline rows, from model records."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import model_record

from braintumour.analysis import compare
from braintumour.reporting import record, summary


def _write(rec: record.ModelRecord, reports, monkeypatch) -> None:
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(reports))
    history = pd.DataFrame({"epoch": [1, 2], "val_macro_f1": [0.5, 0.6]})
    record.write(rec, {s: history for s in rec.seeds}, profile="cpu", data_fingerprint="fp")


def test_comparison_table_has_our_rows_then_the_quoted_literature():
    models = {"custom_cnn": model_record("custom_cnn", 0.95, seeds=(0, 1, 2)),
              "resnet50": model_record("resnet50", 0.6)}
    mc = {"resnet50": {"p_value": 0.001, "a_right_b_wrong": 50, "a_wrong_b_right": 3}}
    table = compare.comparison_table(models, "cpu", mc)
    assert list(table.model[:2]) == ["Custom CNN (ours)", "ResNet-50"]
    assert len(table) == 2 + len(summary.LITERATURE)
    quoted = table[table.source == "quoted, not re-run"]
    assert quoted["Testing accuracy"].tolist() == [lit["accuracy"] for lit in summary.LITERATURE]
    assert quoted["parameters"].isna().all()  # nothing of ours is invented for the papers' rows
    ours = table.set_index("model")
    assert ours.loc["ResNet-50", "McNemar p vs custom CNN"] == 0.001
    assert np.isnan(ours.loc["Custom CNN (ours)", "McNemar p vs custom CNN"])
    lo, hi = ours.loc["ResNet-50", "Testing accuracy ci95"]
    assert lo <= ours.loc["ResNet-50", "Testing accuracy"] <= hi
    assert ours.loc["Custom CNN (ours)", "train minutes per seed"] == pytest.approx(10.0)


def test_interval_rows_cover_both_subsets():
    rows = compare.interval_rows({"lenet5": model_record("lenet5", 0.7)}, "macro_f1")
    assert list(rows.subset) == ["Testing", "leakage-free Testing"]
    assert (rows.macro_f1_lo <= rows.macro_f1).all() and (rows.macro_f1 <= rows.macro_f1_hi).all()


def test_headline_table_adds_a_row_per_baselinemodel_record(tmp_path, monkeypatch):
    _write(model_record("custom_cnn", 0.95, seeds=(0, 1, 2)), tmp_path, monkeypatch)
    _write(model_record("vgg16_bn", 0.5), tmp_path, monkeypatch)
    table = summary.headline_table(tmp_path / "metrics")
    vgg = table[table.model.str.startswith("VGG-16")]
    assert len(vgg) == 1 and "1 seed)" in vgg.model.iloc[0]
    assert "±" not in vgg["Testing accuracy"].iloc[0]  # one seed has no spread to show
    assert "±" in table["Testing accuracy"].iloc[0]
    assert not table.model.str.startswith("ResNet-50").any()  # no file, no row


def test_a_refit_gets_its_own_row_after_ours_and_a_sentence_seed_by_seed(tmp_path, monkeypatch):
    cnn = model_record("custom_cnn", 0.95, seeds=(0, 1))
    cnn.test_per_seed = {0: {"errors": 9}, 1: {"errors": 10}}
    refit = model_record("custom_cnn", 0.97, seeds=(0, 1))
    cnn.refit = record.Refit(
        train_images=5712, kept="last epoch", train_seconds={0: 730.0, 1: 750.0}, epochs_run={0: 50.0, 1: 50.0},
        test_per_seed={0: {"errors": 8}, 1: {"errors": 6}}, test_over_seeds=refit.test_over_seeds,
        test_dedup_per_seed={}, test_dedup_over_seeds=refit.test_dedup_over_seeds, mcnemar_vs_held_out={})
    _write(cnn, tmp_path, monkeypatch)
    metrics = tmp_path / "metrics"
    table = summary.headline_table(metrics)
    assert table.model.iloc[1].startswith("Custom CNN, ours, refit on Training + validation (last epoch, 2 seeds)")
    assert table["Testing accuracy"].iloc[1] != table["Testing accuracy"].iloc[0]
    sentence = summary.refit_sentence(record.load("custom_cnn", metrics))
    assert "all 5,712 Training images" in sentence and "12.2-12.5 min" in sentence and "9 -> 8, 10 -> 6" in sentence
    assert sentence in summary.readme_block(metrics)
    cnn.refit = None  # a record without a refit: no row, no sentence
    _write(cnn, tmp_path, monkeypatch)
    assert not summary.headline_table(metrics).model.str.contains("refit").any()
    assert "Refit" not in summary.readme_block(metrics)


def test_provenance_groups_metrics_files_by_the_commit_that_wrote_them(tmp_path):
    for name, commit, when in (("custom_cnn", "aaa", "2026-01-02"), ("vgg16_bn", "bbb", "2026-01-01"),
                               ("lenet5", "bbb", "2026-01-01")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"git_commit": commit, "profile": "cpu", "written_at": when}))
    table = summary.provenance(tmp_path)
    assert list(table["metrics file"]) == ["custom_cnn.json", "lenet5.json", "vgg16_bn.json"]
    assert list(table["commit"]) == ["aaa", "bbb", "bbb"]
