"""Notebook 11's tables and sentences: how models do on collections they never saw, read from
`collection_scores.model_scores` results, with titles from `config` (metrics keep the ids)."""

from __future__ import annotations

import pandas as pd

from braintumour.analysis.shipped import SHIPPED
from braintumour.config import CLASSES
from braintumour.reporting.titles import COLLECTION_TITLES
from braintumour.training.models import MODEL_TITLES

# The measure each collection is scored by (its images hold one label), and the targets of issue #48.
MEASURE = {"brats": "detected", "br35h": "detected", "oasis": "specificity", "openneuro": "specificity"}
TARGETS = {"brats": 0.90, "br35h": 0.90, "oasis": 0.97, "openneuro": 0.95}
PLANE_TARGET = 0.85  # each BraTS plane
POINTING_TARGET = 0.80
KAGGLE_ACCURACY_TARGET = 0.99
NOTUMOR_RECALL_TARGET = 0.99


def cell(block: dict | None) -> str:
    """A rate or AUROC as "value [low, high]" in per cent (AUROC as a fraction); "" when absent."""
    if not block:
        return ""
    return f"{block['value']:.1%} [{block['ci95'][0]:.1%}, {block['ci95'][1]:.1%}]"


def columns(scores: dict) -> dict[str, str]:
    """One table row's cells from `model_scores`: Kaggle Testing, each collection's measure, BraTS per
    plane, and AUROC per look."""
    row = {}
    if "kaggle_testing" in scores:
        row["Kaggle Testing accuracy"] = f"{scores['kaggle_testing']['accuracy']:.2%}"
    for name, measure in MEASURE.items():
        if name in scores:
            row[f"{COLLECTION_TITLES[name]}: {measure}"] = cell(scores[name].get(measure))
    for plane, block in scores.get("brats", {}).get("by_look", {}).items():
        row[f"BraTS {plane}: detected"] = cell(block.get("detected"))
    for look, block in scores.get("looks", {}).items():
        row[f"AUROC, {look.replace('_', ' ')}"] = f"{block['value']:.3f}"
    return row


def model_table(scores_by_model: dict[str, dict]) -> pd.DataFrame:
    """One row per model (its title as the index)."""
    return pd.DataFrame({MODEL_TITLES[m]: columns(s) for m, s in scores_by_model.items()}).T


def held_out_table(leave_one_out: dict[str, dict]) -> pd.DataFrame:
    """One row per held-out collection: its measure with the interval, images, groups and the target."""
    rows = {}
    for name, scores in leave_one_out.items():
        block = scores[MEASURE[name]]
        rows[COLLECTION_TITLES[name]] = {"measure": MEASURE[name], "value [95% CI]": cell(block),
                                         "images": block["n"], "groups": block["groups"],
                                         "target": f"{TARGETS[name]:.0%}", "met": block["value"] >= TARGETS[name]}
        for look, by_look in scores.get("by_look", {}).items():
            block = by_look[MEASURE[name]]
            rows[f"{COLLECTION_TITLES[name]}, {look}"] = {"measure": MEASURE[name], "value [95% CI]": cell(block),
                                                          "images": block["n"], "groups": block["groups"],
                                                          "target": f"{PLANE_TARGET:.0%}",
                                                          "met": block["value"] >= PLANE_TARGET}
    return pd.DataFrame(rows).T


def targets_met(scores: dict, names: tuple[str, ...]) -> dict[str, bool]:
    """Each collection's target, and each BraTS plane's, on `scores` (a `model_scores` result or the
    leave-one-out results keyed by collection)."""
    met = {name: scores[name][MEASURE[name]]["value"] >= TARGETS[name] for name in names if name in scores}
    for plane, block in scores.get("brats", {}).get("by_look", {}).items():
        met[f"brats_{plane}"] = block["detected"]["value"] >= PLANE_TARGET
    return met


AUDIT_COLUMNS = {"files": "files", "kaggle_files": "Kaggle files", "near_copies_of_kaggle": "near-copies of Kaggle",
                 "clusters": "distinct images", "groups": "groups", "fresh_groups": "groups without a Kaggle copy",
                 "fresh_images": "their distinct images"}


def audit_table(audit_summary: dict[str, dict], frames: dict[str, pd.DataFrame], parts: dict[str, dict]
                ) -> pd.DataFrame:
    """One row per collection and label: `generalisation.audit_summary`'s counts and the images of
    each part with that label."""
    rows = {}
    for name, by_label in audit_summary.items():
        labels = frames[name].label.map(lambda k: "notumor" if k == CLASSES.index("notumor") else "tumour")
        for label, counts in by_label.items():
            in_parts = {f"{k} part": int((labels.iloc[v] == label).sum()) for k, v in parts[name].items()}
            rows[(COLLECTION_TITLES[name], label)] = {AUDIT_COLUMNS[k]: n for k, n in counts.items()} | in_parts
    frame = pd.DataFrame(rows).T
    frame.index.names = ["collection", "label"]
    return frame


