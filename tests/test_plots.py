import numpy as np
import pandas as pd

from braintumour.reporting import outputs, plots


def _fold_table() -> pd.DataFrame:
    splits = ["official", *(f"fold_{i}" for i in range(1, 6))]
    rows = [{"model": m, "split": s, "subset": "all", "accuracy": 0.9 - 0.01 * k}
            for m in ("custom_cnn", "resnet50") for k, s in enumerate(splits)]
    return pd.DataFrame(rows)


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def test_fold_scores_draw_the_same_jitter_whatever_the_global_random_state():
    np.random.seed(1)
    first = _pixels(plots.fold_scores(_fold_table()))
    np.random.seed(2)
    before = np.random.get_state()[1].copy()
    second = _pixels(plots.fold_scores(_fold_table()))
    assert np.array_equal(first, second)
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's generator is left as it was


def test_a_figure_saved_twice_is_the_same_pdf(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(tmp_path))
    fig = plots.fold_scores(_fold_table())
    pdf = tmp_path / "figures" / "folds.pdf"
    outputs.save_figure(fig, "folds")
    first = pdf.read_bytes()
    outputs.save_figure(fig, "folds")
    assert pdf.read_bytes() == first and b"CreationDate" not in first
