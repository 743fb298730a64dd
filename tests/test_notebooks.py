"""The notebook chain, executed with papermill in the smoke profile (the same as `make smoke`)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from braintumour.analysis import explain
from braintumour.config import CLASSES, SPLITS
from braintumour.reporting import export, record
from braintumour.reporting.pipeline import notebooks
from braintumour.training.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {"name", "profile", "data_fingerprint", "git_commit", "compute"}


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "braintumour", *args], cwd=ROOT, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_every_notebook_executes_in_the_smoke_profile(smoke_reports):
    for nb in notebooks():
        executed = smoke_reports / "executed" / nb.name
        assert executed.is_file(), nb.name
        assert (smoke_reports / "html" / nb.with_suffix(".html").name).is_file()
        cells = nbformat.read(executed, as_version=4).cells
        assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))


PIL_MODES = ("1", "L", "P", "RGB", "RGBA")


def _title_keys(tree):
    """Keys of a metrics tree that are neither snake_case ids nor data values (the Kaggle split
    folders, PIL image modes): display titles, which belong in `config`, not in metrics files."""
    if isinstance(tree, list):
        for item in tree:
            yield from _title_keys(item)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            is_data_value = key in SPLITS or key.removeprefix("mode_") in PIL_MODES
            if not (re.fullmatch(r"[a-z0-9_.+-]+", key) or is_data_value):
                yield key
            yield from _title_keys(value)


@pytest.mark.slow
def test_smoke_metrics_share_the_schema(smoke_reports):
    paths = sorted((smoke_reports / "metrics").glob("*.json"))
    assert {p.stem for p in paths} >= {"data", "custom_cnn", "class_weighting_ablation"}
    fingerprints = set()
    for p in paths:
        m = json.loads(p.read_text())
        assert SCHEMA <= set(m), p.name
        assert m["profile"] == "smoke"
        fingerprints.add(m["data_fingerprint"])
        assert not list(_title_keys(m)), (p.name, list(_title_keys(m)))
    assert len(fingerprints) == 1
    cnn = json.loads((smoke_reports / "metrics" / "custom_cnn.json").read_text())
    for key in ("model", "params", "image_size", "seeds", "train_seconds", "inference_images_per_second", "test"):
        assert key in cnn
    assert {"accuracy", "macro_f1", "balanced_accuracy", "per_class", "confusion_matrix", "ci95"} <= set(cnn["test"])
    assert (smoke_reports / "models" / "custom_cnn.pt").is_file()
    assert (smoke_reports / "figures" / "custom_cnn_confusion_matrix.pdf").is_file()


@pytest.mark.slow
def test_smoke_baselines_share_the_custom_cnn_schema_and_are_compared(smoke_reports):
    import pandas as pd

    metrics = smoke_reports / "metrics"
    cnn = json.loads((metrics / "custom_cnn.json").read_text())
    # notebook 03's refit is the custom CNN's alone (the baselines keep the held-out protocol)
    assert cnn["refit"]["train_images"] == cnn["split_sizes"]["train"] + cnn["split_sizes"]["val"]
    assert set(cnn["refit"]["test_per_seed"]) == set(cnn["test_per_seed"])
    for name in ("custom_cnn", "lenet5", "alexnet", "vgg16_bn", "resnet50"):  # one record, history beside it
        loaded = record.load(name, metrics)
        assert loaded.model == name and loaded.header.profile == "smoke" and list(loaded.test_per_seed) == loaded.seeds
        assert set(record.load_history(name, metrics)) == set(loaded.seeds)
    for name in ("lenet5", "alexnet", "vgg16_bn", "resnet50"):
        m = json.loads((metrics / f"{name}.json").read_text())
        assert set(m) == set(cnn) and m["refit"] is None, (name, set(cnn) ^ set(m))
        assert m["max_steps"] == get_profile("smoke")["baseline_steps"][name] and m["pretrained"] is False
        assert m["compute"]["device"] == "cpu" and m["compute"]["precision"] == "float32"
        assert {"accuracy", "macro_f1", "ci95", "confusion_matrix"} <= set(m["test_dedup"])
        assert 0 <= m["mcnemar_vs_custom_cnn"]["p_value"] <= 1
        assert (smoke_reports / "models" / f"{name}.pt").is_file()
    table = pd.read_csv(metrics / "comparison.csv")
    assert table.data_fingerprint.nunique() == 1 and table.data_fingerprint.iloc[0] == cnn["data_fingerprint"]
    assert table.model.iloc[0] == "Custom CNN (ours)" and (table.source == "quoted, not re-run").sum() == 4
    cams = json.loads((metrics / "gradcam.json").read_text())
    assert {"custom_cnn", "vgg16_bn", "resnet50"} <= set(cams["models"])
    assert cams["common_subset"]["images"] > 0
    score = cams["scorecam_common_subset"]  # Score-CAM for every model, on the same images
    assert score["images"] > 0 and set(score["scores"]) == {"custom_cnn", "vgg16_bn", "resnet50"}
    assert score["centred_blob"]["all"]["pointing"]["n"] == score["images"]
    assert set(cams["common_subset"]["scores"]) == set(cams["models"]) and "centred_blob" in cams["common_subset"]
    assert set(cams["regions"]["common_subset_gradcam"]) == {*cams["models"], "centred_blob"}
    assert set(cams["regions"]["image_area"]) == set(explain.REGIONS)
    assert all("centred_blob" in m["methods"] for m in cams["models"].values())
    assert {m["scorecam_images"] for n, m in cams["models"].items() if n != "custom_cnn"} == {score["images"]}
    for ext in ("png", "pdf"):
        assert (smoke_reports / "figures" / f"baselines_macro_f1.{ext}").is_file()
        assert (smoke_reports / "figures" / f"gradcam_models.{ext}").is_file()


@pytest.mark.slow
def test_smoke_patient_folds_and_mask_guided_metrics(smoke_reports):
    metrics = smoke_reports / "metrics"
    folds = json.loads((metrics / "patient_disjoint.json").read_text())
    assert folds["n_splits"] == 5 and folds["max_steps"] == {n: get_profile("smoke")["fold_steps"][n]
                                                              for n in ("custom_cnn", "resnet50")}
    assert sum(sum(c.values()) for c in folds["fold_class_counts"].values()) == folds["pooled_images"]
    fold_ids = [f"fold_{k}" for k in range(1, 6)]
    assert list(folds["fold_class_counts"]) == fold_ids
    for name in ("custom_cnn", "resnet50"):
        m = folds["models"][name]
        assert set(m["per_split"]) == {"official", *fold_ids}
        assert m["per_split"]["fold_1"]["figshare"]["classes"] != list(CLASSES)  # no notumor
        assert 0 <= m["over_folds"]["all"]["accuracy"]["mean"] <= 1
    cams = folds["gradcam"]["results"]
    assert set(cams) == {"unseen_folds", "official_testing"} and set(cams["unseen_folds"]) == {"custom_cnn",
                                                                                               "centred_blob"}
    assert cams["unseen_folds"]["custom_cnn"]["all"]["pointing"]["n"] > 0
    assert folds["compute"]["device"] == "cpu"
    guided = json.loads((metrics / "mask_guided.json").read_text())
    assert guided["model"] == "custom_cnn_guided" and guided["training_images_with_mask"] > 0
    assert list(guided["variants"]) == ["plain", "architecture", "mask_term", "centred_blob"]
    assert set(guided["testing_metrics"]) == {"architecture"}
    assert set(guided["gradcam_official"]) == {"architecture", "mask_term"}
    assert set(guided["unseen_patients"]["per_fold"]) == set(fold_ids)
    assert set(guided["unseen_patients"]["over_folds"]) == {"all", "figshare"}
    model = record.load("custom_cnn_guided", metrics)  # notebook 07's model record, history beside it
    assert model.header.profile == "smoke" and model.header.compute["device"] == "cpu"
    assert list(model.test_per_seed) == model.seeds and set(record.load_history("custom_cnn_guided", metrics)) == set(
        model.seeds)
    assert guided["variants"]["mask_term"]["testing_accuracy"] == model.test_over_seeds["accuracy"]["mean"]
    assert (smoke_reports / "models" / "custom_cnn_guided.pt").is_file()
    for name in ("patient_folds_accuracy", "mask_guided_vs_plain"):
        assert (smoke_reports / "figures" / f"{name}.pdf").is_file()


@pytest.mark.slow
def test_smoke_external_validation_reports_every_rate_with_its_interval(smoke_reports):
    ext = json.loads((smoke_reports / "metrics" / "external.json").read_text())
    assert ext["audit"]["no"]["files"] > 0 and ext["audit"]["yes"]["files"] > 0
    assert {"custom_cnn", "custom_cnn_refit", "custom_cnn_guided", "lenet5", "alexnet", "vgg16_bn",
            "resnet50"} <= set(ext["models"])  # every model of the compendium: the smoke chain writes them all
    for m in ext["models"].values():
        for part in ("external_test", "external_all"):
            d = m[part]
            assert 0 <= d["detected"] <= 1 and d["detected_ci95"][0] <= d["detected"] <= d["detected_ci95"][1]
            assert d["n"] == ext["part_sizes"]["test" if part == "external_test" else "all"]
    assert set(ext["variants"]) == {"randomised", "partial_label"} and ext["chosen_variant"] in ext["variants"]
    for v in ext["variants"].values():
        for r in v["per_seed"].values():
            assert "detected" in r["external_tune"] and "detected" in r["external_test"]
    assert 0 <= ext["t2_indicator_false_positive_on_figshare"] <= 1
    assert (smoke_reports / "figures" / "external_gradcam_misses.png").is_file()


@pytest.mark.slow
def test_smoke_calibration_fits_on_validation_and_writes_beside_each_model(smoke_reports):
    from braintumour.analysis import calibration

    cal = json.loads((smoke_reports / "metrics" / "calibration.json").read_text())
    assert SCHEMA <= set(cal) and {"custom_cnn", "custom_cnn_refit", "lenet5"} <= set(cal["models"])
    for name, m in cal["models"].items():
        assert m["temperature"] > 0 and 0 < m["uncertain_below"] <= 1.0 + 1e-12
        testing = m["sets"]["testing"]
        assert testing["before"]["accuracy"] == testing["after"]["accuracy"]  # T never changes a prediction
        lo, hi = testing["after"]["ci95"]["ece"]
        assert lo <= testing["after"]["ece"] <= hi
        assert m["sets"]["external"]["after"]["n"] == cal["set_sizes"]["external"]
        if name != "custom_cnn_refit":  # the refit has no file of its own: it borrows custom_cnn's fit
            saved = calibration.load_calibration(smoke_reports / "models" / f"{name}.pt")
            assert saved.temperature == m["temperature"] and saved.fitted_on == "validation"
    assert cal["models"]["custom_cnn_refit"]["temperature"] == cal["models"]["custom_cnn"]["temperature"]
    assert (smoke_reports / "figures" / "calibration_reliability.png").is_file()


@pytest.mark.slow
def test_smoke_generalisation_scores_every_collection_with_intervals_over_groups(smoke_reports):
    from braintumour.config import COLLECTIONS

    gen = json.loads((smoke_reports / "metrics" / "generalisation.json").read_text())
    measure = {"brats": "detected", "br35h": "detected", "oasis": "specificity", "openneuro": "specificity"}
    assert set(gen["leave_one_out"]) == set(COLLECTIONS) and set(gen["audit"]) == set(COLLECTIONS)
    for name, scores in {**gen["leave_one_out"], **{n: gen["shipped"][n] for n in COLLECTIONS}}.items():
        block = scores[measure[name]]
        assert 0 <= block["ci95"][0] <= block["value"] <= block["ci95"][1] <= 1
        assert 1 <= block["groups"] <= block["n"]
    assert set(gen["shipped"]["brats"]["by_look"]) == {"axial", "coronal", "sagittal"}
    assert set(gen["shipped"]["looks"]) == {"skull_stripped", "with_skull"}
    assert 0 <= gen["shipped"]["looks"]["skull_stripped"]["value"] <= 1
    assert {"custom_cnn", "lenet5"} <= set(gen["saved_models"])  # the smoke chain saves them first
    assert set(gen["ablations"]) and all(set(v) <= set(COLLECTIONS) for v in gen["ablations"].values())
    assert all(isinstance(ok, bool) for ok in gen["shipped_targets_met"].values())
    assert (smoke_reports / "figures" / "generalisation_brats_gradcam.png").is_file()


@pytest.mark.slow
def test_pdfs_render_and_are_not_blank(smoke_reports, tmp_path):
    import numpy as np
    from PIL import Image

    assert (smoke_reports / "report.pdf").is_file()
    for nb in notebooks():
        pdf = smoke_reports / "pdf" / nb.with_suffix(".pdf").name
        assert pdf.is_file(), pdf
    subprocess.run(["pdftoppm", "-r", "40", "-f", "1", "-l", "1", "-png", str(smoke_reports / "report.pdf"),
                    str(tmp_path / "page")], check=True)
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"))
    assert (page < 128).mean() > 0.005  # text and figures, not an empty white page


@pytest.mark.slow
def test_no_exported_page_shows_a_python_repr_or_is_blank(smoke_reports):
    pdfs = sorted((smoke_reports / "pdf").glob("*.pdf")) + [smoke_reports / "report.pdf"]
    assert len(pdfs) == len(notebooks()) + 1
    assert [problem for pdf in pdfs for problem in export.page_problems(pdf)] == []



def test_smoke_run_never_writes_the_committed_reports(smoke_reports):
    assert smoke_reports.resolve() != (ROOT / "reports").resolve()


def test_failing_notebook_is_named_and_kept_apart(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    nb = new_notebook(cells=[new_code_cell("profile = 'cpu'", metadata={"tags": ["parameters"]}),
                             new_code_cell("x = 1"), new_code_cell("raise ValueError('boom in cell two')")])
    nb.metadata["kernelspec"] = {"name": "braintumour", "display_name": "braintumour", "language": "python"}
    path = nb_dir / "99_fails.ipynb"
    nbformat.write(nb, path)
    reports = tmp_path / "reports"
    good = reports / "executed" / "99_fails.ipynb"
    good.parent.mkdir(parents=True)
    good.write_text("previous good run")
    result = _run(["notebook", str(path), "--profile", "smoke", "--reports", str(reports)], timeout=300)
    assert result.returncode == 1
    assert "99_fails.ipynb failed in cell" in result.stderr and "boom in cell two" in result.stderr
    assert good.read_text() == "previous good run"  # never overwritten by a failed run
    assert (reports / "executed" / "99_fails.FAILED.ipynb").is_file()


def test_notebook_parameters_from_the_command_line_reach_the_parameters_cell(tmp_path):
    nb = new_notebook(cells=[new_code_cell("profile = 'cpu'\nseeds = None", metadata={"tags": ["parameters"]}),
                             new_code_cell("assert profile == 'smoke' and seeds == [0, 2], (profile, seeds)")])
    nb.metadata["kernelspec"] = {"name": "braintumour", "display_name": "braintumour", "language": "python"}
    path = tmp_path / "98_params.ipynb"
    nbformat.write(nb, path)
    reports = tmp_path / "reports"
    result = _run(["notebook", str(path), "--profile", "smoke", "--reports", str(reports), "--param", "seeds=[0, 2]"],
                  timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (reports / "executed" / "98_params.ipynb").is_file()
    bad = _run(["notebook", str(path), "--param", "seeds=[0,"], timeout=60)
    assert bad.returncode == 2 and "not JSON" in bad.stderr
