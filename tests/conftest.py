"""Shared fixtures. Real data from the dataset folder wherever a test needs data; small synthetic
images only where a test needs something the real data lacks (bad files, other modes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from braintumour import data, evaluate, record
from braintumour.__main__ import main
from braintumour.config import CLASSES, SPLITS


@pytest.fixture(scope="session")
def dataset() -> data.Dataset:
    return data.load_dataset()


@pytest.fixture(scope="session")
def real_dir(dataset: data.Dataset) -> Path:
    return dataset.root


@pytest.fixture()
def isolated_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project root: its own data/raw, data/interim and reports."""
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "interim").mkdir(parents=True)
    monkeypatch.setenv("BRAINTUMOUR_ROOT", str(root))
    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(root / "reports"))
    monkeypatch.delenv("BRAIN_MRI_DIR", raising=False)
    return root


def make_mini_dataset(real_dir: Path, dest: Path, per_class: int = 2) -> Path:
    """Copy the first `per_class` real images of every split and class into a dataset layout."""
    for split in SPLITS:
        for cls in CLASSES:
            out = dest / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for src in sorted((real_dir / split / cls).iterdir())[:per_class]:
                shutil.copy2(src, out / src.name)
    return dest


@pytest.fixture()
def mini_dataset(real_dir: Path, tmp_path: Path) -> Path:
    return make_mini_dataset(real_dir, tmp_path / "mini" / "brain-tumor-mri")


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`python -m braintumour ARGV` in-process: (exit status, stdout, stderr). An exception escaping
    `main` (a traceback for the user) fails the test right here."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def model_record(name: str, accuracy: float, seeds=(0,), n: int = 200) -> record.ModelRecord:
    """A model record scored on `n` synthetic labels predicted right with probability `accuracy`."""
    rng = np.random.default_rng(len(name))
    y = np.repeat(np.arange(4), n // 4)
    pred = np.where(rng.random(n) < accuracy, y, (y + 1) % 4)
    proba = np.eye(4)[pred] * 0.9 + 0.025
    per_seed = {s: evaluate.classification_metrics(y, proba) for s in seeds}
    over = evaluate.summarise_over_seeds(per_seed)
    return record.ModelRecord(
        model=name, seeds=list(seeds), selected_seed=seeds[0], params=1000, multiply_adds=5000, image_size=128,
        config={}, train_seconds={s: 600.0 for s in seeds}, epochs_run={s: 2.5 for s in seeds},
        best_epoch={s: 2 for s in seeds}, inference_images_per_second=100.0, torch_threads=2,
        split_sizes={"train": 100, "val": 20, "test": n}, test=per_seed[seeds[0]], test_over_seeds=over,
        test_per_seed=per_seed, test_dedup=per_seed[seeds[0]], test_dedup_over_seeds=over,
        test_dedup_per_seed=per_seed, recall_by_source={})
