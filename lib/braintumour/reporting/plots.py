"""Figures for the thesis (seaborn/matplotlib). Each function returns a Figure; saving is
`outputs.save_figure`'s job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import roc_curve

from braintumour.analysis.calibration import reliability_curve
from braintumour.config import CLASSES
from braintumour.reporting.titles import CLASS_TITLES

TITLES = [CLASS_TITLES[c] for c in CLASSES]


def learning_curves(histories: dict[str, pd.DataFrame], x: str = "epoch") -> plt.Figure:
    """Training loss, validation loss and validation macro-F1, one line per run, against the epoch
    or (x="minutes") the run's cumulative wall-clock, which is what a time budget compares."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, h in histories.items():
        t = h.epoch if x == "epoch" else (h.seconds + h.eval_seconds).cumsum() / 60
        style = {"marker": "o", "ms": 3} if len(h) < 5 else {}
        axes[0].plot(t, h.train_loss, label=label, **style)
        axes[1].plot(t, h.val_loss, label=label, **style)
        axes[2].plot(t, h.val_macro_f1, label=label, **style)
    xlabel = "epoch" if x == "epoch" else "training wall-clock (minutes)"
    for ax, title in zip(axes, ["training loss", "validation loss", "validation macro-F1"], strict=True):
        ax.set(title=title, xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrix(cm: np.ndarray | list, title: str = "", ax: plt.Axes | None = None) -> plt.Figure:
    cm = np.asarray(cm)
    fig = ax.figure if ax is not None else plt.figure(figsize=(4.6, 4))
    ax = ax or fig.add_subplot()
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=TITLES, yticklabels=TITLES, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def confusion_matrices(cms: dict[str, np.ndarray | list], title: str = "") -> plt.Figure:
    """Several models' confusion matrices side by side, same colour scale."""
    fig, axes = plt.subplots(1, len(cms), figsize=(3.9 * len(cms), 3.9), squeeze=False)
    for ax, (name, cm) in zip(axes[0], cms.items(), strict=True):
        confusion_matrix(cm, name, ax=ax)
        if ax is not axes[0][0]:
            ax.set(ylabel="")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def model_comparison(table: pd.DataFrame, metric: str = "macro_f1", title: str = "") -> plt.Figure:
    """A metric per model with its 95% interval, on Testing and on leakage-free Testing.
    `table` has columns model, subset, `metric`, `metric`_lo, `metric`_hi."""
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * table.model.nunique() + 1.4))
    subsets = list(dict.fromkeys(table.subset))
    models = list(dict.fromkeys(table.model))
    for i, subset in enumerate(subsets):
        part = table[table.subset == subset].set_index("model").reindex(models)
        y = np.arange(len(models)) + (i - (len(subsets) - 1) / 2) * 0.3
        err = np.vstack([part[metric] - part[f"{metric}_lo"], part[f"{metric}_hi"] - part[metric]])
        ax.errorbar(part[metric], y, xerr=err, fmt="o", capsize=3, label=subset)
    ax.set_yticks(np.arange(len(models)), models)
    ax.invert_yaxis()
    ax.set(xlabel=f"{metric.replace('_', ' ')} (95% bootstrap interval)", title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def per_class_bars(per_class: dict[str, dict[str, float]], title: str = "") -> plt.Figure:
    rows = [
        {"class": CLASS_TITLES[c], "metric": m, "value": v[m]}
        for c, v in per_class.items()
        for m in ("precision", "recall", "f1")
    ]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    sns.barplot(pd.DataFrame(rows), x="class", y="value", hue="metric", ax=ax)
    lo = min(r["value"] for r in rows)
    ax.set(ylim=(max(0.0, lo - 0.05), 1.0), title=title, xlabel="", ylabel="")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def roc_curves(y_true: np.ndarray, proba: np.ndarray, title: str = "") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for i, c in enumerate(CLASSES):
        fpr, tpr, _ = roc_curve(y_true == i, proba[:, i])
        ax.plot(fpr, tpr, label=CLASS_TITLES[c])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reliability_diagram(y_true: np.ndarray, proba: np.ndarray, ece: float, title: str = "",
                        ax: plt.Axes | None = None) -> plt.Figure:
    curve = reliability_curve(y_true, proba)
    fig = ax.figure if ax is not None else plt.figure(figsize=(4.6, 4.2))
    ax = ax or fig.add_subplot()
    widths = np.subtract(curve["bin_upper"], curve["bin_lower"])
    ax.bar(
        curve["bin_lower"], curve["accuracy"], width=widths, align="edge", edgecolor="k", alpha=0.7, label="accuracy"
    )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"{title} (ECE {ece:.3f})".strip(), xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def reliability_grid(panels: dict[str, tuple[np.ndarray, np.ndarray, float]], columns: int = 2,
                     title: str = "") -> plt.Figure:
    """Reliability diagrams side by side; `panels` maps a title to (labels, probabilities, ECE)."""
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 4.0 * rows), squeeze=False)
    for ax, (name, (y, proba, ece)) in zip(axes.flat, panels.items(), strict=False):
        reliability_diagram(y, proba, ece, name, ax=ax)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def risk_coverage(curves: dict[str, dict[str, np.ndarray]], marks: dict[str, float] | None = None,
                  title: str = "") -> plt.Figure:
    """Error of the kept predictions against the share kept (most confident first), one line per set;
    `marks`: the coverage each set has at the chosen threshold, drawn as a dot."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for name, c in curves.items():
        line, = ax.plot(c["coverage"], c["risk"], label=name)
        if marks and name in marks:
            k = max(int(round(marks[name] * len(c["coverage"]))) - 1, 0)
            ax.plot(c["coverage"][k], c["risk"][k], "o", color=line.get_color())
    ax.set(xlabel="coverage (share of images not flagged)", ylabel="error of the kept predictions", title=title,
           xlim=(0, 1), ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def recall_comparison(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per-class recall with error bars for several variants; `table` columns: class, variant, mean, sd."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    variants = list(dict.fromkeys(table.variant))
    x = np.arange(len(CLASSES))
    width = 0.8 / len(variants)
    for k, v in enumerate(variants):
        t = table[table.variant == v].set_index("class").loc[list(CLASSES)]
        ax.bar(x + k * width, t["mean"], width, yerr=t["sd"], capsize=3, label=v)
    ax.set_xticks(x + width * (len(variants) - 1) / 2, TITLES)
    ax.set(ylim=(max(0, table["mean"].min() - 0.05), 1.0), ylabel="recall", title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def class_counts(counts: pd.DataFrame, title: str = "Images per class") -> plt.Figure:
    """Grouped bars; `counts` has splits as rows and class names as columns."""
    long = counts.reset_index().melt(id_vars=counts.index.name or "index", var_name="class", value_name="images")
    long["class"] = long["class"].map(CLASS_TITLES)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    sns.barplot(long, x="class", y="images", hue=counts.index.name or "index", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    ax.set(title=title, xlabel="")
    fig.tight_layout()
    return fig


def sample_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """A row of randomly drawn images per class."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(1.6 * per_class, 1.7 * len(CLASSES)))
    for r, _ in enumerate(CLASSES):
        picks = rng.choice(np.flatnonzero(labels == r), per_class, replace=False)
        for c, i in enumerate(picks):
            axes[r, c].imshow(images[i], cmap="gray", vmin=0, vmax=255)
            axes[r, c].axis("off")
        axes[r, 0].set_title(TITLES[r], loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def intensity_histograms(images: np.ndarray, labels: np.ndarray) -> plt.Figure:
    """Per-class pixel-intensity densities (background pixels, value 0, left out)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    bins = np.arange(1, 257)
    for r, _ in enumerate(CLASSES):
        px = images[labels == r].ravel()
        hist, _ = np.histogram(px[px > 0], bins=bins, density=True)
        ax.plot(bins[:-1], hist, label=TITLES[r])
    ax.set(xlabel="intensity (uint8, background excluded)", ylabel="density", title="Intensity per class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def distance_histogram(distances: np.ndarray, threshold: int, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.hist(distances, bins=np.arange(0, distances.max() + 3, 2) - 0.5, color="0.4")
    ax.axvline(threshold + 0.5, color="crimson", ls="--", label=f"threshold: <= {threshold} bits")
    ax.set(xlabel="Hamming distance to nearest other image (of 256 bits)", ylabel="images", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def pair_grid(images: np.ndarray, pairs: pd.DataFrame, title: str) -> plt.Figure:
    """Image pairs side by side, labelled with their distance and classes; `pairs` has i, j, distance."""
    n = len(pairs)
    fig, axes = plt.subplots(2, n, figsize=(1.7 * n, 3.8), squeeze=False)
    for c, row in enumerate(pairs.itertuples()):
        for r, idx in enumerate((row.i, row.j)):
            axes[r, c].imshow(images[idx], cmap="gray", vmin=0, vmax=255)
            axes[r, c].axis("off")
        axes[0, c].set_title(f"d = {row.distance}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cam_grid(
    images: np.ndarray,
    columns: dict[str, np.ndarray | None],
    masks: np.ndarray | None = None,
    row_titles: list[str] | None = None,
    title: str = "",
) -> plt.Figure:
    """One row per image: the image, then one heatmap overlay per column (None: the plain image).
    The expert mask, where given and non-empty, is outlined in white on every panel."""
    from braintumour.analysis.explain import overlay

    n, k = len(images), len(columns)
    fig, axes = plt.subplots(n, k, figsize=(1.9 * k, 1.9 * n + 0.4), squeeze=False)
    for r in range(n):
        for c, (name, maps) in enumerate(columns.items()):
            ax = axes[r, c]
            panel = images[r] if maps is None else overlay(images[r], maps[r])
            ax.imshow(panel, cmap="gray" if maps is None else None, vmin=0, vmax=255)
            if masks is not None and masks[r].any():
                ax.contour(masks[r], levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
        if row_titles:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for the block, then put back as it was."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def fold_scores(table: pd.DataFrame, metric: str = "accuracy", title: str = "") -> plt.Figure:
    """Per-fold scores (dots) and the official split's score (a cross) per model, one panel per subset.
    `table`: columns model, split ("official" or a fold name), subset, and the metric."""
    subsets = list(dict.fromkeys(table.subset))
    fig, axes = plt.subplots(1, len(subsets), figsize=(4.4 * len(subsets), 3.6), squeeze=False, sharey=True)
    for ax, subset in zip(axes[0], subsets, strict=True):
        part = table[table.subset == subset]
        folds_part, official = part[part.split != "official"], part[part.split == "official"]
        with seeded_global_numpy(0):  # seaborn draws the jitter from numpy's global generator
            sns.stripplot(data=folds_part, x="model", y=metric, ax=ax, size=6, jitter=0.08, color="tab:blue",
                          label="unseen-patient folds")
        sns.pointplot(data=official, x="model", y=metric, ax=ax, linestyle="none", marker="X", markersize=10,
                      color="tab:red", label="official split")
        ax.set(title=subset, xlabel="", ylabel=metric.replace("_", " "))
        ax.grid(alpha=0.3, axis="y")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
