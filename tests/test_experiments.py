"""The experiments (experiments/*.py), each run as its usage line says in the smoke profile, on the real
data: every one prints its JSON lines and writes one result file through `outputs.write_result`, with
the header of every metrics file and the numbers it printed. Runs go to a temporary run cache (except
external_variants', generalised_steps', generalised_guided', generalised_guided_folds', generalised_folds'
and shipped_flags': `external.train_variant` and `generalisation.train_generalised` use the notebooks'
cache, where the smoke profile's keys are their own), results to a temporary folder. And the one writer: `write_metrics`
keeps its shape."""

from __future__ import annotations

import ast
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from braintumour.reporting import outputs
from braintumour.training.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
HEADER = ["name", "profile", "compute", "data_fingerprint", "git_commit", "written_at"]
SMOKE = get_profile("smoke")
# Test images of the smoke subset: `per_class_limit` of each class.
SMOKE_TEST = 4 * SMOKE["per_class_limit"]
TESTED = {"screen_recipe", "seed_errors", "refit_train_val", "checkpoint_selection", "external_variants",
          "figshare_rebuilt_release", "ood_screen", "generalised_steps", "generalised_guided",
          "generalised_guided_folds", "generalised_folds", "shipped_flags"}


@pytest.fixture
def run(capsys, monkeypatch) -> Callable[..., tuple[list[dict], str]]:
    """Run experiments/<script>.py as `python experiments/<script>.py ARGS` would (its folder first on
    sys.path, the arguments in sys.argv, run as __main__), in this process: a new interpreter would
    spend seconds on importing torch again for each one. Returns its JSON lines and its whole stdout."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.chdir(ROOT)

    def run_script(script: str, *args: str | Path) -> tuple[list[dict], str]:
        path = EXPERIMENTS / f"{script}.py"
        monkeypatch.setattr(sys, "argv", [str(path), *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(path), run_name="__main__")
        stdout, stderr = capsys.readouterr()
        assert exit_.value.code == 0, stdout[-3000:] + stderr[-3000:]
        return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")], stdout

    return run_script


def result(out: Path, name: str, stdout: str, profile: str = "smoke") -> dict:
    path = out / f"{name}.json"
    assert f"result: {path}" in stdout
    payload = json.loads(path.read_text())
    assert [k for k in payload if k in HEADER] == HEADER
    assert list(payload)[:2] == ["name", "profile"] and list(payload)[-4:] == HEADER[2:]
    assert payload["name"] == name and payload["profile"] == profile
    assert len(payload["data_fingerprint"]) >= 64 and payload["git_commit"]
    assert payload["compute"]["device"] and payload["compute"]["threads"] >= 1
    return payload


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """One run cache for the module: seed_errors reuses screen_recipe's run."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def test_every_experiment_is_smoke_tested_and_imports_no_other():
    scripts = {p.stem for p in EXPERIMENTS.glob("*.py")} - {"common"}
    assert scripts == TESTED
    for script in scripts:
        tree = ast.parse((EXPERIMENTS / f"{script}.py").read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & (scripts - {script}), script
        assert "sys.path" not in (EXPERIMENTS / f"{script}.py").read_text()


@pytest.mark.slow
def test_screen_recipe(runs_root, out, run):
    lines, stdout = run("screen_recipe", "--profile", "smoke", "--seeds", "0", "--runs", runs_root, "--out", out)
    r = result(out, "screen_recipe", stdout)
    assert r["seeds"] == [0] and r["overrides"] == {} and r["split"]["test"] == SMOKE_TEST
    (row,) = r["runs"]
    assert {k: row[k] for k in lines[0]} == lines[0]  # what it printed, as it wrote it
    assert row["config"]["seed"] == 0 and row["config"]["image_size"] == SMOKE["image_size"]
    assert row["run"] == f"custom_cnn-seed0-{row['run_key']}" and (runs_root / row["run"] / "done.json").is_file()
    assert row["test_errors"] == round((1 - row["test_accuracy"]) * SMOKE_TEST) == r["test_errors_summed"]
    assert 0 <= row["val_accuracy"] <= 1 and 1 <= row["best_epoch"] <= SMOKE["epochs"]


@pytest.mark.slow
def test_screen_recipe_overrides_name_their_result(runs_root, out, run):
    # epochs=1: one more, cheaper run; the overrides name the result file and are in the config
    lines, stdout = run("screen_recipe", "--profile", "smoke", "--seeds", "0", "epochs=1", "--runs", runs_root,
                        "--out", out)
    r = result(out, "screen_recipe-epochs=1", stdout)
    assert r["overrides"] == {"epochs": 1} and r["runs"][0]["config"]["epochs"] == 1
    assert r["runs"][0]["test_errors"] == lines[0]["test_errors"]


@pytest.mark.slow
def test_seed_errors(runs_root, out, run):
    lines, stdout = run("seed_errors", "--profile", "smoke", "--seeds", "0", "--runs", runs_root, "--out", out)
    r = result(out, "seed_errors", stdout)
    (row,) = r["runs"]
    assert row["test_errors"] == lines[0]["test_errors"] and row["reused"]  # screen_recipe's run
    # one seed: its errors are the images wrong in every (and any) seed, and those of the average
    assert r["images_wrong_in_any_seed"] == r["averaged_probabilities_errors"] == row["test_errors"]
    assert len(r["wrong_in_every_seed"]) == row["test_errors"] and r["test_images"] == SMOKE_TEST
    assert all(p.startswith("Testing/") for p in r["wrong_in_every_seed"])


@pytest.mark.slow
def test_refit_train_val(runs_root, out, run):
    lines, stdout = run("refit_train_val", "--profile", "smoke", "--seeds", "0", "--runs", runs_root, "--out", out)
    r = result(out, "refit_train_val", stdout)
    (row,) = r["runs"]
    assert row["train_images"] == r["split"]["train"] == 4 * SMOKE["per_class_limit"]  # Training's subset, all of it
    assert row["config"]["reestimate_bn"] is False and row["epochs"] == SMOKE["epochs"]
    for key in ("as_trained", "bn_reestimated"):
        assert row[key] == lines[0][key] and 0 <= row[key]["test_errors"] <= SMOKE_TEST
        assert r["test_errors_summed"][key] == row[key]["test_errors"]


@pytest.mark.slow
def test_checkpoint_selection(tmp_path, out, run):
    lines, stdout = run("checkpoint_selection", "--profile", "smoke", "--seeds", "0", "--from-epoch", "1",
                        "--work", tmp_path, "--out", out)
    r = result(out, "checkpoint_selection", stdout)
    (seed,) = r["per_seed"]
    assert seed["errors_by_epoch"] == lines[0]["errors_by_epoch"]
    assert sorted(seed["errors_by_epoch"], key=int) == [str(e) for e in range(1, SMOKE["epochs"] + 1)]
    printed = lines[0]["rules"]
    assert {"best_val_f1_earliest", "last_epoch", "lowest_val_loss", "best_val_f1_bn_reestimated"} <= set(printed)
    for rule, (chosen, errors) in printed.items():
        assert seed["rules"][rule] == {"chosen": chosen, "test_errors": errors}
        assert r["test_errors_summed"][rule] == errors == lines[-1]["test_errors_summed"][rule]
    assert seed["rules"]["last_epoch"]["test_errors"] == seed["errors_by_epoch"][str(SMOKE["epochs"])]
    assert Path(r["work"]).is_relative_to(tmp_path) and seed["config"]["seed"] == 0


@pytest.mark.slow
def test_external_variants(out, run, smoke_reports):
    # After the smoke chain: its notebook 08 trains the same run in the same cache, not beside this one.
    lines, stdout = run("external_variants", "partial_label", "--profile", "smoke", "--seeds", "0", "--out", out)
    r = result(out, "external_variants-partial_label", stdout)
    assert "+" in r["data_fingerprint"]  # Kaggle and Br35H
    (row,) = r["runs"]
    assert {k: row[k] for k in lines[0]} == lines[0]
    assert row["br35h_tune_n"] == r["br35h_parts"]["tune"] == SMOKE["external_limit"]
    assert row["config"]["partial_label_weight"] == 1.0 and 0 <= row["br35h_tune_detected"] <= 1


def test_figshare_rebuilt_release(tmp_path, out, run):
    _, stdout = run("figshare_rebuilt_release", "--limit", "6", "--work", tmp_path / "work", "--out", out)
    r = result(out, "figshare_rebuilt_release-limit6", stdout, profile="cpu")
    assert r["slices"] == r["masks_derived"] == r["masks_shipped"] == r["kaggle_files"] == 6
    assert r["same_names"] and r["masks_differing"] == 0 and r["patients_csv_identical"]
    assert "same names True, 0 differ in any pixel" in stdout


@pytest.mark.slow
def test_ood_screen(out, run):
    """Every candidate scored for each model predict uses; the one kept flags every non-brain image."""
    lines, stdout = run("ood_screen", "--profile", "smoke", "--out", out)
    r = result(out, "ood_screen", stdout)
    assert lines[-1]["chosen"] == r["chosen"] and set(r["worst_tune_mean"]) == set(r["candidates"])
    assert not any(by_model["nonbrain_unflagged"] for by_model in r["candidates"][r["chosen"]].values())
    assert r["nonbrain_images"] > 0


@pytest.mark.slow
def test_generalised_steps(out, run):
    lines, stdout = run("generalised_steps", "--profile", "smoke", "--steps", "6", "--out", out)
    r = result(out, "generalised_steps-6", stdout)
    (row,) = r["runs"]
    assert lines[0]["steps"] == row["steps"] == 6 and row["config"]["max_steps"] == 6
    assert 0 <= row["validation_accuracy"] <= 1 and set(row["tune"]) >= {"brats", "oasis"}


@pytest.mark.slow
def test_generalised_guided(out, run):
    lines, stdout = run("generalised_guided", "--profile", "smoke", "--out", out)
    r = result(out, "generalised_guided", stdout)
    shipped, guided = r["runs"]
    assert [line["variant"] for line in lines] == [shipped["variant"], guided["variant"]] == ["shipped", "mask_guided"]
    assert guided["config"]["model"] == "custom_cnn_guided" and guided["config"]["mask_weight"] == 1.0
    assert shipped["config"]["mask_weight"] is None and guided["config"]["max_steps"] == SMOKE["shipped_steps"]
    assert 0 <= guided["brats_tune_pointing"]["value"] <= 1 and set(guided["tune"]) >= {"brats", "oasis"}


def test_write_result_and_write_metrics_share_one_header(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("BRAINTUMOUR_RESULTS", str(tmp_path / "results"))
    metrics = json.loads(outputs.write_metrics("m", profile="smoke", data_fingerprint="fp", a=1, b=2).read_text())
    path = outputs.write_result("r", profile="smoke", data_fingerprint="fp", a=1, b=2)
    assert path == tmp_path / "results" / "r.json"
    res = json.loads(path.read_text())
    assert list(metrics) == list(res) == ["name", "profile", "a", "b", *HEADER[2:]]
    assert all(metrics[k] == res[k] for k in ("profile", "a", "b", "compute", "data_fingerprint"))
    other = outputs.write_result("r", profile="smoke", data_fingerprint="fp", out_dir=tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "r.json"
    monkeypatch.delenv("BRAINTUMOUR_RESULTS")
    assert outputs.results_dir("cpu") == outputs.project_root() / "experiments" / "results"
    assert outputs.results_dir("smoke") == outputs.project_root() / "build" / "smoke" / "results"
    for bad in ({"experiment": "../x"}, {"experiment": "x", "git_commit": "y"}):
        with pytest.raises(ValueError):
            outputs.write_result(bad.pop("experiment"), profile="smoke", data_fingerprint="fp", out_dir=tmp_path,
                                 **bad)


@pytest.mark.slow
def test_generalised_guided_folds(out, run):
    lines, stdout = run("generalised_guided_folds", "--profile", "smoke", "--out", out)
    r = result(out, "generalised_guided_folds", stdout)
    held = [row["held_out"] for row in r["runs"]]
    assert [(line["held_out"], line["variant"]) for line in lines] == [(row["held_out"], row["variant"])
                                                                      for row in r["runs"]]
    assert held[::2] == held[1::2] and len(set(held)) == len(held) // 2 >= 2
    for row in r["runs"]:
        assert set(row["held_out_scores"]) & {"detected", "specificity"}
        assert row["config"]["model"] == ("custom_cnn_guided" if row["variant"] == "mask_guided" else "custom_cnn")


@pytest.mark.slow
def test_generalised_folds(out, run):
    change = {"skull_strip": 0.25}
    lines, stdout = run("generalised_folds", "--profile", "smoke", "--out", out, f"randomise={json.dumps(change)}",
                        "--held-out", "oasis,brats", "--collection-share", "0.5")
    r = result(out, "generalised_folds-collection_share=0.5-randomise=_skull_strip_0.25", stdout)
    assert r["overrides"] == {"randomise": change, "collection_share": 0.5}
    assert [line["held_out"] for line in lines] == [row["held_out"] for row in r["runs"]] == ["oasis", "brats"]
    for row in r["runs"]:
        assert set(row["held_out_scores"]) & {"detected", "specificity"}
        assert row["config"]["randomise"] == change
        recipe = row["recipe_held_out_scores"]  # notebook 11's, where its metrics are the smoke profile's
        assert recipe is None or set(recipe) & set(row["held_out_scores"])


@pytest.mark.slow
def test_shipped_flags(out, run):
    lines, stdout = run("shipped_flags", "--profile", "smoke", "--out", out)
    r = result(out, "shipped_flags", stdout)
    assert [(line["seed"], line["fit_on"]) for line in lines] == [(row["seed"], row["fit_on"]) for row in r["runs"]]
    kaggle, every = r["runs"][:2]
    assert (kaggle["fit_on"], every["fit_on"]) == ("kaggle_training", "all_training")
    assert every["n_fit"] > kaggle["n_fit"]
    assert set(every["tune"]) >= {"brats", "oasis"} and 0 <= every["worst_unflagged_error"] <= 1
