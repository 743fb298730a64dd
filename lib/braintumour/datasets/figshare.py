"""Expert tumour masks and patient ids for the Kaggle set, derived from the figshare release.

The release: Cheng (2017), "brain tumor dataset", doi:10.6084/m9.figshare.1512427, version 5, CC BY 4.0:
3,064 T1 contrast-enhanced slices of 233 patients, in four zips `brainTumorDataPublic_*.zip` of
MATLAB v7.3 files `<id>.mat` (plus `cvind.mat` and a README). Each holds a struct `cjdata` with
`label` (1 meningioma, 2 glioma, 3 pituitary), `PID` (the patient id as uint16 characters),
`image` (int16) and `tumorMask`. A v7.3 file is HDF5 behind a 512-byte MATLAB header; h5py reads it
(and a plain HDF5 file as well) and gives MATLAB's arrays transposed.

`SOURCE` is the release's annotations as a `source.DataSource`: `fetch` is `ensure`, and its rows are the
Kaggle images that have a patient id, with their masks. `ensure()` is `make data`'s figshare step:

1. where `brain-tumor-mri-masks/` and `brain-tumor-mri-patients.csv` are both beside the Kaggle set,
   it says so and does nothing;
2. it reads figshare's public API listing (name, size, MD5 and URL of every file of version 5) and
   downloads each file resumably into `data/raw/figshare-1512427-v5/` (`resumable.fetch_file`:
   `.part` files, HTTP Range), checking every file's MD5 against the listing;
3. it reads every `.mat` of the part zips (each zip member's CRC is checked as it is read) and
   matches the slice to its Kaggle file (below);
4. only when every slice has exactly one Kaggle file, and no Kaggle file two slices, it writes the
   masks (binary PNG, 0/255, the Kaggle image's size, named after it) into a temporary folder beside
   the Kaggle set and renames it to `brain-tumor-mri-masks/`, and writes the patients csv
   (`path,figshare_id,patient_id`, sorted by path) atomically. Otherwise it writes nothing and stops,
   naming every slice that failed. `match-report.csv` in the download folder lists every slice,
   its Kaggle file, the orientation and the correlation.

Matching. The Kaggle JPEGs are the figshare slices turned and saved as 8-bit images. A slice
(scaled to 8 bits) is compared with the Kaggle images of its class and size in each of the eight
orientations (four quarter turns, each also mirrored): a 32 x 32 block-mean signature picks at most
`MAX_CANDIDATES` candidates with a signature correlation of at least `SIGNATURE_MIN`, and the
full-resolution Pearson correlation of each candidate decides. A match needs a correlation above
`MATCH_THRESHOLD` (0.999). The Kaggle set also holds mirrored copies of about half of the figshare
slices (from its SARTAJ part) that pass the same threshold; a slice with several matches is
resolved to the one in the release's orientation (the orientation of the slices with a single
match, found from the data, not assumed), and reported as ambiguous where that does not single one
out.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from braintumour import files
from braintumour.config import MASKS_DIRNAME, PATIENTS_FILENAME, raw_dir
from braintumour.datasets import images, kaggle
from braintumour.datasets.download import DownloadError
from braintumour.datasets.resumable import fetch_file

ARTICLE = 1512427
VERSION = 5
DOI = "10.6084/m9.figshare.1512427"
API_URL = f"https://api.figshare.com/v2/articles/{ARTICLE}/versions/{VERSION}"
DOWNLOAD_DIRNAME = f"figshare-{ARTICLE}-v{VERSION}"
PART_ZIP = re.compile(r"^brainTumorDataPublic_.*\.zip$")
LABELS: dict[int, str] = {1: "meningioma", 2: "glioma", 3: "pituitary"}

MATCH_THRESHOLD = 0.999  # full-resolution pixel correlation, both 8-bit, same orientation
SIGNATURE_SIZE = 32
SIGNATURE_MIN = 0.995  # candidates for the full-resolution check (two copies of one slice: above 0.9996)
MAX_CANDIDATES = 8
MAX_MAT_BYTES = 64 << 20  # a 512 x 512 slice file is about 0.5 MB; a larger member is refused

# Orientation o: o // 2 quarter turns clockwise of MATLAB's image, then mirrored left-right if o is odd.
ORIENTATIONS: tuple[str, ...] = (
    "as in MATLAB",
    "mirrored",
    "turned 90 degrees clockwise",
    "turned 90 degrees clockwise, mirrored",
    "turned 180 degrees",
    "turned 180 degrees, mirrored",
    "turned 90 degrees anticlockwise",
    "turned 90 degrees anticlockwise, mirrored",
)


class FigshareError(DownloadError):
    """The figshare release could not be fetched, read or matched; the message names the file."""


# --------------------------------------------------------------------------- the release


@dataclass(frozen=True)
class ListedFile:
    name: str
    url: str
    md5: str
    size: int | None


def fetch_listing(api_url: str = API_URL, timeout: float = 60) -> list[ListedFile]:
    """The files of the release, from figshare's public API (`files`: name, download_url, computed_md5)."""
    try:
        with urllib.request.urlopen(api_url, timeout=timeout) as resp:
            article = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FigshareError(
            f"could not read figshare's file listing at {api_url} ({e}); check the connection and run `make data` again"
        ) from e
    out = []
    for item in article.get("files", []) if isinstance(article, dict) else []:
        name = str(item.get("name", ""))
        md5 = item.get("computed_md5") or item.get("supplied_md5")
        if not name or Path(name).name != name or name.startswith(".") or not item.get("download_url") or not md5:
            raise FigshareError(f"{api_url}: a listed file lacks a usable name, download_url or MD5: {item}")
        size = item.get("size")
        out.append(ListedFile(name, str(item["download_url"]), str(md5).lower(), int(size) if size else None))
    if not any(PART_ZIP.match(f.name) for f in out):
        names = [f.name for f in out]
        raise FigshareError(f"{api_url}: the listing names no brainTumorDataPublic_*.zip (files: {names})")
    return out


