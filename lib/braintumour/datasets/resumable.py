"""One file over HTTP(S), resumable and checked: `<name>.part` grows until it is whole, is checked
(size and MD5 where known), and only then renamed to `<name>`.

An interrupted download leaves its `.part`; the next call asks for the rest with an HTTP Range
request and appends when the server answers 206, or starts again from zero when it answers 200
(a server that ignores Range) or 416 with a part that is not the file. A part or file that fails
its check is removed, never kept as if it were whole.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from braintumour.datasets.download import DownloadError


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_whole(path: Path, md5: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or md5_of(path) == md5.lower()


def _range_start(header: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-", header or "")
    return int(m.group(1)) if m else None


def fetch_file(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    size: int | None = None,
    chunk: int = 1 << 20,
    timeout: float = 60,
) -> bool:
    """Make `dest` the whole, checked content of `url`. Returns False when `dest` was already
    there and checks, True when it was (re)downloaded. Raises DownloadError naming the file."""
    name = dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if _is_whole(dest, md5, size):
            return False
        print(f"{name}: present but not the listed file (size or MD5 differ); downloading it again")
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):  # a resume the server refuses or garbles gets one clean restart
        offset = part.stat().st_size if part.is_file() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if _download(url, part, offset, name, chunk, timeout, lambda: _is_whole(part, md5, size)) or attempt == 1:
            break
        part.unlink(missing_ok=True)
    got = part.stat().st_size
    if size is not None and got < size:
        raise DownloadError(f"{name}: {got:,} of {size:,} bytes so far; run `make data` again to resume it")
    if size is not None and got > size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{name}: {got:,} bytes, the listing says {size:,}; removed, run `make data` again")
    if md5 is not None:
        digest = md5_of(part)
        if digest != md5.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: MD5 {digest} does not match the listed {md5.lower()} (corrupt or changed download; "
                "removed, run `make data` again)"
            )
    part.replace(dest)
    return True


def _download(
    url: str, part: Path, offset: int, name: str, chunk: int, timeout: float, whole: Callable[[], bool]
) -> bool:
    """Append the rest of `url` to `part` from `offset`; False when the part must be restarted.
    `whole()` says whether the part is already the whole file (asked when the server has nothing left)."""
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part is whole, or it is not the file
            return bool(whole())
        raise DownloadError(f"{name}: download from {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"{name}: download from {url} failed: {e}") from e
    with resp:
        if offset and resp.status == 206:
            if _range_start(resp.headers.get("Content-Range")) != offset:
                return False
            mode = "ab"
            print(f"{name}: resuming at {offset:,} bytes")
        else:
            if offset:
                print(f"{name}: the server does not resume downloads; starting again")
            mode = "wb"
        length = resp.headers.get("Content-Length")
        received = 0
        with open(part, mode) as f:
            try:
                while block := resp.read(chunk):
                    f.write(block)
                    received += len(block)
                failure = (f"the connection closed {int(length) - received:,} bytes early"
                           if length and length.isdigit() and received < int(length) else None)
            except (OSError, http.client.HTTPException) as e:
                failure = f"{type(e).__name__}: {e}"
        if failure:
            raise DownloadError(
                f"{name}: download interrupted after {part.stat().st_size:,} bytes ({failure}); "
                f"run `make data` again to resume it ({part.name} is kept)"
            )
    return True
