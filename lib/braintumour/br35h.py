"""Br35H (Hamada, "Br35H :: Brain Tumor Detection 2020", Kaggle `ahmedhamada0/brain-tumor-detection`):
the external collection, labelled only tumour (`yes/`) or no tumour (`no/`).

Found like the Kaggle set (`data.find_source`): `$BR35H_DIR`, `data/raw/br35h/`,
`../shared/datasets/br35h/`. `make data` fetches it where absent, from Kaggle through kagglehub or
from a zip at `BR35H_URL` (optionally `BR35H_SHA256`), with the Kaggle download's checks: checksum,
CRCs, the layout (`yes/` and `no/`, neither empty), and every image decodes. Only `yes/` and `no/`
are installed (the public release's unlabelled `pred/` is left out). No count is checked: the copy
in `../shared` withholds some `yes` images, and a user's download has them all.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from braintumour import data
from braintumour.config import BR35H_DIRNAME, BR35H_ENV, BR35H_FOLDERS, BR35H_KAGGLE_DATASET, IMAGE_SUFFIXES, raw_dir
from braintumour.download import DownloadError, install_tree, source_root


def candidate_dirs() -> list[tuple[str, Path]]:
    return data.candidate_dirs(BR35H_ENV, BR35H_DIRNAME)


def find_br35h() -> Path:
    """The Br35H folder (holding yes/ and no/); DataNotFoundError saying how to get it."""
    return data.find_source(
        BR35H_ENV,
        BR35H_DIRNAME,
        "Br35H (external collection)",
        f"Put the Kaggle dataset {BR35H_KAGGLE_DATASET} (folders yes/ and no/) at data/raw/{BR35H_DIRNAME}/, "
        f"or point {BR35H_ENV} at it, or run `make data` to download it (kagglehub, or BR35H_URL=<zip url>).",
    )


def list_images(folder: Path) -> list[tuple[str, str]]:
    """(relative path, folder) for every image of yes/ and no/, sorted; checks the layout."""
    missing = [f for f in BR35H_FOLDERS if not (folder / f).is_dir()]
    if missing:
        raise data.DatasetLayoutError(
            f"{folder} does not have Br35H's layout: missing folder(s) {', '.join(f + '/' for f in missing)} "
            f"(expected {' and '.join(f + '/' for f in BR35H_FOLDERS)})"
        )
    rows = [(p.relative_to(folder).as_posix(), f) for f in BR35H_FOLDERS for p in sorted((folder / f).iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    empty = [f for f in BR35H_FOLDERS if not any(label == f for _, label in rows)]
    if empty:
        raise data.DatasetLayoutError(f"{folder}: no image in {', '.join(f + '/' for f in empty)}")
    return rows


def check(folder: Path) -> dict[str, int]:
    """Layout and every image decodes (ImageDecodeError names the file); images per folder."""
    rows = list_images(folder)
    for rel, _ in rows:
        data.decode_grey((folder / rel).read_bytes(), source=folder / rel)
    return {f: sum(label == f for _, label in rows) for f in BR35H_FOLDERS}


def _root(folder: Path) -> Path:
    """The folder inside a download that holds yes/ and no/."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / f).is_dir() for f in BR35H_FOLDERS):
            return candidate
    raise data.DatasetLayoutError(f"no folder with {' and '.join(f + '/' for f in BR35H_FOLDERS)} found in {folder}")


def fetch(url: str | None = None, sha256: str | None = None, dest: Path | None = None, force: bool = False) -> Path:
    """Make Br35H available; return its folder. Does nothing when it is already found."""
    dest = dest or raw_dir() / BR35H_DIRNAME
    if not force:
        try:
            found = find_br35h()
        except data.DataNotFoundError:
            found = None
        if found is not None:
            list_images(found)  # an empty or half-copied folder is named and refused, not declared present
            print(f"Br35H present at {found}; nothing to download")
            return found
    if dest.exists():
        raise DownloadError(f"{dest} exists but is not a usable Br35H folder; remove it and run `make data` again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-br35h-") as work:
        work = Path(work)
        root = source_root(work, url, sha256, _root, BR35H_KAGGLE_DATASET, "BR35H_URL")
        staged = work / "staged"
        staged.mkdir()
        for f in BR35H_FOLDERS:  # only the labelled folders
            (shutil.move if url else shutil.copytree)(root / f, staged / f)
        install_tree(staged, dest, move=True, validate=check)
    labels = [label for _, label in list_images(dest)]
    print(f"Br35H installed at {dest} ({', '.join(f'{f}/ {labels.count(f)}' for f in BR35H_FOLDERS)} images)")
    return dest
