"""Headline tables read from reports/metrics/*.json only: used by the results notebook and by
`make readme-results`, so no number in the README is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from braintumour import files
from braintumour.config import BASELINES, CAM_SCORES, metrics_dir
from braintumour.reporting import generalisation_report, record
from braintumour.reporting.record import ModelRecord
from braintumour.reporting.titles import SUBSET_TITLES
from braintumour.training.models import MODEL_TITLES

# Quoted from the papers (docs/references.md), not re-run: accuracy on the same Kaggle Testing split.
LITERATURE = [
    {"model": "Custom CNN + class weighting (the study reproduced here)", "accuracy": 0.9710},
    {"model": "1.31 M-parameter CNN (Islam et al., 2025)", "accuracy": 0.9649},
    {"model": "Inception-ResNet-V2, ImageNet (Islam et al., 2025)", "accuracy": 0.9953},
    {"model": "Custom CNN (Dewage et al., 2024)", "accuracy": 0.9451},
]
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def load_metrics(name: str, folder: Path | None = None) -> dict | None:
    """A metrics file that is not a model record (`record.load` reads those), as written."""
    path = metrics_dir(folder) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def seed_mean(per_seed: dict | None) -> float | None:
    """Mean of a per-seed field of a record (train_seconds, epochs_run); None when absent."""
    return None if not per_seed else sum(per_seed.values()) / len(per_seed)


def seed_count(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def in_sentence(name: str) -> str:
    """A model's title inside a sentence: the custom CNN without its "(ours)"."""
    return "custom CNN" if name == "custom_cnn" else MODEL_TITLES[name]


def _pm(o: dict, key: str, one_seed: bool = False) -> str:
    return f"{o[key]['mean']:.2%}" if one_seed else f"{o[key]['mean']:.2%} ± {o[key]['sd']:.2%}"


def with_interval(score: dict) -> str:
    """A CAM score of `explain.summarise_scores` as "mean [95% interval]"."""
    return f"{score['mean']:.3f} [{score['ci95'][0]:.3f}, {score['ci95'][1]:.3f}]"


def cam_score_cells(block: dict) -> dict:
    """One table row for a `summarise_scores` block: each score with its interval, and the image count."""
    return {k: with_interval(block[k]) for k in CAM_SCORES} | {"images": block["pointing"]["n"]}


def headline_table(folder: Path | None = None) -> pd.DataFrame:
    """Our models (mean ± sd over seeds, Testing and leakage-free Testing) and the quoted literature."""
    rows = []
    cnn = record.load("custom_cnn", folder)
    if cnn is not None:
        variants = [(f"Custom CNN, ours ({cnn.params / 1e6:.2f} M parameters, {seed_count(len(cnn.seeds))})",
                     cnn.test_over_seeds, cnn.test_dedup_over_seeds)]
        if cnn.refit is not None:  # notebook 03's refit on Training + validation, beside the held-out protocol
            variants.append((f"Custom CNN, ours, refit on Training + validation (last epoch, "
                             f"{seed_count(len(cnn.refit.test_per_seed))})", cnn.refit.test_over_seeds,
                             cnn.refit.test_dedup_over_seeds))
        for title, t, d in variants:
            rows.append({"model": title, "source": f"this repo, {cnn.header.profile} profile",
                         "Testing accuracy": _pm(t, "accuracy"), "Testing macro-F1": _pm(t, "macro_f1"),
                         "leakage-free accuracy": _pm(d, "accuracy"), "leakage-free macro-F1": _pm(d, "macro_f1")})
    for name in BASELINES:
        m = record.load(name, folder)
        if m is None:
            continue
        t, d = m.test_over_seeds, m.test_dedup_over_seeds
        one = len(m.seeds) == 1
        minutes = seed_mean(m.train_seconds) / 60
        rows.append(
            {
                "model": f"{MODEL_TITLES[name]}, from scratch ({m.params / 1e6:.1f} M parameters, {minutes:.0f} min "
                f"training, {seed_count(len(m.seeds))})",
                "source": f"this repo, {m.header.profile} profile",
                "Testing accuracy": _pm(t, "accuracy", one),
                "Testing macro-F1": _pm(t, "macro_f1", one),
                "leakage-free accuracy": _pm(d, "accuracy", one),
                "leakage-free macro-F1": _pm(d, "macro_f1", one),
            }
        )
    for lit in LITERATURE:
        rows.append(
            {
                "model": lit["model"],
                "source": "quoted from docs/references.md, not re-run",
                "Testing accuracy": f"{lit['accuracy']:.2%}",
                "Testing macro-F1": "",
                "leakage-free accuracy": "",
                "leakage-free macro-F1": "",
            }
        )
    return pd.DataFrame(rows)