def download_release(listing: list[ListedFile], folder: Path) -> list[Path]:
    """Download (or keep) every listed file in `folder`, each checked by MD5; the part zips' paths."""
    for f in listing:
        fresh = fetch_file(f.url, folder / f.name, md5=f.md5, size=f.size)
        print(f"  {f.name}: {'downloaded, ' if fresh else 'present, '}MD5 {f.md5} checked")
    return sorted(folder / f.name for f in listing if PART_ZIP.match(f.name))


@dataclass(frozen=True)
class MatFile:
    """One slice as MATLAB shows it (rows x columns), read from a v7.3 `.mat`."""

    label: int
    patient_id: str
    image: np.ndarray  # int16 (or whatever the file holds), MATLAB orientation
    mask: np.ndarray  # bool, same shape


def read_mat(content: bytes, source: str) -> MatFile:
    """Parse one figshare `.mat` (HDF5, with or without MATLAB's 512-byte header); `source` names it in errors."""
    import h5py

    try:
        handle = h5py.File(io.BytesIO(content), "r")
    except OSError as e:
        raise FigshareError(f"{source}: not a readable MATLAB v7.3 (HDF5) file, truncated or corrupt ({e})") from e
    try:
        with handle:
            group = handle["cjdata"]
            label = int(np.asarray(group["label"]).ravel()[0])
            patient_id = "".join(chr(int(c)) for c in np.asarray(group["PID"]).ravel()).strip()
            # HDF5 keeps MATLAB's column-major arrays: h5py shows them transposed.
            image = np.asarray(group["image"]).T
            mask = np.asarray(group["tumorMask"]).T != 0
    except (KeyError, OSError, ValueError, IndexError, TypeError) as e:
        raise FigshareError(f"{source}: cannot read cjdata.label/PID/image/tumorMask ({type(e).__name__}: {e})") from e
    if label not in LABELS:
        raise FigshareError(f"{source}: cjdata.label is {label}, not one of {sorted(LABELS)}")
    if image.ndim != 2 or mask.shape != image.shape or min(image.shape) < 8:
        raise FigshareError(f"{source}: image {image.shape} and tumorMask {mask.shape} are not one 2-D slice")
    if not patient_id:
        raise FigshareError(f"{source}: cjdata.PID is empty")
    return MatFile(label, patient_id, image, mask)


def iter_release(part_zips: list[Path]):
    """(figshare id, source name, MatFile) for every `.mat` in the part zips, in zip order."""
    seen: dict[int, str] = {}
    for archive in part_zips:
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as e:
            raise FigshareError(f"{archive.name}: not a valid zip file ({e})") from e
        with zf:
            members = [i for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith(".mat")
                       and not i.filename.startswith("__MACOSX")]
            if not members:
                raise FigshareError(f"{archive.name}: holds no .mat file")
            for info in members:
                source = f"{archive.name}:{info.filename}"
                stem = Path(info.filename).stem
                if not stem.isdigit():
                    raise FigshareError(f"{source}: not named <number>.mat")
                if info.file_size > MAX_MAT_BYTES:
                    raise FigshareError(
                        f"{source}: {info.file_size:,} bytes, over the {MAX_MAT_BYTES:,} limit for one slice")
                fid = int(stem)
                if fid in seen:
                    raise FigshareError(f"{source}: figshare id {fid} appears twice (also {seen[fid]})")
                seen[fid] = source
                try:
                    content = zf.read(info)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                    raise FigshareError(
                        f"{source}: corrupt zip member ({e}); delete {archive} and run `make data`") from e
                yield fid, source, read_mat(content, source)


