"""How every source is fetched by `make data`: a zip at a URL (optionally checked against its SHA-256),
or a Kaggle dataset through kagglehub (needs a Kaggle account and internet), unpacked and installed
atomically. Nothing is left half unpacked: the archive is downloaded to a temporary file, extracted
into a temporary folder, validated by the source's own check, and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path


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


# The archive guard (decompression bombs). The Kaggle zip is about 150 MB and unpacks to about as much
# (JPEGs do not compress); the largest source the project reads is under 1 GB. A member's ratio is
# checked only above MIN_RATIO_CHECK bytes, where a high ratio cannot be a small text file's.
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_RATIO = 100
MIN_RATIO_CHECK = 1024**2


def check_archive(zf: zipfile.ZipFile, archive: str | Path, into: Path, max_bytes: int | None = None,
                  max_ratio: float | None = None) -> None:
    """Refuse, from the central directory and before anything is written: members whose path escapes
    `into`, a total uncompressed size over `max_bytes`, a member that expands more than `max_ratio` times
    (defaults: MAX_UNPACKED_BYTES, MAX_RATIO)."""
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_RATIO if max_ratio is None else max_ratio
    total = 0
    for info in zf.infolist():
        target = (into / info.filename).resolve()
        if not target.is_relative_to(into.resolve()):
            raise DownloadError(f"{archive}: member {info.filename!r} would be written outside the target folder")
        total += info.file_size
        if info.file_size > MIN_RATIO_CHECK and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DownloadError(
                f"{archive}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f} times "
                f"({info.compress_size:,} to {info.file_size:,} bytes), over the limit of {max_ratio:g}; refused "
                "as a likely decompression bomb"
            )
    if total > max_bytes:
        raise DownloadError(
            f"{archive}: unpacks to {total:,} bytes, over the {max_bytes:,}-byte limit; refused before unpacking"
        )


def unpack_zip(archive: Path, into: Path, max_bytes: int | None = None, max_ratio: float | None = None,
               chunk: int = 1 << 20, name: str | None = None) -> None:
    """Extract a zip after `check_archive`, streaming each member and counting what it writes, so that a
    member whose header lies about its size is stopped (and every member's CRC checked) as it is read.
    On any refusal, what was written is removed. Messages name `name` (the URL, say), else `archive`."""
    label = name or str(archive)
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    created = not into.exists()
    try:
        with zipfile.ZipFile(archive) as zf:
            check_archive(zf, label, into, max_bytes, max_ratio)
            written = 0
            for info in zf.infolist():
                target = into / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                member = 0
                with zf.open(info) as src, open(target, "wb") as dst:
                    while block := src.read(chunk):
                        member += len(block)
                        written += len(block)
                        if member > info.file_size or written > max_bytes:
                            raise DownloadError(
                                f"{label}: member {info.filename!r} unpacks to more than its header says "
                                f"({info.file_size:,} bytes) or past the {max_bytes:,}-byte limit; refused"
                            )
                        dst.write(block)
    except zipfile.BadZipFile as e:  # a CRC mismatch is found at the end of a member's stream
        _remove_unpacked(into, created)
        raise DownloadError(f"{label}: not a valid zip file, or a member is corrupt ({e})") from e
    except (DownloadError, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        _remove_unpacked(into, created)
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(f"{label}: cannot unpack ({type(e).__name__}: {e})") from e


def _remove_unpacked(into: Path, created: bool) -> None:
    if created:
        shutil.rmtree(into, ignore_errors=True)


def install_tree(source: Path, dest: Path, validate: Callable[[Path], object], move: bool = False) -> Path:
    """Check a data folder with its source's `validate` (which raises when it is wrong: layout, counts,
    an image that does not decode) and put it at `dest` atomically."""
    validate(source)
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


def source_root(
    work: Path,
    url: str | None,
    sha256: str | None,
    root: Callable[[Path], Path],
    dataset: str,
    url_var: str,
) -> Path:
    """The data's folder (`root` finds it) in the zip at `url`, fetched and unpacked into `work`, or,
    with no url, in the Kaggle dataset."""
    if not url:
        return _kaggle_download(dataset, root, url_var)
    print(f"downloading {url}")
    archive = download_file(url, work / "archive.zip", sha256)
    unpack_zip(archive, work / "unpacked", name=url)
    return root(work / "unpacked")


def _kaggle_download(dataset: str, root: Callable[[Path], Path], url_var: str) -> Path:
    """Download a Kaggle dataset with kagglehub; `root` finds the data's folder inside it."""
    try:
        import kagglehub
    except ImportError as e:
        raise DownloadError(f"kagglehub is not installed; run `make setup` or give {url_var}=<zip url>") from e
    try:
        path = Path(kagglehub.dataset_download(dataset))
    except Exception as e:  # kagglehub raises many kinds: network, auth, HTTP
        raise DownloadError(
            f"kagglehub could not download {dataset} ({type(e).__name__}: {e}). Log in to Kaggle "
            "(KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), or download the zip yourself and run "
            f"`make data {url_var}=file:///path/to/archive.zip`."
        ) from e
    return root(path)
