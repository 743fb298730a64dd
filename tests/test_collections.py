"""Every collection as a data source: found like the Kaggle set, fetched by `make data` where absent
with the Kaggle download's checks, and loaded as rows with label, group, collection and boxes. Offline:
zips of a few real images of each, read through file:// URLs or served by a local HTTP server."""

from __future__ import annotations

import hashlib
import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import zip_folder

from braintumour.__main__ import main
from braintumour.config import CLASSES, MASKS_DIRNAME, PATIENTS_FILENAME
from braintumour.datasets import EXTERNAL, SOURCES, br35h, brats, figshare, images, kaggle, openneuro
from braintumour.datasets.download import DownloadError
from braintumour.datasets.source import ROWS, TUMOUR, DataSource

NOTUMOR = CLASSES.index("notumor")


@pytest.fixture(scope="module")
def real() -> dict[str, Path]:
    """Each collection's real folder, found before a test isolates the project root."""
    return {name: source.find() for name, source in EXTERNAL.items()}


def _mini(source, real: dict[str, Path], tmp_path: Path, per_folder: int = 3) -> Path:
    """The first real images of each folder of a collection (and their label files), in its layout."""
    real = real[source.name]
    rows = source.list_rows(real)
    picked = rows.groupby(rows.path.map(lambda p: str(Path(p).parent)), sort=True).head(per_folder)
    root = tmp_path / f"mini-{source.name}"
    for rel in picked.path:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real / rel, root / rel)
        label = (real / rel).parent.parent.parent / "labels" / Path(rel).parent.name / f"{Path(rel).stem}.txt"
        if source is brats.SOURCE and label.is_file():
            dest = root / label.relative_to(real)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(label, dest)
    return root


@pytest.mark.parametrize("name", list(EXTERNAL))
def test_each_collection_is_found_like_the_kaggle_set(name, isolated_root, tmp_path, monkeypatch):
    source = EXTERNAL[name]
    monkeypatch.setattr(kaggle, "project_root", lambda: isolated_root)  # no ../shared beside the throwaway root
    with pytest.raises(kaggle.DataNotFoundError) as err:
        source.find()
    message = str(err.value)
    assert f"data/raw/{source.dirname}" in message and source.env in message and "make data" in message
    assert (source.kaggle_dataset or source.public_archive) in message
    monkeypatch.setenv(source.env, str(tmp_path))
    assert source.find() == tmp_path.resolve()
    assert [where for where, _ in source.candidate_dirs()] == [f"${source.env}", "data/raw", "../shared/datasets"]
    monkeypatch.setenv(source.env, str(tmp_path / "typo"))
    with pytest.raises(kaggle.DataNotFoundError, match="is set but is not a folder"):
        source.find()


@pytest.mark.parametrize("name", list(EXTERNAL))
def test_each_collection_loads_as_rows_with_label_group_and_collection(name):
    m = EXTERNAL[name].load().manifest
    assert (m.collection == name).all() and m.sha256.str.len().eq(64).all() and (m.error == "").all()
    assert set(m.label) <= {TUMOUR, NOTUMOR}
    expected = {"brats": {TUMOUR}, "oasis": {NOTUMOR}, "openneuro": {NOTUMOR}, "br35h": {TUMOUR, NOTUMOR}}[name]
    assert set(m.label) == expected


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_has_one_interface_and_loads_as_rows(name):
    source = SOURCES[name]
    assert isinstance(source, DataSource) and source.name == name
    rows = source.rows()
    assert list(rows.columns) == ROWS and len(rows) and (rows.collection == name).all()
    assert set(rows.label) <= {*range(len(CLASSES)), TUMOUR}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in rows.path.iloc[::97])
    masks = rows["mask"][rows["mask"] != ""]
    assert all(Path(p).is_file() for p in masks.iloc[::97])
    if name == "figshare":
        assert (rows.group != "").all() and len(masks) == len(rows)


def test_kaggle_rows_carry_patient_ids_and_masks_only_where_derived(mini_dataset, isolated_root, monkeypatch):
    monkeypatch.setattr(kaggle, "check_counts", lambda *a, **k: None)  # a few images of the published set
    rows = kaggle.SOURCE.rows(mini_dataset)
    assert (rows.group == "").all() and (rows["mask"] == "").all() and len(figshare.SOURCE.rows(mini_dataset)) == 0
    first, second = sorted(Path(p).relative_to(mini_dataset).as_posix() for p in rows.path)[:2]
    patients = f"path,figshare_id,patient_id\n{first},1,MR1\n{second},2,MR1\n"
    (mini_dataset.parent / PATIENTS_FILENAME).write_text(patients)
    mask = mini_dataset.parent / MASKS_DIRNAME / Path(first).with_suffix(".png")
    mask.parent.mkdir(parents=True)
    shutil.copy2(mini_dataset / first, mask)  # any image stands in: only its path is listed
    rows = kaggle.SOURCE.rows(mini_dataset).set_index(rows.path.map(lambda p: Path(p).relative_to(mini_dataset)
                                                                   .as_posix()))
    assert rows.group[first] == rows.group[second] == "MR1" and (rows.group != "").sum() == 2
    assert rows["mask"][first] == str(mask) and (rows["mask"] != "").sum() == 1
    assert list(figshare.SOURCE.rows(mini_dataset).collection) == ["figshare", "figshare"]


def test_the_kaggle_source_fetches_from_data_url(monkeypatch):
    calls = []
    monkeypatch.setattr(kaggle, "fetch", lambda **kw: calls.append(kw) or Path("/fetched"))
    monkeypatch.setenv("DATA_URL", "file:///kaggle.zip")
    monkeypatch.setenv("DATA_SHA256", "ab" * 32)
    assert kaggle.SOURCE.fetch() == Path("/fetched")
    assert calls == [{"url": "file:///kaggle.zip", "sha256": "ab" * 32, "force": False}]


