"""Shared fixtures. Real data from the dataset folder wherever a test needs data; small synthetic
images only where a test needs something the real data lacks (bad files, other modes)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from braintumour.__main__ import main
from braintumour.analysis import evaluate
from braintumour.config import CLASSES, SPLITS
from braintumour.datasets import kaggle
from braintumour.reporting import record
from braintumour.reporting.pipeline import notebooks

ROOT = Path(__file__).resolve().parents[1]


class SmokeChain:
    """`make smoke` into a fresh folder, started in the background as soon as a test that reads it is
    collected, so that the rest of the suite runs beside it: the chain is the longest part, and much
    of it is one core's work (kernel start-up, figures, export). The chain keeps torch's threads;
    the tests beside it take one."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="braintumour-smoke-"))
        self.reports = self.folder / "reports"
        self.log = self.folder / "make.log"
        with self.log.open("w") as log:
            # A session of its own: stopping the chain stops its notebook kernels too, not make alone.
            self.process = subprocess.Popen(self._make(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _make(self) -> list[str]:
        return ["make", "--no-print-directory", "reproduce", "PROFILE=smoke", f"REPORTS={self.reports}"]

    def wait(self) -> Path:
        """The reports folder, once the chain ran every notebook and a second `make` found nothing to do."""
        returncode = self.process.wait(timeout=1800)
        out = self.log.read_text()
        assert returncode == 0, f"make smoke failed ({self.log}):\n{out[-6000:]}"
        assert f"{len(notebooks())} notebook(s) re-executed" in out, out[-3000:]
        again = subprocess.run(self._make(), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert "nothing to do" in again.stdout, again.stdout
        return self.reports

    def stop(self, keep: bool) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if keep:
            print(f"\nsmoke chain's reports and log kept in {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


_SMOKE = pytest.StashKey[SmokeChain]()


def _reads_smoke(item: pytest.Item) -> bool:
    return "smoke_reports" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read the smoke chain go last, so that the others run while it does."""
    items.sort(key=_reads_smoke)  # stable: each group keeps its order


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(_reads_smoke(item) for item in session.items):
        session.config.stash[_SMOKE] = SmokeChain()
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # for the interpreters and kernels the tests start


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    chain = session.config.stash.get(_SMOKE, None)
    if chain is not None:
        chain.stop(keep=exitstatus != 0)


@pytest.fixture(scope="session")
def smoke_reports(request: pytest.FixtureRequest) -> Path:
    """The smoke chain's reports folder (`SmokeChain`), waited for."""
    return request.config.stash[_SMOKE].wait()


@pytest.fixture(scope="session")
def dataset() -> kaggle.Dataset:
    return kaggle.load_dataset()


@pytest.fixture(scope="session")
def real_dir(dataset: kaggle.Dataset) -> Path:
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


@pytest.fixture()
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1, and its base URL: a download's far end, offline."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Every file below `folder` into a zip, under `prefix`."""
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return archive
