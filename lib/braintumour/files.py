"""Atomic file writes: a reader never sees a half-written file, even after Ctrl-C.

A write goes to a temporary file beside its target, `.<stem>.tmp-<8 random chars><suffix>`, renamed
over the target only when complete. A process killed with SIGKILL (or a power cut) leaves that
temporary file behind: readers that list a folder skip such names (`is_temp`, `listing`), and the
next write of the same target removes them (`remove_stale_temps`) once nothing has written to them
for `STALE_AFTER_S`: a younger one may be another process's write of the same target in progress
(a notebook and the test suite filling the same cache), which finishes with its own rename.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
STALE_AFTER_S = 600


# tempfile.mkstemp's random part: 8 characters from this set (CPython's _RandomNameSequence).
_RANDOM = r"[a-z0-9_]{8}"
_TEMP_NAME = re.compile(r"\..*\.tmp-" + _RANDOM + r"(\.[^.]*)?")


def is_temp(path: str | Path) -> bool:
    """True for the name of an atomic write's temporary file (complete or not, never a result)."""
    return _TEMP_NAME.fullmatch(Path(path).name) is not None


def listing(folder: str | Path, pattern: str = "*") -> list[Path]:
    """`folder.glob(pattern)`, sorted, without the temporary files of atomic writes: pathlib's `*`
    matches names that start with a dot, so `*.json` would also match `.x.tmp-abcd1234.json`."""
    return sorted(p for p in Path(folder).glob(pattern) if not is_temp(p))


def remove_stale_temps(path: str | Path, *, any_target: bool = False) -> list[Path]:
    """Remove the temporary files an interrupted write of `path` left beside it (with `any_target`:
    every atomic-write temporary file in the folder `path`), those untouched for `STALE_AFTER_S`.
    Returns what was removed."""
    path = Path(path)
    folder = path if any_target else path.parent
    if any_target:
        pattern = _TEMP_NAME
    else:
        pattern = re.compile(re.escape(f".{path.stem}.tmp-") + _RANDOM + re.escape(path.suffix))
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    cutoff = time.time() - STALE_AFTER_S
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) and _modified(entry) < cutoff:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _modified(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:  # renamed by its writer meanwhile
        return float("inf")


class OutputPathError(ValueError):
    """An output path that cannot be written; found before any work is done."""


def check_output_path(path: str | Path, *, folder: bool) -> Path:
    """Make sure results can be written at `path` (a folder where `folder`, else a file) before any
    work is done, so that no run ends in a traceback with its results lost.

    A missing folder is created (with its parents); the file system itself is asked, by creating
    and removing a temporary file there (and, for a file, one of the file's own name), so every
    reason it may refuse (permissions, read-only or full file system, name too long) is caught.
    Raises OutputPathError with one line naming the path and the problem.
    """
    path = Path(path)
    kind = "folder" if folder else "file"
    try:  # even asking about a path can fail (a name too long): every OSError becomes the one line
        if folder and path.exists() and not path.is_dir():
            raise OutputPathError(f"{path}: is a file, but a folder is expected here (the output {kind})")
        if not folder and path.is_dir():
            raise OutputPathError(f"{path}: is a folder, but a file name is expected here (the output {kind})")
        if not folder and path.exists() and not path.is_file():
            raise OutputPathError(f"{path}: exists and is not a regular file; give a file name for the output")
        directory = path if folder else path.parent
        blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputPathError(f"{path}: cannot write the output {kind} here ({blocker} is a file, not a folder)")
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.tmp-", dir=directory)
        os.close(fd)
        os.unlink(probe)
        if not folder and not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.unlink(path)
    except OutputPathError:
        raise
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise OutputPathError(f"{path}: cannot write the output {kind} here ({reason})") from e
    return path


@contextmanager
def atomic_path(path: str | Path, *, clean_stale: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    First removes what an earlier, killed write of `path` left (`clean_stale=False` skips that
    scan of the folder, for callers that cleaned it once for many writes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        remove_stale_temps(path)
    # Keep the real suffix last: savefig and friends choose the format from it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def rewrite_marked_block(path: Path, start: str, end: str, block: str) -> bool:
    """Replace the text from marker `start` to marker `end` (both included; `block` carries them) in
    `path`, atomically; True when the file changed."""
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path}: markers {start} ... {end} not found")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    if new != text:
        write_text(path, new)
    return new != text


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in metrics; turn them into plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None], *, clean_stale: bool = True) -> Path:
    """Call `writer(tmp_path)` (e.g. `fig.savefig`, `torch.save`) and rename on success."""
    with atomic_path(path, clean_stale=clean_stale) as tmp:
        writer(tmp)
    return Path(path)
