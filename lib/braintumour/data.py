"""Finding, checking, fingerprinting, decoding and caching the dataset.

The dataset folder is read-only input. Everything derived from it (manifest, decoded arrays) is a
cache under `data/interim/`, keyed by the data fingerprint, and rebuilt when stale or corrupt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
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

MANIFEST_COLUMNS = ["path", "split", "label", "class_name", "sha256", "width", "height", "mode", "error"]
# Refuse absurd images before decoding them: 20k x 20k would need gigabytes. One limit, on the pixels
# a file's header announces (all frames), for every decoder: PIL's formats and DICOM (`check_image_size`).
MAX_PIXELS = 8192 * 8192
# Nor is a file read into memory whole when it is larger than any one slice can be (8192 x 8192 at 16
# bits, uncompressed, is 128 MiB).
MAX_FILE_BYTES = 256 * 1024 * 1024
# The formats PIL may open (it sniffs the content, not the suffix): the slice formats this project
# reads, and no format whose plugin hands the file to another program (EPS runs Ghostscript).
PIL_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")  # JPEG includes MPO (camera multi-picture) files


class DataNotFoundError(FileNotFoundError):
    """No dataset folder exists in any of the places the project looks."""


class DatasetLayoutError(ValueError):
    """The dataset folder exists but does not have the expected layout or counts."""


class ImageDecodeError(ValueError):
    """One image could not be decoded; the message names the file and the reason."""


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


def _header(path: Path, data: bytes) -> tuple[int, int, str]:
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            return im.width, im.height, im.mode
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{path}: not a readable image ({unsupported_format(data)})") from e
    except Exception as e:  # decoders raise SyntaxError, struct.error and more for broken headers
        raise ImageDecodeError(f"{path}: not a readable image ({decoder_reason(e)})") from e


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


# --------------------------------------------------------------------------- decoding


def decode_grey(data: bytes, *, source: str | Path = "<bytes>") -> Image.Image:
    """Decode image bytes to one greyscale convention: 8-bit 'L', black background.

    - Orientation: the EXIF orientation tag is applied in every container that carries one (JPEG,
      PNG's eXIf chunk, TIFF).
    - RGB: ITU-R 601 luma (PIL's 'L' conversion); the MRI slices are grey stored as RGB.
    - RGBA / LA / palette with transparency: composited onto black, the MRI background colour.
    - Wider, signed or float pixels ('I;16', 'I', 'F'): `scale_to_uint8`, the rule DICOM follows too.
    - One slice per file: a multi-page TIFF or animated PNG is refused (`check_frames`).

    Every failure, whatever the decoder raises, is an ImageDecodeError naming `source`.
    """
    im = decode_image(data, source=source)
    with _named_decode_errors(data, source):
        return to_grey(im, source=source)


def decode_image(data: bytes, *, source: str | Path = "<bytes>") -> Image.Image:
    """Image bytes decoded as stored (mode, orientation tag and all), after every guard: the size
    before any pixel is decoded, one frame, at least 8 x 8. `decode_grey` turns it into the convention;
    `predict` also looks at its colour first, so that a file is decoded once."""
    with _named_decode_errors(data, source):
        im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
        check_image_size(im.width, im.height, source=source)
        check_frames(getattr(im, "n_frames", 1), im.format, source=source)
        im.load()
        if im.width < 8 or im.height < 8:
            raise ImageDecodeError(f"{source}: image is {im.width}x{im.height}, too small to be an MRI slice")
        return im


@contextlib.contextmanager
def _named_decode_errors(data: bytes, source: str | Path) -> Iterator[None]:
    """Whatever a decoder raises becomes one ImageDecodeError naming `source`."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{source}: image refused, too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{source}: cannot identify image ({unsupported_format(data, source)})") from e
    except Exception as e:  # decoders raise SyntaxError, struct.error, EOFError and more for broken files
        raise ImageDecodeError(f"{source}: cannot decode image ({decoder_reason(e)})") from e


def check_image_size(width: int, height: int, frames: int = 1, *, source: str | Path = "<bytes>") -> None:
    """The size guard of every decoder, applied to the header's numbers before any pixel is decoded:
    ImageDecodeError when the square the image is padded to (`square_resize`), side x side x frames,
    exceeds MAX_PIXELS. The padded square, not width x height, is what gets allocated: a 60000 x 10
    image is 600,000 pixels but pads to 3.6 billion."""
    frames, side = max(int(frames), 1), max(int(width), int(height))
    if side * side * frames > MAX_PIXELS:
        shape = f"{width}x{height}" + (f" (padded to {side}x{side})" if width != height else "")
        shape += f" x {frames} frames" if frames > 1 else ""
        raise ImageDecodeError(
            f"{source}: image is {shape}, over the {MAX_PIXELS:,}-pixel limit; refused rather than decoded "
            "(downscale it first)"
        )


def check_frames(frames: int, container: str | None, *, source: str | Path = "<bytes>") -> None:
    """One rule for every container (multi-page TIFF, animated PNG, multi-frame DICOM): a file is one
    slice. Classifying only the first frame would answer for a slice the user may not have meant."""
    if frames > 1:
        how = ("pydicom.dcmread(path).pixel_array[k]" if container == "DICOM"
               else "PIL: im = Image.open(path); im.seek(k); im.save('slice.png')")
        raise ImageDecodeError(
            f"{source}: {container or 'file'} holds {frames} frames; predict classifies one slice per file: "
            f"save the slice to classify (frame k, 0 to {frames - 1}) as its own file ({how})"
        )


def scale_to_uint8(values: np.ndarray, *, source: str | Path = "<bytes>") -> np.ndarray:
    """Wide, signed or float pixel values -> uint8, one rule for every container (16/32-bit PNG and
    TIFF, float TIFF, DICOM after its rescale): values must be finite; negative values are shifted
    up so the minimum is zero (zero stays zero otherwise); then scaled so the maximum is 255.

    A non-finite value would make the maximum NaN and the whole image zero, so it is refused, never
    scaled. Computed in float64, in place to bound memory (an 8192 x 8192 slice is 0.5 GB): a float64
    `values` is overwritten, so callers pass their own temporary."""
    integer = np.issubdtype(values.dtype, np.integer)
    arr = values.astype(np.float64, copy=False)
    if not integer:
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ImageDecodeError(f"{source}: {bad:,} pixel value(s) are not finite (NaN or infinity); refused "
                                   "rather than scaled")
    low = arr.min()
    if low < 0:
        arr -= low
    top = arr.max()
    if not np.isfinite(top):
        raise ImageDecodeError(f"{source}: pixel values span more than a float can hold; refused")
    scale = 255.0 / top if top > 0 else 1.0
    if np.isfinite(scale):
        arr *= scale
    else:  # a subnormal maximum, whose reciprocal overflows: the quotient does not
        arr /= top
        arr *= 255.0
    np.round(arr, out=arr)
    return arr.astype(np.uint8)


def unsupported_format(data: bytes, source: str | Path = "<bytes>") -> str:
    """What a file PIL cannot identify is, in words, for the refusal (never PIL's repr of a buffer).
    An animated GIF gets the frames rule's message, as every multi-frame container does."""
    frames = 1
    if data[:4] == b"GIF8":
        with contextlib.suppress(Exception), Image.open(io.BytesIO(data), formats=("GIF",)) as im:
            frames = im.n_frames
    check_frames(frames, "GIF", source=source)
    name = next((name for magic, at, name in _FOREIGN_MAGIC if data[at : at + len(magic)] == magic), None)
    what = f"a {name} file" if name else "not a JPEG, PNG, TIFF, BMP or DICOM file"
    return f"{what}; predict reads JPEG, PNG, TIFF, BMP and DICOM slices"


# Formats users plausibly hand over by mistake, recognised only to name them in the refusal.
_FOREIGN_MAGIC = (
    (b"GIF8", 0, "GIF"), (b"n+1\0", 344, "NIfTI-1"), (b"ni1\0", 344, "NIfTI-1"), (b"n+2\0", 4, "NIfTI-2"),
    (b"\x1f\x8b", 0, "gzip-compressed (a .nii.gz volume?)"), (b"%!PS", 0, "PostScript"), (b"%PDF", 0, "PDF"),
    (b"\0\0\0\x0cjP  ", 0, "JPEG 2000"), (b"RIFF", 0, "RIFF (WebP?)"), (b"PK\x03\x04", 0, "zip"),
)
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def decoder_reason(e: BaseException) -> str:
    """The first line of a decoder's exception, for a one-line refusal: a Python object's repr in it
    (`<_io.BytesIO object at 0x...>`) is replaced by "the file", and the exception's type is named
    where its message alone would not say what went wrong (an OSError's does)."""
    lines = _OBJECT_REPR.sub("the file", str(e)).strip().splitlines()
    text = lines[0] if lines else ""
    return text if text and isinstance(e, OSError) else f"{type(e).__name__}: {text}".rstrip(": ")


def read_image_bytes(path: str | Path) -> bytes:
    """A file's bytes, for decoding. ImageDecodeError naming it when it is missing, not a regular
    file (a FIFO or device would block or never end), empty, over MAX_FILE_BYTES, or unreadable."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ImageDecodeError(f"{path}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageDecodeError(
                f"{path}: file is {st.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one slice; refused"
            )
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageDecodeError(f"{path}: no such file") from e
    except OSError as e:
        raise ImageDecodeError(f"{path}: cannot read file ({e.strerror or e})") from e
    if not data:
        raise ImageDecodeError(f"{path}: file is empty")
    return data


def to_grey(im: Image.Image, *, source: str | Path = "<bytes>") -> Image.Image:
    """Any PIL image -> 8-bit greyscale ('L') following `decode_grey`'s convention."""
    ImageOps.exif_transpose(im, in_place=True)  # no orientation tag (most files): nothing is copied
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    if im.mode.startswith("I") or im.mode == "F":
        return Image.fromarray(scale_to_uint8(np.asarray(im), source=source), mode="L")
    return im.convert("L")


def square_resize(im: Image.Image, size: int) -> np.ndarray:
    """Pad to a centred square with black (keeps anatomy's proportions), then resize to size x size.

    The same geometry is applied to masks (`resample=NEAREST`) so heatmaps and masks line up.
    """
    return np.asarray(_square_resize(im, size, Image.Resampling.BILINEAR), dtype=np.uint8)


def _square_resize(im: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    side = max(im.width, im.height)
    if im.width != im.height:
        canvas = Image.new(im.mode, (side, side), 0)
        canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        im = canvas
    # PIL's bilinear filter widens its support when shrinking, so it antialiases.
    return im.resize((size, size), resample)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read one image file into a (size, size) uint8 array with the training preprocessing."""
    path = Path(path)
    return square_resize(decode_grey(read_image_bytes(path), source=path), size)


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """Binary mask (bool, size x size) with the same pad-and-resize geometry as its image."""
    with Image.open(path, formats=PIL_FORMATS) as im:
        check_image_size(im.width, im.height, source=path)
        grey = im.convert("L")
    resized = _square_resize(grey, size, Image.Resampling.BILINEAR)
    return np.asarray(resized) >= 128


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
