"""Br35H as a data source: found like the Kaggle set, fetched by `make data` where absent, with the
Kaggle download's checks. Offline: zips of a few real Br35H images, read through file:// URLs."""

from __future__ import annotations

import hashlib
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest

from braintumour import br35h, data, download
from braintumour.__main__ import main
from braintumour.download import DownloadError


@pytest.fixture(scope="session")
def real_br35h() -> Path:
    return br35h.find_br35h()


@pytest.fixture()
def mini_br35h(real_br35h, tmp_path) -> Path:
    """Three real images of yes/ and of no/, and an unlabelled pred/ as in the public release."""
    root = tmp_path / "mini-br35h"
    for folder in ("yes", "no", "pred"):
        (root / folder).mkdir(parents=True)
        for src in sorted((real_br35h / ("yes" if folder == "pred" else folder)).iterdir())[:3]:
            shutil.copy2(src, root / folder / src.name)
    return root


def _zip(folder: Path, archive: Path, prefix: str = "Br35H/") -> str:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return archive.as_uri()


def test_found_like_the_kaggle_set(isolated_root, mini_br35h, monkeypatch):
    with pytest.raises(data.DataNotFoundError) as err:
        br35h.find_br35h()
    msg = str(err.value)
    assert "data/raw/br35h" in msg and "BR35H_DIR" in msg and "make data" in msg and "brain-tumor-detection" in msg
    monkeypatch.setenv("BR35H_DIR", str(mini_br35h))
    assert br35h.find_br35h() == mini_br35h.resolve()
    assert [where for where, _ in br35h.candidate_dirs()] == ["$BR35H_DIR", "data/raw", "../shared/datasets"]
    monkeypatch.setenv("BR35H_DIR", str(isolated_root / "typo"))
    with pytest.raises(data.DataNotFoundError, match="BR35H_DIR=.*typo is set but is not a folder"):
        br35h.find_br35h()


def test_fetch_checks_and_installs_yes_and_no(isolated_root, mini_br35h, tmp_path, capsys):
    url = _zip(mini_br35h, tmp_path / "br35h.zip")
    digest = hashlib.sha256((tmp_path / "br35h.zip").read_bytes()).hexdigest()
    dest = br35h.fetch(url, sha256=digest)
    assert dest == isolated_root / "data" / "raw" / "br35h"
    assert sorted(p.name for p in dest.iterdir()) == ["no", "yes"]  # pred/ (unlabelled) left out
    assert sorted(p.name for p in (dest / "yes").iterdir()) == sorted(p.name for p in (mini_br35h / "yes").iterdir())
    assert [p.name for p in dest.parent.iterdir()] == ["br35h"]  # nothing half-done beside it
    assert "yes/ 3, no/ 3 images" in capsys.readouterr().out
    assert br35h.fetch(tmp_path.joinpath("missing.zip").as_uri()) == dest.resolve()  # found: no download
    assert "Br35H present" in capsys.readouterr().out


def test_fetch_refuses_bad_checksum_layout_and_images(isolated_root, mini_br35h, tmp_path):
    raw = isolated_root / "data" / "raw"
    url = _zip(mini_br35h, tmp_path / "good.zip")
    with pytest.raises(DownloadError, match="SHA-256"):
        br35h.fetch(url, sha256="0" * 64)
    shutil.rmtree(mini_br35h / "no")
    with pytest.raises(data.DatasetLayoutError, match="no/"):
        br35h.fetch(_zip(mini_br35h, tmp_path / "only-yes.zip"))
    (mini_br35h / "no").mkdir()
    (mini_br35h / "no" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(data.ImageDecodeError, match="broken.jpg"):
        br35h.fetch(_zip(mini_br35h, tmp_path / "broken.zip"))
    assert list(raw.iterdir()) == []


def test_fetch_through_kagglehub(isolated_root, mini_br35h, monkeypatch):
    calls = []

    def dataset_download(handle):
        calls.append(handle)
        return str(mini_br35h)

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    dest = br35h.fetch()
    assert calls == ["ahmedhamada0/brain-tumor-detection"]
    assert sorted(p.name for p in dest.iterdir()) == ["no", "yes"]
    assert (mini_br35h / "yes").is_dir()  # kagglehub's cache is copied from, not moved


def test_make_data_fetches_br35h(isolated_root, mini_dataset, mini_br35h, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "fetch", lambda **kw: print("dataset present (stand-in)") or mini_dataset)
    url = _zip(mini_br35h, tmp_path / "br35h.zip")
    assert main(["data", "--skip", "figshare", "--br35h-url", url]) == 0
    assert (isolated_root / "data" / "raw" / "br35h" / "no").is_dir()
    assert main(["data", "--skip", "figshare", "--br35h-url", "file:///nowhere.zip"]) == 0
    out = capsys.readouterr().out
    assert "dataset present" in out and "Br35H present" in out
