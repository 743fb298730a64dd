"""`make data`: fetch the dataset where it is absent, check it, unpack it into data/raw/ atomically.

Sources: any zip of the Kaggle layout at a URL (`DATA_URL`, optionally with `DATA_SHA256`), or the
Kaggle dataset through kagglehub (needs a Kaggle account and internet). Nothing is left half
unpacked: the archive is downloaded to a temporary file, extracted into a temporary folder,
validated, and only then renamed to `data/raw/brain-tumor-mri/`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from braintumour.config import DATASET_DIRNAME, EXPECTED_COUNTS, KAGGLE_DATASET, SPLITS, raw_dir
from braintumour.data import DataNotFoundError, DatasetLayoutError, build_manifest, find_dataset


class DownloadError(RuntimeError):
    pass


def download_file(url: str, dest: Path, sha256: str | None = None, chunk: int = 1 << 20) -> Path:
    """Stream `url` to `dest` (through a temporary file), checking SHA-256 when given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".download-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                while block := resp.read(chunk):
                    tmp.write(block)
                    h.update(block)
        except (OSError, ValueError) as e:
            tmp_path.unlink(missing_ok=True)
            raise DownloadError(f"download of {url} failed: {e}") from e
    if sha256 and h.hexdigest() != sha256.lower():
        tmp_path.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 {h.hexdigest()} does not match the expected {sha256}")
    tmp_path.replace(dest)
    return dest


def _dataset_root(folder: Path) -> Path:
    """The folder inside an unpacked archive that holds Training/ and Testing/."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / s).is_dir() for s in SPLITS):
            return candidate
    raise DatasetLayoutError(f"no folder with {' and '.join(SPLITS)}/ found in the downloaded archive")


def unpack_zip(archive: Path, into: Path) -> None:
    """Extract a zip after checking every member's CRC and refusing paths that escape `into`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DownloadError(f"{archive}: member {bad} is corrupt (CRC mismatch)")
            for name in zf.namelist():
                target = (into / name).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise DownloadError(f"{archive}: member {name!r} would be written outside the target folder")
            zf.extractall(into)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a valid zip file ({e})") from e


def install_tree(source: Path, dest: Path, expected: dict | None = EXPECTED_COUNTS, move: bool = False) -> Path:
    """Validate a dataset folder (layout, counts, every image decodes) and put it at `dest` atomically."""
    build_manifest(source, expected=expected)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        staged = staging / dest.name
        if move:
            source.rename(staged)
        else:
            shutil.copytree(source, staged)
        staged.rename(dest)  # same filesystem: atomic
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def fetch(
    url: str | None = None,
    sha256: str | None = None,
    dest: Path | None = None,
    expected: dict | None = EXPECTED_COUNTS,
    force: bool = False,
) -> Path:
    """Make the dataset available; return its folder. Does nothing when it is already found."""
    dest = dest or raw_dir() / DATASET_DIRNAME
    if not force:
        try:
            found = find_dataset()
            print(f"dataset present at {found}; nothing to download")
            return found
        except DataNotFoundError:
            pass
    if dest.exists():
        raise DownloadError(f"{dest} exists but is not a usable dataset; remove it and run `make data` again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Work beside the destination so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as work:
        work = Path(work)
        if url:
            print(f"downloading {url}")
            archive = download_file(url, work / "archive.zip", sha256)
            unpack_zip(archive, work / "unpacked")
            root = _dataset_root(work / "unpacked")
        else:
            root = _kaggle_download()
        install_tree(root, dest, expected, move=bool(url))
    print(f"dataset installed at {dest}")
    return dest


def _kaggle_download() -> Path:
    try:
        import kagglehub
    except ImportError as e:
        raise DownloadError("kagglehub is not installed; run `make setup` or give DATA_URL=<zip url>") from e
    try:
        path = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as e:  # kagglehub raises many kinds: network, auth, HTTP
        raise DownloadError(
            f"kagglehub could not download {KAGGLE_DATASET} ({type(e).__name__}: {e}). Log in to Kaggle "
            "(KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), or download the zip yourself and run "
            "`make data DATA_URL=file:///path/to/archive.zip`."
        ) from e
    return _dataset_root(path)