def run_length_words(steps: dict[str, int | None]) -> str:
    """A fixed run length per model in words: "1,860 steps (custom CNN), 154 (ResNet-50)"."""
    if all(v is None for v in steps.values()):
        return "the profile's epochs"
    return ", ".join(f"{v:,} steps ({in_sentence(k)})" if v is not None else f"its epochs ({in_sentence(k)})"
                     for k, v in steps.items())


def fold_run_length(folds: dict) -> str:
    """Notebook 06's fixed run length per model, in words."""
    return run_length_words(folds["max_steps"])


def patient_disjoint_table(metrics: dict) -> pd.DataFrame:
    """Official split vs unseen-patient folds (same training budget), accuracy and macro-F1, per model
    and subset, from `patient_disjoint.json`."""
    rows = []
    for name, m in metrics["models"].items():
        for subset, over in m["over_folds"].items():
            official = m["per_split"]["official"][subset]
            for metric in ("accuracy", "macro_f1"):
                rows.append({"model": MODEL_TITLES[name], "subset": SUBSET_TITLES[subset], "metric": metric,
                             "official split": f"{official[metric]:.2%}",
                             "unseen-patient folds": f"{over[metric]['mean']:.2%} ± {over[metric]['sd']:.2%}",
                             "difference": f"{over[metric]['mean'] - official[metric]:+.2%}"})
    return pd.DataFrame(rows)


def unseen_patient_accuracy(metrics: dict, subset: str = "figshare") -> dict[str, tuple[float, dict]]:
    """Per model of `patient_disjoint.json`: (official-split accuracy, mean/sd over folds) on `subset`."""
    return {name: (m["per_split"]["official"][subset]["accuracy"], m["over_folds"][subset]["accuracy"])
            for name, m in metrics["models"].items()}


def provenance(folder: Path | None = None) -> pd.DataFrame:
    """Which commit and profile wrote each metrics file, and when. A notebook re-executed alone leaves
    the other notebooks' files as they were, so numbers side by side can come from different commits:
    this table makes that visible instead of implying one run."""
    rows = []
    for path in files.listing(metrics_dir(folder), "*.json"):  # no half-written temporaries
        m = json.loads(path.read_text())
        rows.append({"metrics file": path.name, "commit": str(m.get("git_commit", "unknown"))[:12],
                     "profile": m.get("profile"), "written at": m.get("written_at")})
    return pd.DataFrame(rows, columns=["metrics file", "commit", "profile", "written at"])


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown would need one more dependency)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def readme_block(folder: Path | None = None) -> str:
    """The Markdown that goes between the README's results markers."""
    table = headline_table(folder)
    cnn = record.load("custom_cnn", folder)
    lines = [MARK_START, "## Results (written by `make readme-results` from `reports/metrics/`)", ""]
    if cnn is None:
        lines += ["No metrics yet: run `make reproduce`.", MARK_END]
        return "\n".join(lines)
    lines += [markdown_table(table), ""]
    train_min = cnn.train_minutes
    lines.append(
        f"Custom CNN: {cnn.params:,} parameters, {cnn.image_size} px input, training "
        f"{min(train_min):.1f}-{max(train_min):.1f} min per seed on {cnn.torch_threads} CPU threads, "
        f"inference {cnn.inference_images_per_second:.0f} images/s (batched, CPU). "
        f"Leakage-free Testing: the {cnn.test_dedup['n']} Testing images with no near-duplicate in Training "
        f"(notebook 01). Data fingerprint `{cnn.header.data_fingerprint[:12]}`, "
        f"commit `{cnn.header.git_commit[:12]}`."
    )
    lines += _finding_sentences(cnn, folder)
    lines.append("Which commit and profile wrote each metrics file: the provenance table of `reports/report.pdf`.")
    lines += ["", MARK_END]
    return "\n".join(lines)


