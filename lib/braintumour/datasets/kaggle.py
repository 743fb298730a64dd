"""The Kaggle set: finding it, fetching it where absent (`fetch`: a zip of its layout, or kagglehub),
checking its layout and counts, its manifest and fingerprint, the decoded uint8 cache, and the expert
masks and patient ids derived beside it from the figshare release. `SOURCE` is the set as a
`source.DataSource`: its rows carry the patient ids and masks where derived.

The dataset folder is read-only input. Everything derived from it (manifest, decoded arrays) is a
cache under `data/interim/`, keyed by the data fingerprint, and rebuilt when stale or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from braintumour import files
from braintumour.config import (
    CLASSES,
    DATASET_DIRNAME,
    EXPECTED_COUNTS,
    IMAGE_SUFFIXES,
    KAGGLE_DATASET,
    MASKS_DIRNAME,
    PATIENTS_FILENAME,
    SPLITS,
    interim_dir,
    project_root,
    raw_dir,
)
from braintumour.datasets.download import DownloadError, install_tree, source_root
from braintumour.datasets.images import (
    ImageDecodeError,
    _header,
    decode_grey,
    load_image,
    load_mask,
    read_image_bytes,
)

MANIFEST_COLUMNS = ["path", "split", "label", "class_name", "sha256", "width", "height", "mode", "error"]


class DataNotFoundError(FileNotFoundError):
    """No dataset folder exists in any of the places the project looks."""


class DatasetLayoutError(ValueError):
    """The dataset folder exists but does not have the expected layout or counts."""


# --------------------------------------------------------------------------- discovery


def candidate_dirs(env_var: str = "BRAIN_MRI_DIR", dirname: str = DATASET_DIRNAME) -> list[tuple[str, Path]]:
    """Where a data source is looked for, in order, with a word on where each comes from:
    `$<env_var>`, `data/raw/<dirname>/`, `../shared/datasets/<dirname>/`. The Kaggle set by default."""
    out: list[tuple[str, Path]] = []
    env = os.environ.get(env_var)
    if env:
        out.append((f"${env_var}", Path(env).expanduser()))
    out.append(("data/raw", raw_dir() / dirname))
    out.append(("../shared/datasets", project_root().parent / "shared" / "datasets" / dirname))
    return out


def find_source(env_var: str, dirname: str, what: str, how: str) -> Path:
    """The first existing folder of `candidate_dirs(env_var, dirname)`; DataNotFoundError naming
    `what`, every place looked in and `how` to get it otherwise.

    `$<env_var>`, when set, must exist: a typo there should not silently fall back elsewhere.
    """
    env = os.environ.get(env_var)
    if env and not Path(env).expanduser().is_dir():
        raise DataNotFoundError(f"{env_var}={env} is set but is not a folder.")
    for _, path in candidate_dirs(env_var, dirname):
        if path.is_dir():
            return path.resolve()
    looked = "\n".join(f"  - {p}" for _, p in candidate_dirs(env_var, dirname))
    raise DataNotFoundError(f"{what} not found. Looked in:\n{looked}\n{how}")


def find_dataset() -> Path:
    """Return the first existing dataset folder: `$BRAIN_MRI_DIR`, `data/raw/`, `../shared/datasets/`."""
    return find_source(
        "BRAIN_MRI_DIR",
        DATASET_DIRNAME,
        "Brain MRI dataset",
        "Put the Kaggle 'Brain Tumor MRI Dataset' (folders Training/ and Testing/) at "
        f"data/raw/{DATASET_DIRNAME}/, or point BRAIN_MRI_DIR at it, or run `make data` to "
        f"download it (Kaggle dataset {KAGGLE_DATASET}, or DATA_URL=<zip url>).",
    )


def missing_figshare(what: str, where: Path) -> DataNotFoundError:
    """The error for expert masks or patient ids absent at `where` (beside the dataset folder): names
    the source (the figshare release, Cheng 2017) and the command that fetches and derives them."""
    return DataNotFoundError(
        f"{what} ({where}, derived from the figshare release, Cheng 2017, doi:10.6084/m9.figshare.1512427) "
        "missing: run `make data` (downloads the figshare release and derives them)"
    )


def masks_dir(dataset_dir: Path | None = None, *, required: bool = False) -> Path | None:
    """Expert tumour masks beside the dataset folder; None where there are none, or with
    `required` a DataNotFoundError saying how to get them."""
    dataset_dir = dataset_dir or find_dataset()
    path = dataset_dir.parent / MASKS_DIRNAME
    if required and not path.is_dir():
        raise missing_figshare("expert tumour masks", path)
    return path if path.is_dir() else None


def patients_csv(dataset_dir: Path | None = None, *, required: bool = False) -> Path | None:
    """Patient ids beside the dataset folder; None where absent, or with `required` a DataNotFoundError."""
    dataset_dir = dataset_dir or find_dataset()
    path = dataset_dir.parent / PATIENTS_FILENAME
    if required and not path.is_file():
        raise missing_figshare("patient ids", path)
    return path if path.is_file() else None


# --------------------------------------------------------------------------- layout + manifest


def list_images(dataset_dir: Path) -> list[tuple[str, str, str]]:
    """(relative path, split, class) for every image, sorted; checks the folder layout."""
    missing = [f"{s}/{c}" for s in SPLITS for c in CLASSES if not (dataset_dir / s / c).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"{dataset_dir} does not have the expected layout: missing folder(s) {', '.join(missing)}. "
            f"Expected {'/'.join(SPLITS)} x {'/'.join(CLASSES)}."
        )
    rows = []
    for split in SPLITS:
        for cls in CLASSES:
            for p in sorted((dataset_dir / split / cls).iterdir()):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append((p.relative_to(dataset_dir).as_posix(), split, cls))
    return rows


def check_counts(manifest: pd.DataFrame, expected: dict[str, dict[str, int]] | None = EXPECTED_COUNTS) -> None:
    """Raise DatasetLayoutError when counts per split and class differ from the published ones."""
    if expected is None:
        return
    counts = manifest.groupby(["split", "class_name"]).size()
    wrong = [
        f"{s}/{c}: {int(counts.get((s, c), 0))} files, expected {n}"
        for s, per_class in expected.items()
        for c, n in per_class.items()
        if int(counts.get((s, c), 0)) != n
    ]
    if wrong:
        raise DatasetLayoutError("Dataset counts differ from the published archive: " + "; ".join(wrong))


def build_manifest(
    dataset_dir: Path | None = None,
    *,
    skip_bad: bool = False,
    expected: dict[str, dict[str, int]] | None = EXPECTED_COUNTS,
) -> pd.DataFrame:
    """One row per image: path, split, label, class, sha256, width, height, PIL mode.

    Every image is fully decoded once here so that a truncated file is caught now, not in epoch 7.
    With `skip_bad`, unreadable files stay in the manifest with `error` set and a warning lists them.
    """
    dataset_dir = dataset_dir or find_dataset()
    rows = []
    bad = []
    for rel, split, cls in tqdm(list_images(dataset_dir), desc="manifest", unit="img", leave=False):
        path = dataset_dir / rel
        data = b""
        error = ""
        width = height = 0
        mode = ""
        try:
            data = read_image_bytes(path)  # an unreadable file is one more bad image, skipped with the others
            width, height, mode = _header(path, data)
            decode_grey(data, source=path)
        except ImageDecodeError as e:
            if not skip_bad:
                raise
            error = str(e)
            bad.append(error)
        rows.append((rel, split, CLASSES.index(cls), cls, hashlib.sha256(data).hexdigest(), width, height, mode, error))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if bad:
        warnings.warn(f"{len(bad)} unreadable image(s) skipped:\n" + "\n".join(bad), stacklevel=2)
    check_counts(manifest, expected)
    return manifest


def fingerprint(manifest: pd.DataFrame) -> str:
    """SHA-256 of the manifest's content columns: changes when any file, label or split changes."""
    cols = ["path", "split", "class_name", "sha256", "width", "height", "mode", "error"]
    text = manifest[cols].to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Dataset:
    """The manifest of one dataset folder and its fingerprint."""

    root: Path
    manifest: pd.DataFrame
    fingerprint: str

    def split(self, name: str) -> pd.DataFrame:
        return self.manifest[(self.manifest.split == name) & (self.manifest.error == "")]


