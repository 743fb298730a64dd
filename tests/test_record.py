"""The model record: what is written is what is read back, history beside it, old files refused."""

import json

import pandas as pd
import pytest
from conftest import model_record

from braintumour.reporting import record


def _history(seed: int) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.1, 0.9, 0.8 - seed / 10],
                         "val_macro_f1": [0.5, 0.7, 0.6]})


def test_a_record_reads_back_as_written_with_seeds_as_ints_and_the_header(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(tmp_path))
    rec = model_record("lenet5", 0.8, seeds=(0, 3))
    rec.mcnemar_vs_custom_cnn = {"p_value": 0.5}
    path = record.write(rec, {0: _history(0), 3: _history(3)}, profile="smoke", data_fingerprint="fp")
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == record.SCHEMA_VERSION and raw["name"] == "lenet5" and "history" not in raw
    back = record.load("lenet5", tmp_path / "metrics")
    assert back == rec  # the header is not part of the comparison
    assert list(back.test_per_seed) == [0, 3] and back.train_seconds == {0: 600.0, 3: 600.0}
    assert back.header.profile == "smoke" and back.header.data_fingerprint == "fp" and back.header.compute
    histories = record.load_history("lenet5", tmp_path / "metrics")
    assert list(histories) == [0, 3]
    pd.testing.assert_frame_equal(histories[3], _history(3))


def test_a_file_from_before_the_record_names_itself_and_the_notebook_to_rerun(tmp_path):
    (tmp_path / "custom_cnn.json").write_text(json.dumps({"name": "custom_cnn", "test": {}}))
    with pytest.raises(record.RecordError, match=r"custom_cnn\.json: model record schema 1, expected 2; "
                                                 r"re-execute notebook 03"):
        record.load("custom_cnn", tmp_path)
    (tmp_path / "vgg16_bn.json").write_text("{not json")
    with pytest.raises(record.RecordError, match=r"vgg16_bn\.json: not JSON"):
        record.load("vgg16_bn", tmp_path)
    (tmp_path / "resnet50.json").write_text(json.dumps({"schema_version": record.SCHEMA_VERSION, "model": "x"}))
    with pytest.raises(record.RecordError, match=r"resnet50\.json: not a model record .*notebook 04"):
        record.load("resnet50", tmp_path)
    assert record.load("alexnet", tmp_path) is None  # not written yet