def ablation_table(leave_one_out: dict[str, dict], ablations: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """Each held-out collection's measure under the recipe and under each ablation run on it."""
    rows = {}
    for name, scores in leave_one_out.items():
        row = {"recipe": cell(scores[MEASURE[name]])}
        for ablation, by_fold in ablations.items():
            if name in by_fold:
                row[ablation.replace("_", " ")] = cell(by_fold[name][MEASURE[name]])
        rows[f"{COLLECTION_TITLES[name]}: {MEASURE[name]}"] = row
    return pd.DataFrame(rows).T.fillna("")


def seed_table(per_seed: dict[int, dict], validation: dict[int, float], selected: int) -> pd.DataFrame:
    """One row per seed of the shipped recipe: Kaggle validation and Testing, and each collection's
    measure on its `test` part; the selected seed marked."""
    rows = {}
    for seed, scores in per_seed.items():
        row = {"Kaggle validation accuracy": f"{validation[seed]:.2%}",
               "Kaggle Testing notumor recall": f"{scores['kaggle_testing']['notumor_recall']:.2%}"}
        rows[f"seed {seed}" + (" (selected)" if seed == selected else "")] = row | columns(scores)
    return pd.DataFrame(rows).T


def shipped_targets(selected: dict, per_seed: dict[int, dict], pointing: dict | None) -> dict[str, bool]:
    """The shipped model's targets: every collection's and plane's on its selected seed, pointing inside
    the BraTS boxes, and Kaggle Testing accuracy (mean over seeds) and *notumor* recall."""
    mean = {k: sum(s["kaggle_testing"][k] for s in per_seed.values()) / len(per_seed)
            for k in ("accuracy", "notumor_recall")}
    return {**targets_met(selected, tuple(MEASURE)),
            "pointing_in_brats_boxes": pointing is not None and pointing["value"] >= POINTING_TARGET,
            "kaggle_testing_accuracy": mean["accuracy"] >= KAGGLE_ACCURACY_TARGET,
            "kaggle_testing_notumor_recall": mean["notumor_recall"] >= NOTUMOR_RECALL_TARGET}


def _measure_words(name: str, block: dict) -> str:
    what = "tumours detected" if MEASURE[name] == "detected" else "tumour-free slices left alone"
    return f"{COLLECTION_TITLES[name]}: {block['value']:.1%} of {what} ({block['n']} images, {block['groups']} groups)"


def findings(saved: dict[str, dict], leave_one_out: dict[str, dict], leave_one_out_met: dict[str, bool],
             per_seed: dict[int, dict], selected: int, shipped_met: dict[str, bool]) -> str:
    """The notebook's closing bullets, from its results."""
    plain = saved.get("custom_cnn")
    lines = []
    if plain:
        lines.append("The study's plain custom CNN on the collections' test parts: "
                     + "; ".join(_measure_words(n, plain[n][MEASURE[n]]) for n in MEASURE if n in plain) + ".")
    missed = [k for k, ok in leave_one_out_met.items() if not ok]
    lines.append("Left out of training, each collection with the recipe: "
                 + "; ".join(_measure_words(n, s[MEASURE[n]]) for n, s in leave_one_out.items())
                 + (". Every target met." if not missed else f". Targets missed: {', '.join(missed)}."))
    accuracy = sum(s["kaggle_testing"]["accuracy"] for s in per_seed.values()) / len(per_seed)
    missed = [k for k, ok in shipped_met.items() if not ok]
    lines.append(f"The shipped recipe ({len(per_seed)} seed(s)) reaches {accuracy:.2%} Kaggle Testing accuracy "
                 f"(mean); its selected seed {selected} "
                 + ("meets every target, so `predict` uses it." if not missed
                    else f"misses {', '.join(missed)}, so it is not shipped and `predict` keeps its previous model."))
    lines.append("Not shown: other sequences (FLAIR, T2) in proportion to a hospital's case mix, tumour types "
                 "other than gliomas outside the Kaggle set, 3-D volumes, and subjects of OASIS (its release "
                 "does not group slices by subject, so its parts are split by near-duplicate cluster only).")
    return "\n".join(f"- {line}" for line in lines)


def readme_sentence(gen: dict) -> str:
    """What notebook 11 measured, for the README's results block and the results summary."""
    loo = "; ".join(f"{COLLECTION_TITLES[n]} {s[MEASURE[n]]['value']:.1%} {MEASURE[n]}"
                    for n, s in gen["leave_one_out"].items())
    def on_test_parts(scores: dict) -> str:
        return "; ".join(f"{COLLECTION_TITLES[n]} {scores[n][MEASURE[n]]['value']:.1%} {MEASURE[n]}"
                         for n in MEASURE if n in scores)

    per_seed = gen["shipped_per_seed"].values()
    accuracy = sum(s["kaggle_testing"]["accuracy"] for s in per_seed) / len(per_seed)
    missed = {where: ", ".join(k.replace("_", " ") for k, ok in gen[key].items() if not ok)
              for where, key in (("left out of training", "leave_one_out_targets_met"),
                                 ("trained on every collection", "shipped_targets_met"))}
    verdict = ("every target met, so `predict` uses it" if not any(missed.values())
               else "targets missed, " + "; ".join(f"{where}: {words}" for where, words in missed.items() if words)
               + "; so `predict` does not use it")
    saved = {"custom_cnn": "The plain custom CNN on their test parts",
             "custom_cnn_external": "Notebook 08's Br35H variant"}
    before = "".join(f" {words}: {on_test_parts(gen['saved_models'][m])}." for m, words in saved.items()
                     if m in gen["saved_models"])
    pointing = gen["gradcam_brats_boxes"].get(SHIPPED)
    looks = "" if pointing is None else f"; Grad-CAM pointing inside the BraTS boxes {pointing['value']:.2f}"
    return (f"Generalisation (notebook 11, four collections the Kaggle set does not hold).{before} Left out of "
            "training in turn, with the generalisation recipe "
            f"(other collections as partial labels, acquisition randomisation, a brain-only view): {loo}. "
            f"The recipe on every collection ({len(gen['shipped_per_seed'])} seed(s)), its selected seed on the test "
            f"parts: {on_test_parts(gen['shipped'])}{looks}; Kaggle Testing accuracy {accuracy:.2%} (mean of the "
            f"seeds); {verdict}.")


def flags_sentence(gen: dict) -> str:
    """What `predict`'s flags caught for its default model on the collections' test parts (notebook 11),
    and what they leave: the README's results block and the results summary."""
    default = gen.get("flags_default_model")
    if not default:
        return ""
    reports = gen["flags"][default]
    collections = {COLLECTION_TITLES.get(n, n): r for n, r in reports.items() if n != "kaggle_testing"}
    caught = ", ".join(f"{r['errors_flagged_share']:.0%} of its {r['errors']} errors on {title}"
                       for title, r in collections.items() if r["errors"])
    clean = ", ".join(title for title, r in collections.items() if not r["errors"])
    left = ", ".join(f"{r['error_unflagged']:.1%} on {title}" for title, r in collections.items()
                     if r["error_unflagged"] is not None)
    return (f"Flags (notebook 11), `predict`'s default model ({MODEL_TITLES[default]}): "
            f"{reports['kaggle_testing']['unfamiliar_share']:.1%} of Kaggle Testing marked unfamiliar. On the "
            f"collections' test parts the two flags mark {caught}"
            + (f" (no errors on {clean})" if clean else "")
            + f"; among the images neither flag marks, the error is {left}.")


UNFAMILIAR_TESTING_TARGET = 0.03  # at most this share of Kaggle Testing flagged unfamiliar
ERRORS_FLAGGED_TARGET = 0.5  # at least this share of the default model's errors flagged, per collection
UNFLAGGED_ERROR_TARGET = 0.05  # at most this error among the shipped model's unflagged images, per collection


def flag_table(reports_by_model: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per model and set: the flags' shares, the errors they mark and what is left unflagged."""
    rows = {}
    for model, reports in reports_by_model.items():
        for name, r in reports.items():
            share = (lambda v: "" if v is None else f"{v:.1%}")  # noqa: E731
            rows[(MODEL_TITLES[model], COLLECTION_TITLES.get(name, name))] = {
                "images": r["images"], "errors": r["errors"], "unfamiliar": share(r["unfamiliar_share"]),
                "uncertain": share(r["uncertain_share"]), "errors flagged": share(r["errors_flagged_share"]),
                "error among unflagged": share(r["error_unflagged"]),
                "unfamiliar-score AUROC, errors": "" if r["unfamiliar_score_auroc"] is None
                else f"{r['unfamiliar_score_auroc']:.3f}"}
    frame = pd.DataFrame(rows).T
    if rows:
        frame.index.names = ["model", "set"]
    return frame


def flag_targets(reports: dict[str, dict]) -> dict[str, bool]:
    """Issue #49's targets for the default model: Kaggle Testing rarely flagged unfamiliar, and at least
    half of the errors flagged on each collection (a collection without errors meets it)."""
    met = {"kaggle_testing_unfamiliar": reports["kaggle_testing"]["unfamiliar_share"] <= UNFAMILIAR_TESTING_TARGET}
    for name, r in reports.items():
        if name != "kaggle_testing":
            met[f"{name}_errors_flagged"] = (r["errors_flagged_share"] is None
                                            or r["errors_flagged_share"] >= ERRORS_FLAGGED_TARGET)
    return met


def unflagged_error_targets(reports: dict[str, dict]) -> dict[str, bool]:
    """Issue #49's target for the shipped model: at most `UNFLAGGED_ERROR_TARGET` errors among the images
    neither flag marks, on each collection (one with every image flagged meets it)."""
    return {f"{name}_unflagged_error": r["error_unflagged"] is None or r["error_unflagged"] <= UNFLAGGED_ERROR_TARGET
            for name, r in reports.items() if name != "kaggle_testing"}