def load_dataset(
    dataset_dir: Path | None = None,
    *,
    skip_bad: bool = False,
    write: bool = True,
    expected: dict[str, dict[str, int]] | None = EXPECTED_COUNTS,
) -> Dataset:
    """Find the data, build (or reuse) the manifest, and write it to `data/interim/manifest.csv`.

    The manifest is reused when every file's size and modification time match the cached one;
    otherwise it is rebuilt (hashing and decoding every file, about a minute here).
    """
    dataset_dir = (dataset_dir or find_dataset()).resolve()
    cache = interim_dir() / "manifest.csv"
    stat_key = _stat_key(dataset_dir)
    manifest = _read_cached_manifest(cache, dataset_dir, stat_key)
    if manifest is None:
        manifest = build_manifest(dataset_dir, skip_bad=skip_bad, expected=expected)
        if write:
            files.write_text(cache, manifest.to_csv(index=False, lineterminator="\n"))
            files.write_json(cache.with_suffix(".json"), {"root": str(dataset_dir), "stat_key": stat_key})
    elif not skip_bad and (manifest.error != "").any():
        bad = manifest.loc[manifest.error != "", "error"].tolist()
        raise ImageDecodeError("; ".join(bad))
    else:
        check_counts(manifest, expected)  # a cached manifest may have been built with other expectations
    return Dataset(dataset_dir, manifest, fingerprint(manifest))


