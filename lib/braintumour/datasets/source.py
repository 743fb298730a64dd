"""Data sources, found, fetched and loaded the same way for each.

`DataSource` is what every source offers (`datasets.SOURCES`: the Kaggle set, the figshare masks and
patient ids, each external collection): `find`, `fetch` (what `make data` calls) and `rows` (`ROWS`).

An external collection's `Source` is found like the Kaggle set (`$<ENV>`, `data/raw/<dirname>/`,
`../shared/datasets/<dirname>/`), fetched by `make data` where absent (a zip at `<URL_VAR>`, optionally
checked against its SHA-256 in `<SHA_VAR>`; else the Kaggle dataset through kagglehub, or the source's
public archive), with the Kaggle download's checks: checksum, the zip's sizes, the layout, and every image
decodes. It loads as a `kaggle.Dataset` whose manifest adds, per image: `group` (patient or subject where
the file names tell, else empty: near-duplicate clusters group those, `groups.collection_groups`),
`collection` and `boxes` (tumour boxes as JSON, where the collection has them). No count is checked
anywhere: releases change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from braintumour.config import CLASSES, PARTIAL_LABEL, raw_dir
from braintumour.datasets import images, kaggle
from braintumour.datasets.download import DownloadError, install_tree, source_root

NOTUMOR = CLASSES.index("notumor")
TUMOUR = PARTIAL_LABEL  # a tumour of unknown type
LABEL_NAMES = {**dict(enumerate(CLASSES)), TUMOUR: "tumour"}
# What a source's lister returns, one row per image; `look` is the collection's own subdivision
# (a plane, the collection) and becomes the manifest's `split`; `class_name` its own word for the label.
ROW_COLUMNS = ["path", "look", "label", "class_name", "group", "boxes"]
EXTRA_COLUMNS = ["group", "collection", "boxes"]
# What every source's `rows` returns, one row per image: absolute paths, the label (a class index, TUMOUR
# or NOTUMOR), the group (patient or near-duplicate cluster, "" where unknown), the collection, tumour
# boxes as JSON ("[]" where none) and the expert mask's path ("" where none).
ROWS = ["path", "label", "group", "collection", "boxes", "mask"]


@runtime_checkable
class DataSource(Protocol):
    """A source of images: `find` its folder (DataNotFoundError saying where to put it and how to get it),
    `fetch` it where absent (with no argument, from its URL in the environment, else its public home),
    and load it as `ROWS`."""

    name: str
    title: str

    def find(self) -> Path: ...

    def fetch(self) -> Path: ...

    def rows(self, root: Path | None = None) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Source:
    """A collection: where it lives, how to list its images and how to fetch it."""

    name: str  # the id metrics files use
    title: str
    dirname: str
    env: str
    kaggle_dataset: str | None
    url_var: str
    list_rows: Callable[[Path], pd.DataFrame]  # ROW_COLUMNS; raises DatasetLayoutError when the layout is wrong
    root_in: Callable[[Path], Path]  # the data's folder inside a download
    members: Callable[[Path], list[str]]  # the files of a download's data folder to install
    public_archive: str | None = None  # fetched when no URL is given and there is no Kaggle dataset

    @property
    def sha_var(self) -> str:
        return self.url_var.removesuffix("_URL") + "_SHA256"

    def how(self) -> str:
        where = (f"the Kaggle dataset {self.kaggle_dataset}" if self.kaggle_dataset
                 else f"its public archive {self.public_archive}")
        return (f"Put {where} at data/raw/{self.dirname}/, or point {self.env} at it, or run `make data` "
                f"to download it ({'kagglehub, or ' if self.kaggle_dataset else ''}{self.url_var}=<zip url>).")

    def candidate_dirs(self) -> list[tuple[str, Path]]:
        return kaggle.candidate_dirs(self.env, self.dirname)

    def find(self) -> Path:
        """The collection's folder; DataNotFoundError saying where it was looked for and how to get it."""
        return kaggle.find_source(self.env, self.dirname, self.title, self.how())

    def check(self, folder: Path) -> dict[str, int]:
        """The layout, and every image decodes (ImageDecodeError names the file); images per label."""
        rows = self.list_rows(folder)
        if rows.empty:
            raise kaggle.DatasetLayoutError(f"{folder}: no image of {self.title} found")
        for rel in rows.path:
            images.decode_grey(images.read_image_bytes(folder / rel), source=folder / rel)
        return {LABEL_NAMES[k]: int(n) for k, n in rows.label.value_counts().sort_index().items()}

    def fetch(self, url: str | None = None, sha256: str | None = None, dest: Path | None = None,
              force: bool = False) -> Path:
        """Make the collection available and return its folder; nothing is done when it is found. The zip
        is `url`, else `$<url_var>` (checked against `$<sha_var>` where set), else the Kaggle dataset or
        the public archive."""
        url = url or os.environ.get(self.url_var) or None
        sha256 = sha256 or os.environ.get(self.sha_var) or None
        dest = dest or raw_dir() / self.dirname
        if not force:
            found = self._found()
            if found is not None:
                self.list_rows(found)  # an empty or half-copied folder is named and refused
                print(f"{self.title} present at {found}; nothing to download")
                return found
        if dest.exists():
            raise DownloadError(f"{dest} exists but is not a usable {self.title} folder; remove it and run "
                                "`make data` again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = url or (None if self.kaggle_dataset else self.public_archive)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".fetch-{self.name}-") as work:
            work = Path(work)
            root = source_root(work, url, sha256, self.root_in, self.kaggle_dataset or "", self.url_var)
            staged = work / "staged"
            for rel in self.members(root):
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, staged / rel)
            install_tree(staged, dest, move=True, validate=self.check)
        counts = self.check(dest)
        print(f"{self.title} installed at {dest} ({', '.join(f'{k} {n}' for k, n in counts.items())} images)")
        return dest

    def _found(self) -> Path | None:
        try:
            return self.find()
        except kaggle.DataNotFoundError:
            return None

    def load(self, root: Path | None = None) -> kaggle.Dataset:
        """The collection as a `kaggle.Dataset` (so the decoded-image cache and the fingerprint work as
        for the Kaggle set): split = look, plus `EXTRA_COLUMNS`."""
        root = (root or self.find()).resolve()
        rows = self.list_rows(root)
        records = []
        for r in rows.itertuples(index=False):
            raw = images.read_image_bytes(root / r.path)
            width, height, mode = images._header(root / r.path, raw)
            records.append((r.path, r.look, r.label, r.class_name, hashlib.sha256(raw).hexdigest(), width,
                            height, mode, "", r.group, self.name, r.boxes))
        manifest = pd.DataFrame(records, columns=kaggle.MANIFEST_COLUMNS + EXTRA_COLUMNS)
        return kaggle.Dataset(root, manifest, kaggle.fingerprint(manifest))

    def rows(self, root: Path | None = None) -> pd.DataFrame:
        dataset = self.load(root)
        m = dataset.manifest
        return pd.DataFrame({"path": [str(dataset.root / p) for p in m.path], "label": m.label, "group": m.group,
                             "collection": m.collection, "boxes": m.boxes, "mask": ""})[ROWS]


def folder_holding(predicate: Callable[[Path], bool], what: str) -> Callable[[Path], Path]:
    """A `root_in`: the first folder of a download (itself, then its sub-folders in sorted order)
    for which `predicate` holds."""
    def root_in(folder: Path) -> Path:
        for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
            if predicate(candidate):
                return candidate
        raise kaggle.DatasetLayoutError(f"no folder holding {what} found in {folder}")
    return root_in


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def rows_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