def test_brats_groups_a_patient_across_planes_and_a_coronal_slice_with_its_copies():
    assert brats.group_of("axial", "00054_145") == brats.group_of("sagittal", "00054_164") == "patient 54"
    assert brats.group_of("coronal", "100 (2)") == brats.group_of("coronal", "100") != brats.group_of("coronal", "101")
    m = brats.SOURCE.load().manifest
    assert set(m.split) == set(brats.PLANES) and m.boxes.str.startswith("[[").mean() > 0.5


def test_brats_boxes_are_read_and_a_malformed_label_is_refused_by_name(tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.4 0.2 0.1\n1 0.25 0.25 0.1 0.1\n")
    assert brats.read_boxes(label) == "[[0.5, 0.4, 0.2, 0.1], [0.25, 0.25, 0.1, 0.1]]"
    assert brats.read_boxes(tmp_path / "missing.txt") == "[]"
    label.write_text("0 0.5 0.4 wide 0.1\n")
    with pytest.raises(kaggle.DatasetLayoutError, match=r"a\.txt, line 1"):
        brats.read_boxes(label)


def test_br35h_keeps_its_manifest_so_its_fingerprint_and_notebook_08_stand():
    m = br35h.SOURCE.load().manifest
    assert set(m.class_name) == {"yes", "no"} and (m.split == "Br35H").all()
    assert set(m.label[m.class_name == "yes"]) == {TUMOUR} and set(m.label[m.class_name == "no"]) == {NOTUMOR}


@pytest.mark.parametrize("name", ["brats", "oasis", "br35h"])
def test_fetch_checks_and_installs_from_a_zip(name, real, isolated_root, tmp_path, capsys):
    source = EXTERNAL[name]
    mini = _mini(source, real, tmp_path)
    archive = zip_folder(mini, tmp_path / f"{name}.zip", "release/")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = source.fetch(archive.as_uri(), sha256=digest, dest=isolated_root / "data" / "raw" / source.dirname,
                        force=True)
    assert sorted(source.list_rows(dest).path) == sorted(source.list_rows(mini).path)
    assert [p.name for p in dest.parent.iterdir()] == [source.dirname]  # nothing half-done beside it
    assert "installed at" in capsys.readouterr().out


def test_fetch_refuses_a_bad_checksum_a_wrong_layout_and_a_broken_image(real, isolated_root, tmp_path):
    source, raw = openneuro.SOURCE, isolated_root / "data" / "raw"
    mini = _mini(source, real, tmp_path)
    with pytest.raises(DownloadError, match="SHA-256"):
        source.fetch(zip_folder(mini, tmp_path / "good.zip").as_uri(), sha256="0" * 64, force=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no slices here")
    with pytest.raises(kaggle.DatasetLayoutError, match="sub-NN_T1w"):
        source.fetch(zip_folder(tmp_path / "empty", tmp_path / "empty.zip").as_uri(), force=True)
    (mini / "sub-99_T1w.nii_slice1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(images.ImageDecodeError, match="sub-99_T1w.nii_slice1.png"):
        source.fetch(zip_folder(mini, tmp_path / "broken.zip").as_uri(), force=True)
    assert list(raw.iterdir()) == []


def test_openneuro_is_fetched_from_its_public_archive_over_http(real, isolated_root, tmp_path, http_root):
    """The real download code against a local server standing in for GitHub's archive of the commit."""
    mini = _mini(openneuro.SOURCE, real, tmp_path)
    served, base = http_root
    zip_folder(mini, served / f"{openneuro.COMMIT}.zip", f"mri_superresolution-{openneuro.COMMIT}/training_data/")
    dest = openneuro.SOURCE.fetch(f"{base}/{openneuro.COMMIT}.zip", force=True,
                                  dest=isolated_root / "data" / "raw" / openneuro.SOURCE.dirname)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in mini.iterdir())
    assert openneuro.ARCHIVE.endswith(f"/archive/{openneuro.COMMIT}.zip")


def test_a_kaggle_collection_comes_through_kagglehub(real, isolated_root, tmp_path, monkeypatch):
    mini, calls = _mini(brats.SOURCE, real, tmp_path), []
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(
        dataset_download=lambda handle: calls.append(handle) or str(mini)))
    dest = brats.SOURCE.fetch(dest=isolated_root / "data" / "raw" / brats.SOURCE.dirname, force=True)
    assert calls == ["davidbroberts/brain-tumor-object-detection-datasets"]
    assert sorted(brats.SOURCE.list_rows(dest).path) == sorted(brats.SOURCE.list_rows(mini).path)
    assert (mini / "axial_t1wce_2_class").is_dir()  # kagglehub's cache is copied from, not moved


def test_make_data_fetches_each_collection_or_finds_it(real, isolated_root, mini_dataset, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setattr(kaggle, "fetch", lambda **kw: print("dataset present (stand-in)") or mini_dataset)
    archive = zip_folder(_mini(br35h.SOURCE, real, tmp_path), tmp_path / "br35h.zip")
    monkeypatch.setenv("BR35H_URL", archive.as_uri())
    skip = [arg for name in ("figshare", "brats", "oasis", "openneuro") for arg in ("--skip", name)]
    assert main(["data", *skip]) == 0  # nothing in the throwaway root: Br35H is fetched from BR35H_URL
    assert (isolated_root / "data" / "raw" / "br35h" / "no").is_dir()
    assert "installed at" in capsys.readouterr().out
    monkeypatch.setenv("BR35H_URL", "file:///nowhere.zip")
    assert main(["data", *skip]) == 0  # found now: nothing downloaded
    assert "Br35H (external collection) present" in capsys.readouterr().out