def _stat_key(dataset_dir: Path) -> str:
    h = hashlib.sha256()
    for rel, _, _ in list_images(dataset_dir):
        st = (dataset_dir / rel).stat()
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_cached_manifest(cache: Path, dataset_dir: Path, stat_key: str) -> pd.DataFrame | None:
    meta = cache.with_suffix(".json")
    if not (cache.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        if info.get("root") != str(dataset_dir) or info.get("stat_key") != stat_key:
            return None
        manifest = pd.read_csv(cache, keep_default_na=False, dtype={"error": str, "mode": str})
    except (ValueError, OSError):
        return None
    return manifest if list(manifest.columns) == MANIFEST_COLUMNS else None


# --------------------------------------------------------------------------- cache


def cache_paths(fp: str, size: int) -> tuple[Path, Path]:
    stem = interim_dir() / f"images_{size}px_{fp[:16]}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def load_images(dataset: Dataset, size: int, *, rebuild: bool = False) -> np.ndarray:
    """All manifest images as a uint8 array (N, size, size) in manifest order, cached on disk.

    The cache is keyed by size and fingerprint, and its own SHA-256 is checked on every load:
    a stale or corrupt cache is rebuilt with a warning, never silently used.
    """
    arr_path, meta_path = cache_paths(dataset.fingerprint, size)
    if not rebuild:
        arr = _read_cache(arr_path, meta_path, dataset, size)
        if arr is not None:
            return arr
    arr = np.zeros((len(dataset.manifest), size, size), dtype=np.uint8)
    rows = list(zip(dataset.manifest.path, dataset.manifest.error, strict=True))
    for i, (rel, err) in enumerate(tqdm(rows, desc=f"decode {size}px", unit="img", leave=False)):
        if not err:
            arr[i] = load_image(dataset.root / rel, size)
    files.write_with(arr_path, lambda tmp: np.save(tmp, arr, allow_pickle=False))
    meta = {"fingerprint": dataset.fingerprint, "size": size, "shape": list(arr.shape), "sha256": _array_sha(arr)}
    files.write_json(meta_path, meta)
    return arr


def _array_sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _read_cache(arr_path: Path, meta_path: Path, dataset: Dataset, size: int) -> np.ndarray | None:
    if not (arr_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arr = np.load(arr_path, allow_pickle=False)
        ok = (
            meta.get("fingerprint") == dataset.fingerprint
            and meta.get("size") == size
            and list(arr.shape) == [len(dataset.manifest), size, size]
            and arr.dtype == np.uint8
            and meta.get("sha256") == _array_sha(arr)
        )
    except (ValueError, OSError, EOFError) as e:
        warnings.warn(f"image cache {arr_path} unreadable ({e}); rebuilding", stacklevel=3)
        return None
    if not ok:
        warnings.warn(f"image cache {arr_path} is stale or corrupt; rebuilding", stacklevel=3)
        return None
    return arr


def masked_rows(dataset: Dataset, split: str = "Testing") -> pd.DataFrame:
    """Manifest rows of `split` that have an expert tumour mask, with the mask's path (`mask_path`).

    Masks are named after their image: `Testing/glioma/Te-gl_0010.png` belongs to
    `Testing/glioma/Te-gl_0010.jpg`.
    """
    root = masks_dir(dataset.root, required=True)
    rows = dataset.split(split).copy()
    rows["mask_path"] = [root / Path(p).with_suffix(".png") for p in rows.path]
    return rows[[p.is_file() for p in rows.mask_path]]


def load_masks(rows: pd.DataFrame, size: int) -> np.ndarray:
    """Boolean masks (N, size, size) for `masked_rows` output, with the images' geometry."""
    return np.stack([load_mask(p, size) for p in rows.mask_path]) if len(rows) else np.zeros((0, size, size), bool)


def training_masks(dataset: Dataset, rows: np.ndarray, size: int) -> np.ndarray:
    """Masks (len(rows), size, size, uint8 0/1) for the manifest `rows` a model trains on, all zero
    where an image has no expert mask. Only these rows' mask files are opened: a mask-guided run
    cannot read the mask of a validation or test image (a test checks this)."""
    root = masks_dir(dataset.root, required=True)
    out = np.zeros((len(rows), size, size), np.uint8)
    paths = dataset.manifest.path.to_numpy()
    for i, row in enumerate(rows):
        mask_path = root / Path(paths[row]).with_suffix(".png")
        if mask_path.is_file():
            out[i] = load_mask(mask_path, size)
    return out


# --------------------------------------------------------------------------- as a data source


def annotations(dataset_dir: Path) -> pd.DataFrame:
    """The figshare-derived patient id (`group`) and expert mask path (`mask`) of each Kaggle path that
    has them; empty where they have not been derived."""
    csv = patients_csv(dataset_dir)
    if csv is None:
        return pd.DataFrame(columns=["path", "group", "mask"])
    frame = pd.read_csv(csv, dtype=str)
    masks = masks_dir(dataset_dir)
    mask_paths = [masks / Path(p).with_suffix(".png") if masks else None for p in frame.path]
    return pd.DataFrame({"path": frame.path, "group": frame.patient_id,
                         "mask": [str(m) if m is not None and m.is_file() else "" for m in mask_paths]})


def archive_root(folder: Path) -> Path:
    """The folder inside an unpacked archive that holds Training/ and Testing/."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / s).is_dir() for s in SPLITS):
            return candidate
    raise DatasetLayoutError(f"no folder with {' and '.join(SPLITS)}/ found in the downloaded archive")


def fetch(
    url: str | None = None,
    sha256: str | None = None,
    dest: Path | None = None,
    expected: dict | None = EXPECTED_COUNTS,
    force: bool = False,
) -> Path:
    """Make the dataset available (the zip at `url`, else the Kaggle dataset through kagglehub); return its
    folder. Does nothing when it is already found."""
    dest = dest or raw_dir() / DATASET_DIRNAME
    if not force:
        try:
            found = find_dataset()
        except DataNotFoundError:
            found = None
        if found is not None:
            # "Present" means what `manifest` accepts (layout, counts, every image decodes), by the same
            # function: an empty or half-copied folder is named and refused, not declared present.
            load_dataset(found, expected=expected)
            print(f"dataset present at {found}; nothing to download")
            return found
    if dest.exists():
        raise DownloadError(f"{dest} exists but is not a usable dataset; remove it and run `make data` again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Work beside the destination so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as work:
        root = source_root(Path(work), url, sha256, archive_root, KAGGLE_DATASET, "DATA_URL")
        install_tree(root, dest, lambda folder: build_manifest(folder, expected=expected), move=bool(url))
    print(f"dataset installed at {dest}")
    return dest


@dataclass(frozen=True)
class KaggleSource:
    """The Kaggle set as a `source.DataSource`."""

    name: str = "kaggle"
    title: str = "Brain Tumor MRI Dataset (Kaggle)"

    def find(self) -> Path:
        return find_dataset()

    def fetch(self, url: str | None = None, sha256: str | None = None, force: bool = False) -> Path:
        """`fetch`, from `url` or `$DATA_URL` (checked against `$DATA_SHA256`), else kagglehub."""
        return fetch(url=url or os.environ.get("DATA_URL") or None,
                     sha256=sha256 or os.environ.get("DATA_SHA256") or None, force=force)

    def rows(self, root: Path | None = None) -> pd.DataFrame:
        dataset = load_dataset(root)
        m = dataset.manifest[dataset.manifest.error == ""]
        extra = annotations(dataset.root).set_index("path")
        return pd.DataFrame({"path": [str(dataset.root / p) for p in m.path], "label": m.label.to_numpy(),
                             "group": extra.group.reindex(m.path).fillna("").to_numpy(), "collection": self.name,
                             "boxes": "[]", "mask": extra["mask"].reindex(m.path).fillna("").to_numpy()})


SOURCE = KaggleSource()
