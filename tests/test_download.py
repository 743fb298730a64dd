"""`make data`'s download-check-unpack path, against a zip served on 127.0.0.1."""

import hashlib
import zipfile

import pytest
from conftest import zip_folder

from braintumour.datasets import download, kaggle
from braintumour.datasets.kaggle import DatasetLayoutError


def test_download_check_unpack(isolated_root, mini_dataset, http_root):
    served, base = http_root
    archive = zip_folder(mini_dataset, served / "brain-tumor-mri.zip", prefix="archive/")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = isolated_root / "data" / "raw" / "brain-tumor-mri"
    out = kaggle.fetch(f"{base}/brain-tumor-mri.zip", sha256=digest, expected=None)
    assert out == dest
    assert sorted(p.relative_to(dest) for p in dest.rglob("*.jpg")) == sorted(
        p.relative_to(mini_dataset) for p in mini_dataset.rglob("*.jpg"))
    # Nothing half-done left beside it.
    assert [p.name for p in dest.parent.iterdir()] == ["brain-tumor-mri"]
    # Found now, so a second call downloads nothing.
    assert kaggle.fetch(f"{base}/missing.zip", expected=None) == dest.resolve()


def test_checksum_mismatch_leaves_nothing(isolated_root, mini_dataset, http_root):
    served, base = http_root
    zip_folder(mini_dataset, served / "a.zip")
    with pytest.raises(download.DownloadError, match="SHA-256"):
        kaggle.fetch(f"{base}/a.zip", sha256="0" * 64, expected=None)
    assert list((isolated_root / "data" / "raw").iterdir()) == []


def test_wrong_layout_and_not_a_zip_and_404(isolated_root, mini_dataset, http_root):
    served, base = http_root
    zip_folder(mini_dataset / "Training", served / "only-training.zip")
    with pytest.raises(DatasetLayoutError):
        kaggle.fetch(f"{base}/only-training.zip", expected=None)
    (served / "text.zip").write_text("not a zip")
    with pytest.raises(download.DownloadError, match="not a valid zip"):
        kaggle.fetch(f"{base}/text.zip", expected=None)
    with pytest.raises(download.DownloadError, match="404"):
        kaggle.fetch(f"{base}/nowhere.zip", expected=None)
    assert list((isolated_root / "data" / "raw").iterdir()) == []


def test_counts_are_checked_by_default(isolated_root, mini_dataset, http_root):
    served, base = http_root
    zip_folder(mini_dataset, served / "small.zip")
    with pytest.raises(DatasetLayoutError, match="expected 1321"):
        kaggle.fetch(f"{base}/small.zip")
    assert list((isolated_root / "data" / "raw").iterdir()) == []


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(download.DownloadError, match="outside"):
        download.unpack_zip(archive, tmp_path / "into")
    assert not (tmp_path / "outside.txt").exists()