# --------------------------------------------------------------------------- matching


def orient(a: np.ndarray, o: int) -> np.ndarray:
    """Orientation `o` of a 2-D array (see ORIENTATIONS)."""
    r = np.rot90(a, -(o // 2))
    return r[:, ::-1] if o % 2 else r


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a slice linearly to 0..255 (its minimum to 0, its maximum to 255)."""
    a = image.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def signature(a: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 32 x 32 block-mean signature of an 8-bit image."""
    small = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((SIGNATURE_SIZE,) * 2, Image.Resampling.BOX),
                       np.float32).ravel()
    small -= small.mean()
    n = float(np.linalg.norm(small))
    return small / n if n > 0 else small


def _unit(a: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(a, dtype=np.float64).ravel()
    x -= x.mean()
    n = float(np.sqrt(x @ x))
    return x / n if n > 0 else x


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped images."""
    return float(_unit(a) @ _unit(b))


@dataclass
class KaggleIndex:
    """Signatures of the Kaggle images of the tumour classes, with class and (height, width)."""

    root: Path
    paths: list[str]
    classes: np.ndarray
    shapes: list[tuple[int, int]]
    signatures: np.ndarray

    @classmethod
    def build(cls, dataset_dir: Path) -> KaggleIndex:
        rows = [(rel, c) for rel, _, c in kaggle.list_images(dataset_dir) if c in LABELS.values()]
        sigs, shapes = [], []
        for rel, _ in tqdm(rows, desc="kaggle signatures", unit="img", leave=False):
            grey = np.asarray(images.decode_grey((dataset_dir / rel).read_bytes(), source=dataset_dir / rel))
            shapes.append(grey.shape)
            sigs.append(signature(grey))
        arr = np.stack(sigs) if sigs else np.zeros((0, SIGNATURE_SIZE**2), np.float32)
        return cls(dataset_dir, [r for r, _ in rows], np.array([c for _, c in rows]), shapes, arr)

    def __post_init__(self) -> None:
        self.pixels = lru_cache(maxsize=256)(self._pixels)
        groups: dict[tuple[str, tuple[int, int]], list[int]] = {}
        for j, key in enumerate(zip(self.classes.tolist(), self.shapes, strict=True)):
            groups.setdefault(key, []).append(j)
        self.groups = {k: np.array(v) for k, v in groups.items()}
        self.group_signatures = {k: np.ascontiguousarray(self.signatures[v]) for k, v in self.groups.items()}

    def _pixels(self, j: int) -> np.ndarray:
        path = self.root / self.paths[j]
        return np.asarray(images.decode_grey(path.read_bytes(), source=path))


@dataclass
class Slice:
    figshare_id: int
    source: str
    class_name: str
    patient_id: str
    shape: tuple[int, int]
    mask_z: bytes  # the MATLAB-orientation mask, bit-packed and compressed
    matches: list[tuple[int, int, float]] = field(default_factory=list)  # (kaggle index, orientation, r)
    best: tuple[int, int, float] | None = None  # best candidate, matched or not

    def mask(self) -> np.ndarray:
        bits = np.unpackbits(np.frombuffer(zlib.decompress(self.mask_z), np.uint8))
        return bits[: self.shape[0] * self.shape[1]].reshape(self.shape).astype(bool)


def match_slice(index: KaggleIndex, fid: int, source: str, mat: MatFile) -> Slice:
    """Candidates by signature, then every candidate's full-resolution correlation."""
    cls = LABELS[mat.label]
    img = to_uint8(mat.image)
    packed = zlib.compress(np.packbits(mat.mask.ravel()).tobytes())
    out = Slice(fid, source, cls, mat.patient_id, mat.image.shape, packed)
    candidates = []
    by_shape: dict[tuple[int, int], list[int]] = {}
    for o in range(8):
        by_shape.setdefault(orient(img, o).shape, []).append(o)
    for shape, turns in by_shape.items():  # one product per shape: all its orientations at once
        key = (cls, shape)
        if key not in index.groups:
            continue
        sims = index.group_signatures[key] @ np.stack([signature(orient(img, o)) for o in turns], axis=1)
        for h, t in zip(*np.nonzero(sims >= SIGNATURE_MIN), strict=True):
            candidates.append((float(sims[h, t]), int(index.groups[key][h]), turns[t]))
    units: dict[int, np.ndarray] = {}
    for _, j, o in sorted(candidates, reverse=True)[:MAX_CANDIDATES]:
        if o not in units:
            units[o] = _unit(orient(img, o))
        r = float(units[o] @ _unit(index.pixels(j)))
        if out.best is None or r > out.best[2]:
            out.best = (j, o, r)
        if r > MATCH_THRESHOLD:
            out.matches.append((j, o, r))
    return out


@dataclass
class Matching:
    """Every slice with its outcome; `problems` names each slice that is unmatched, ambiguous or in conflict."""

    slices: list[Slice]
    chosen: dict[int, tuple[int, int, float]]  # figshare id -> (kaggle index, orientation, r)
    orientation: int | None
    resolved: int
    problems: list[str]
    report: pd.DataFrame


def resolve(slices: list[Slice], index: KaggleIndex) -> Matching:
    """One Kaggle file per slice: single matches stand; several are resolved by the release's orientation."""
    single = [s.matches[0] for s in slices if len(s.matches) == 1]
    votes = Counter(o for _, o, _ in single)
    orientation = votes.most_common(1)[0][0] if votes else None
    chosen: dict[int, tuple[int, int, float]] = {}
    status: dict[int, str] = {}
    problems: list[str] = []
    resolved = 0
    for s in slices:
        if len(s.matches) == 1:
            chosen[s.figshare_id], status[s.figshare_id] = s.matches[0], "matched"
        elif not s.matches:
            status[s.figshare_id] = "unmatched"
            best = (f"best {index.paths[s.best[0]]} ({ORIENTATIONS[s.best[1]]}) at r = {s.best[2]:.4f}"
                    if s.best else f"no {s.class_name} image of size {s.shape[1]}x{s.shape[0]} is even similar")
            problems.append(f"{s.source}: matches no Kaggle file above r = {MATCH_THRESHOLD} ({best})")
        else:
            fitting = [m for m in s.matches if m[1] == orientation]
            if len(fitting) == 1:
                chosen[s.figshare_id], status[s.figshare_id] = fitting[0], "resolved by orientation"
                resolved += 1
            else:
                status[s.figshare_id] = "ambiguous"
                listed = ", ".join(f"{index.paths[j]} ({ORIENTATIONS[o]}, r = {r:.4f})" for j, o, r in s.matches)
                problems.append(f"{s.source}: ambiguous, matches {listed}")
    claimed: dict[int, list[Slice]] = {}
    for s in slices:
        if s.figshare_id in chosen:
            claimed.setdefault(chosen[s.figshare_id][0], []).append(s)
    for j, owners in claimed.items():
        if len(owners) > 1:
            for s in owners:
                status[s.figshare_id] = "conflict"
                chosen.pop(s.figshare_id)
            names = ", ".join(s.source for s in owners)
            problems.append(f"{index.paths[j]}: matched by {len(owners)} slices ({names})")
    report = pd.DataFrame([{
        "source": s.source, "figshare_id": s.figshare_id, "class_name": s.class_name, "patient_id": s.patient_id,
        "status": status[s.figshare_id],
        "path": index.paths[chosen[s.figshare_id][0]] if s.figshare_id in chosen else "",
        "orientation": ORIENTATIONS[chosen[s.figshare_id][1]] if s.figshare_id in chosen else "",
        "correlation": round(chosen[s.figshare_id][2], 6) if s.figshare_id in chosen else (
            round(s.best[2], 6) if s.best else None),
        "matches": len(s.matches),
    } for s in slices])
    return Matching(slices, chosen, orientation, resolved, problems, report)


def match_release(part_zips: list[Path], index: KaggleIndex) -> Matching:
    slices = [match_slice(index, fid, source, mat)
              for fid, source, mat in tqdm(iter_release(part_zips), desc="figshare slices", unit="slice", leave=False)]
    return resolve(slices, index)


# --------------------------------------------------------------------------- outputs


def write_masks(matching: Matching, index: KaggleIndex, dest: Path) -> Path:
    """Every chosen slice's mask, turned like its Kaggle file, as `dest/<split>/<class>/<stem>.png`
    (0/255): written into a temporary folder beside `dest`, renamed to `dest` when complete."""
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        for s in matching.slices:
            if s.figshare_id not in matching.chosen:
                continue
            j, o, _ = matching.chosen[s.figshare_id]
            mask = orient(s.mask(), o)
            if mask.shape != index.shapes[j]:  # matching compares equal shapes only; guard all the same
                raise FigshareError(f"{s.source}: mask {mask.shape} differs from {index.paths[j]} {index.shapes[j]}")
            out = staging / Path(index.paths[j]).with_suffix(".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(out)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def patients_frame(matching: Matching, index: KaggleIndex) -> pd.DataFrame:
    rows = [(index.paths[matching.chosen[s.figshare_id][0]], s.figshare_id, s.patient_id)
            for s in matching.slices if s.figshare_id in matching.chosen]
    return pd.DataFrame(rows, columns=["path", "figshare_id", "patient_id"]).sort_values("path", ignore_index=True)


def ensure(dataset_dir: Path | None = None, *, api_url: str | None = None, download_dir: Path | None = None) -> Path:
    """`make data`'s figshare step (see the module docstring); returns the masks folder."""
    dataset_dir = (dataset_dir or kaggle.find_dataset()).resolve()
    parent = dataset_dir.parent
    masks, csv = parent / MASKS_DIRNAME, parent / PATIENTS_FILENAME
    if masks.is_dir() and csv.is_file():
        print(f"expert masks and patient ids present beside {dataset_dir} ({masks.name}/, {csv.name}); "
              "nothing to derive")
        return masks
    if not os.access(parent, os.W_OK):
        raise FigshareError(
            f"cannot write {MASKS_DIRNAME}/ and {PATIENTS_FILENAME} beside {dataset_dir} (read-only folder): "
            "put the Kaggle set in a writable place (data/raw/, or BRAIN_MRI_DIR) and run `make data` again"
        )
    folder = download_dir or raw_dir() / DOWNLOAD_DIRNAME
    api_url = api_url or API_URL
    print(f"figshare release (Cheng 2017, doi:{DOI}, version {VERSION}): listing {api_url}")
    listing = fetch_listing(api_url)
    folder.mkdir(parents=True, exist_ok=True)
    files.write_json(folder / "listing.json", [f.__dict__ for f in listing])
    part_zips = download_release(listing, folder)
    print(f"matching the figshare slices to the Kaggle set at {dataset_dir} (r > {MATCH_THRESHOLD})")
    index = KaggleIndex.build(dataset_dir)
    matching = match_release(part_zips, index)
    report_path = folder / "match-report.csv"
    files.write_text(report_path, matching.report.to_csv(index=False, lineterminator="\n"))
    if matching.problems:
        shown = "\n".join(f"  - {p}" for p in matching.problems)
        raise FigshareError(
            f"{len(matching.problems)} figshare slice(s) could not be matched to exactly one Kaggle file; "
            f"nothing was written (every slice: {report_path}):\n{shown}"
        )
    n = len(matching.slices)
    print(f"  {n} slices, every one matched to one Kaggle file; orientation of the release: "
          f"{ORIENTATIONS[matching.orientation] if matching.orientation is not None else 'none'}; "
          f"{matching.resolved} slice(s) also matched a mirrored copy elsewhere in the Kaggle set, "
          "resolved to the file in that orientation")
    if not masks.is_dir():
        write_masks(matching, index, masks)
        print(f"  wrote {masks} ({n} masks)")
    if not csv.is_file():
        frame = patients_frame(matching, index)
        files.write_text(csv, frame.to_csv(index=False, lineterminator="\n"))
        print(f"  wrote {csv} ({len(frame)} images, {frame.patient_id.nunique()} patients)")
    print(f"  the downloads in {folder} may be deleted now")
    return masks


@dataclass(frozen=True)
class FigshareSource:
    """The expert masks and patient ids as a `source.DataSource`; its folder is the masks folder."""

    name: str = "figshare"
    title: str = f"Expert tumour masks and patient ids (figshare release, doi:{DOI})"

    def find(self) -> Path:
        dataset_dir = kaggle.find_dataset()
        kaggle.patients_csv(dataset_dir, required=True)
        return kaggle.masks_dir(dataset_dir, required=True)

    def fetch(self, api_url: str | None = None) -> Path:
        """`ensure`, listing the release at `api_url`, else `$FIGSHARE_API_URL`, else figshare's API."""
        return ensure(api_url=api_url or os.environ.get("FIGSHARE_API_URL") or None)

    def rows(self, root: Path | None = None) -> pd.DataFrame:
        """The Kaggle rows (`root` is the Kaggle set's folder) that have a patient id."""
        out = kaggle.SOURCE.rows(root)
        return out[out.group != ""].assign(collection=self.name).reset_index(drop=True)


SOURCE = FigshareSource()