def _finding_sentences(cnn: ModelRecord, folder: Path | None) -> list[str]:
    """The README block's sentences after the table, one per metrics file that is there."""
    lines = [refit_sentence(cnn)] if cnn.refit is not None else []
    ablation = load_metrics("class_weighting_ablation", folder)
    if ablation is not None:
        on, off = (ablation["variants"][k]["over_seeds"]["macro_f1"] for k in ("inverse", "none"))
        lines.append(
            f"Class weighting: macro-F1 {on['mean']:.2%} ± {on['sd']:.2%} with, "
            f"{off['mean']:.2%} ± {off['sd']:.2%} without (same seeds)."
        )
    leakage = load_metrics("leakage", folder)
    if leakage is not None:
        leaked = leakage["testing_with_near_duplicate_in_training"]["total"]
        testing = leaked + leakage["leakage_free_testing"]["total"]
        lines.append(
            f"Leakage: {leaked} of {testing:,} Testing images have a near-duplicate in Training; a classifier "
            f"on metadata alone reaches {leakage['shortcut_classifier']['test_balanced_accuracy']:.1%} "
            "balanced accuracy (chance 25%)."
        )
    folds = load_metrics("patient_disjoint", folder)
    if folds is not None:
        words = [f"{in_sentence(name)} {official:.1%} -> {over['mean']:.1%} ± {over['sd']:.1%}"
                 for name, (official, over) in unseen_patient_accuracy(folds).items()]
        lines.append(
            f"Unseen patients (notebook 06, {folds['n_splits']} patient-disjoint folds, "
            f"{fold_run_length(folds)} per run): accuracy on the "
            f"figshare images, official split -> held-out patients: {'; '.join(words)}."
        )
    guided, guided_model = load_metrics("mask_guided", folder), record.load("custom_cnn_guided", folder)
    if guided is not None and guided_model is not None:
        lines.append(mask_guided_sentence(guided, guided_model))
    ext = load_metrics("external", folder)
    if ext is not None:
        lines.append(external_sentence(ext))
    gen = load_metrics("generalisation", folder)
    if gen is not None:
        lines.append(generalisation_report.readme_sentence(gen))
        if flags := generalisation_report.flags_sentence(gen):
            lines.append(flags)
    cal = load_metrics("calibration", folder)
    if cal is not None:
        lines.append(calibration_sentence(cal))
    return lines


def refit_sentence(cnn: ModelRecord) -> str:
    """What notebook 03's refit is and how it compares with the held-out protocol, seed by seed."""
    refit = cnn.refit
    minutes = [s / 60 for s in refit.train_seconds.values()]
    errors = ", ".join(f"{cnn.test_per_seed[s]['errors']} -> {m['errors']}" for s, m in refit.test_per_seed.items())
    return (
        f"Refit: the same recipe trained on all {refit.train_images:,} Training images (validation included), "
        f"the last epoch kept: Testing accuracy {_pm(refit.test_over_seeds, 'accuracy')}, macro-F1 "
        f"{_pm(refit.test_over_seeds, 'macro_f1')}, training {min(minutes):.1f}-{max(minutes):.1f} min per seed; "
        f"Testing errors per seed, validation held out -> refit: {errors}. The baselines keep the held-out "
        "protocol, so comparisons use the first row."
    )


def ablation_accuracy(row: dict) -> str:
    """A variant of notebook 07's ablation (`mask_guided.json`) as '99.16% ± 0.08%' (mean ± sd over seeds),
    or '99.16%' for a single seed."""
    acc, sd = row["testing_accuracy"], row["testing_accuracy_sd"]
    return f"{acc:.2%}" if sd is None else f"{acc:.2%} ± {sd:.2%}"


def external_sentence(ext: dict) -> str:
    """What notebook 08 measured on Br35H, and what it does and does not support."""
    plain = ext["models"]["custom_cnn"]["external_all"]
    others = "; ".join(f"{MODEL_TITLES[n]} {m['external_all']['detected']:.1%}" for n, m in ext["models"].items()
                       if n != "custom_cnn")
    chosen = ext["variants"][ext["chosen_variant"]]
    runs_ = chosen["per_seed"].values()

    def mean(key: str) -> float:
        return sum(r[key]["detected"] if key.startswith("external") else r[key] for r in runs_) / len(runs_)

    met = all(ext["targets_met"].values())
    return (
        f"External validation (notebook 08, Br35H, a collection assembled by someone else; only its images with "
        f"no copy in the Kaggle set): the custom CNN calls {plain['detected']:.1%} of {plain['n']} external tumour "
        f"images a tumour (95% CI {plain['detected_ci95'][0]:.1%}-{plain['detected_ci95'][1]:.1%}); {others}. "
        f"Its {ext['models']['custom_cnn']['testing_accuracy']:.2%} on Kaggle Testing does not carry over to "
        f"another collection. The chosen variant, {MODEL_TITLES[ext['chosen_variant']]} "
        f"({len(chosen['per_seed'])} seed(s)), detects {mean('external_test'):.1%} of the "
        f"{next(iter(runs_))['external_test']['n']} held-out external tumour images at {mean('testing_accuracy'):.2%} "
        f"Kaggle Testing accuracy and {mean('testing_notumor_recall'):.1%} notumor recall: "
        f"{'it meets' if met else 'it does not meet'} the targets fixed in advance, so `predict` uses "
        f"{'it' if met else 'notebook 03' + chr(39) + 's model'}. Untested: external no-tumour images "
        "(every Br35H `no` image is a Kaggle file)."
    )


def calibration_table(cal: dict) -> pd.DataFrame:
    """Per model: temperature, Testing ECE and NLL before and after, and the uncertain flag's coverage
    and error on Testing and its share of external misses flagged."""
    rows = {}
    for n, m in cal["models"].items():
        t, ext = m["sets"]["testing"], m["sets"]["external"]["selective"]
        rows[MODEL_TITLES[n]] = {"temperature": m["temperature"], "Testing ECE before": t["before"]["ece"],
                                 "Testing ECE after": t["after"]["ece"], "Testing NLL before": t["before"]["nll"],
                                 "Testing NLL after": t["after"]["nll"], "Testing coverage": t["selective"]["coverage"],
                                 "Testing error kept": t["selective"]["error_kept"], "external misses": ext["misses"],
                                 "external misses flagged": ext["misses_flagged"]}
    return pd.DataFrame(rows).T


def calibration_sentence(cal: dict) -> str:
    """What notebook 09 measured: the custom CNN's calibration and its uncertain flag, and the flag
    of `predict`'s default model where notebook 08 wrote one."""
    m = cal["models"]["custom_cnn"]
    t, ext = m["sets"]["testing"], m["sets"]["external"]["selective"]
    ci = t["after"]["ci95"]["ece"]
    text = (
        f"Calibration (notebook 09): one temperature per model fitted on validation (T = {m['temperature']:.2f} for "
        f"the custom CNN) takes its Testing ECE from {t['before']['ece']:.3f} to {t['after']['ece']:.3f} "
        f"(95% CI {ci[0]:.3f}-{ci[1]:.3f}) without changing a prediction. The uncertain flag, set on validation, "
        f"keeps {t['selective']['coverage']:.1%} of Testing at {t['selective']['error_kept']:.2%} error and marks "
        f"{ext['misses_flagged']} of the {ext['misses']} held-out external tumour images the model calls *notumor*"
    )
    shipped = cal["models"].get("custom_cnn_external")
    if shipped:
        st, se = shipped["sets"]["testing"]["selective"], shipped["sets"]["external"]["selective"]
        text += (f"; for `predict`'s default model, {se['misses_flagged']} of its {se['misses']} at "
                 f"{st['coverage']:.1%} Testing coverage")
    return text + "."


def mask_guided_sentence(guided: dict, model: ModelRecord) -> str:
    """One sentence on notebook 07's model: accuracy (its record) and Grad-CAM scores (`mask_guided.json`),
    the plain custom CNN beside it."""
    g, p = guided["variants"]["mask_term"], guided["variants"]["plain"]
    acc, f1 = (model.test_over_seeds[k] for k in ("accuracy", "macro_f1"))
    unseen = guided["unseen_patients"]
    held = unseen["gradcam"]["all"]
    return (f"Mask-guided custom CNN (notebook 07, Training masks only, {seed_count(len(model.seeds))}): Testing "
            f"accuracy {acc['mean']:.2%} ± {acc['sd']:.2%}, macro-F1 {f1['mean']:.2%} ± {f1['sd']:.2%} "
            f"(plain, when notebook 07 ran: {ablation_accuracy(p)}); "
            f"Grad-CAM on the masked Testing images, pointing game {g['pointing']:.2f} and energy inside the mask "
            f"{g['energy']:.2f} "
            f"(plain: {p['pointing']:.2f} and {p['energy']:.2f}); held-out patients: pointing "
            f"{held['pointing']['mean']:.2f}, energy {held['energy']['mean']:.2f}, "
            f"accuracy {unseen['over_folds']['all']['accuracy']['mean']:.1%}.")


def rewrite_readme(readme: Path, folder: Path | None = None) -> bool:
    """Replace the marked block of README.md; returns True when the file changed."""
    return files.rewrite_marked_block(readme, MARK_START, MARK_END, readme_block(folder))


def variant_row(seeds: int, accuracy: dict | None, cam_means: dict, blank: float) -> dict:
    """One row of notebook 07's ablation (`mask_guided.json`'s `variants`): Testing accuracy (mean and,
    over several seeds, sd), mean Grad-CAM scores, share of blank maps."""
    return {"seeds": seeds, "testing_accuracy": None if accuracy is None else accuracy["mean"],
            "testing_accuracy_sd": accuracy["sd"] if accuracy is not None and seeds > 1 else None,
            **{k: cam_means[k] for k in ("pointing", "energy", "iou")}, "blank_maps": blank}


def localisation_words(cams: dict | None) -> str:
    """Where the custom CNN's Grad-CAM points against the expert masks (`gradcam.json`), and the blob's."""
    if cams is None:
        return "Grad-CAM scores against the expert masks: not computed yet (notebook 05)."
    r = cams["models"]["custom_cnn"]["methods"]
    g, blob = r["gradcam"]["all"], r["centred_blob"]["all"]
    return (f"Grad-CAM's maximum falls inside (or within {cams['pointing_tolerance_px']} px of) the expert "
            f"tumour outline for {g['pointing']['mean']:.0%} of the masked Testing images, and "
            f"{g['energy']['mean']:.0%} of its mass lies inside the outline; a centred blob that ignores "
            f"the image scores {blob['pointing']['mean']:.0%} and {blob['energy']['mean']:.0%}. High "
            "accuracy does not by itself mean the model looks at the tumour.")


def patient_words(leak: dict) -> str:
    """How many Testing images come from a patient with slices in Training (`leakage.json`), or ""."""
    pl = leak.get("patient_level")
    return ("" if pl is None else
            f"Of the {pl['testing_images_with_patient_id']['total']} Testing images whose patient is known "
            f"(figshare), {pl['testing_images_of_training_patients']['total']} come from a patient who also has "
            f"slices in Training ({pl['patients']['testing_also_in_training']} of {pl['patients']['testing']} "
            "Testing patients): this split cannot say how the model does on unseen patients.")


def baseline_words(baselines: dict[str, ModelRecord], cnn: ModelRecord) -> str:
    """The best baseline against the custom CNN's selected seed, under the same CPU time."""
    if not baselines:
        return "Baselines: not run yet (notebook 04)."
    best_base = max(baselines, key=lambda n: baselines[n].test["accuracy"])
    bb = baselines[best_base]
    bb_epochs, bb_p = seed_mean(bb.epochs_run), bb.mcnemar_vs_custom_cnn["p_value"]
    return (f"Under the same CPU time the best baseline, {MODEL_TITLES[best_base]} "
            f"({bb.params / 1e6:.1f} M parameters, {bb_epochs:.1f} epochs), "
            f"reaches {bb.test['accuracy']:.2%} Testing accuracy against {cnn.test['accuracy']:.2%} for the "
            f"custom CNN's selected seed (McNemar p = {bb_p:.2g}). From scratch on "
            "a 2-core CPU the large networks complete only a few passes over the data: this measures accuracy "
            "per CPU-minute, not what they reach with ImageNet weights or a GPU (the full profile).")


def unseen_patient_words(folds: dict | None) -> str:
    """Official split against held-out patients on the figshare images (`patient_disjoint.json`)."""
    if folds is None:
        return "Patient-disjoint folds: not run yet (notebook 06)."
    parts = [f"{in_sentence(name)}: {official:.2%} on the official split, "
             f"{over['mean']:.2%} ± {over['sd']:.2%} on held-out patients"
             for name, (official, over) in unseen_patient_accuracy(folds).items()]
    return (f"On the figshare images, whose patients are known, with the same training length "
            f"({fold_run_length(folds)} per run): {'; '.join(parts)}.")


def guided_words(guided: dict | None) -> str:
    """The mask-guided custom CNN's Grad-CAM and accuracy against the plain model's (`mask_guided.json`)."""
    if guided is None:
        return "Mask-guided model: not run yet (notebook 07)."
    gb, gp = guided["variants"]["mask_term"], guided["variants"]["plain"]
    uc = guided["unseen_patients"]["gradcam"]["all"]
    return (f"Trained to look inside the expert outline on Training images, the mask-guided custom CNN's "
            f"Grad-CAM points inside it for {gb['pointing']:.0%} of the masked Testing images (energy "
            f"{gb['energy']:.0%}; {uc['pointing']['mean']:.0%} and {uc['energy']['mean']:.0%} on held-out "
            f"patients; the plain custom CNN: {gp['pointing']:.0%} and {gp['energy']:.0%} on Testing), at "
            f"{ablation_accuracy(gb)} Testing accuracy against the plain model's "
            f"{ablation_accuracy(gp)} "
            f"(mean ± sd over seeds). A heatmap is evidence of where a "
            "model looks only when it is scored against expert masks; one that agrees with them can be "
            "trained, not assumed.")


def conclusions(metrics: dict, cnn: ModelRecord, baselines: dict[str, ModelRecord], cams: dict | None,
                folds: dict | None, guided: dict | None) -> str:
    """The results notebook's closing Markdown: what the numbers support, and what they do not.
    `metrics`: the `data`, `leakage` and `class_weighting_ablation` metrics files; the others as
    `summary.load_metrics` / `record.load` return them (None, or empty, where not run yet)."""
    leak, ab = metrics["leakage"], metrics["class_weighting_ablation"]
    sc = leak["shortcut_classifier"]
    leaked, d = leak["testing_with_near_duplicate_in_training"], cnn.test_dedup
    acc, acc_dedup = cnn.test_over_seeds["accuracy"]["mean"], cnn.test_dedup_over_seeds["accuracy"]["mean"]
    on, off = (ab["variants"][k]["over_seeds"]["macro_f1"] for k in ("inverse", "none"))
    train_counts = metrics["data"]["counts"]["Training"]
    ratio = max(train_counts.values()) / min(train_counts.values())
    effect = "small compared with" if abs(on["mean"] - off["mean"]) <= max(on["sd"], off["sd"]) else "larger than"
    return f"""
- **Accuracy.** A {cnn.params / 1e6:.2f} M-parameter CNN trained from scratch on a 2-core CPU reaches
  {acc:.2%} mean Testing accuracy over {len(cnn.seeds)} seeds, against 97.10% for the study reproduced
  here and 99.53% for the best ImageNet transfer model quoted (not re-run).
- **Baselines.** {baseline_words(baselines, cnn)}
- **Leakage.** {leaked['total']} of 1,311 Testing images ({leaked['total'] / 1311:.0%}) have a near-duplicate
  in Training, most of them *notumor* ({leaked['notumor']} of 405). On the {d['n']} leakage-free Testing images
  the mean accuracy is {acc_dedup:.2%}. Published accuracies on this split include memorised copies; the
  audit's threshold is conservative, so this is a lower bound on the leakage.
- **Shortcuts.** Image size, file mode and global intensity alone predict the class with
  {sc['test_balanced_accuracy']:.1%} balanced accuracy (chance 25%): the source collections differ in
  acquisition, and a CNN can exploit that. Grad-CAM against expert masks is the check on *where* a model
  looks.
- **Where the model looks.** {localisation_words(cams)}
- **Unseen patients.** {unseen_patient_words(folds)}
- **Right for the right reasons.** {guided_words(guided)}
- **Class weighting.** Macro-F1 {on['mean']:.2%} ± {on['sd']:.2%} with inverse-frequency weights,
  {off['mean']:.2%} ± {off['sd']:.2%} without; with an imbalance ratio of {ratio:.2f} (largest to smallest
  Training class) the effect is {effect} the spread between seeds.
- **Limits.** The official split was cut by image. {patient_words(leak)} Notebook 06's folds are
  patient-disjoint only for the figshare images; the others carry no patient id. The
  external test (notebook 08) has tumour images only: every Br35H `no` image is a Kaggle file.
  Numbers from the `{cnn.header.profile}`
  profile.
"""
