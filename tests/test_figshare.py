"""`make data`'s figshare step, offline: a small figshare-style release built from real Kaggle images
and their shipped masks, turned back to the release's orientation, written as MATLAB v7.3 files,
zipped as figshare does and served with an API listing from 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import threading
import urllib.parse
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from braintumour.config import CLASSES, COLLECTIONS, MASKS_DIRNAME, PATIENTS_FILENAME, SPLITS
from braintumour.datasets import audit, figshare, images
from braintumour.datasets.download import DownloadError
from braintumour.datasets.kaggle import (
    DataNotFoundError,
    load_dataset,
    masked_rows,
    masks_dir,
    patients_csv,
    training_masks,
)

# Real slices of every tumour class and both splits; one is 256 x 256.
PICKS = [
    "Training/glioma/Tr-gl_0123.jpg",  # the Kaggle set also holds a mirrored copy: Tr-gl_0060
    "Testing/glioma/Te-gl_0074.jpg",
    "Testing/meningioma/Te-me_0146.jpg",
    "Training/meningioma/Tr-me_0791.jpg",
    "Testing/pituitary/Te-pi_0067.jpg",
    "Training/pituitary/Tr-pi_0853.jpg",
]
MIRROR = "Training/glioma/Tr-gl_0060.jpg"
# Kaggle files with no slice in the release: a mirrored copy, neighbouring slices of the same patients,
# a no-tumour image.
DISTRACTORS = [MIRROR, "Training/glioma/Tr-gl_0121.jpg", "Testing/glioma/Te-gl_0075.jpg",
               "Training/notumor/Tr-no_0010.jpg"]
# The shipped masks were made by turning what h5py reads 90 degrees clockwise; so the file stores the
# Kaggle image turned 90 degrees anticlockwise. Two slices are stored turned otherwise, so that the
# search over the eight orientations is exercised.
RELEASE = lambda a: np.rot90(a, 1)  # noqa: E731
OTHER = {
    "Testing/meningioma/Te-me_0146.jpg": lambda a: np.flipud(a),
    "Training/pituitary/Tr-pi_0853.jpg": lambda a: a.T,
}
PARTS = [(1, 766), (767, 1532), (1533, 2298), (2299, 3064)]
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2015 HDF5 schema 1.00 ."

SKIP_COLLECTIONS = [arg for name in COLLECTIONS for arg in ("--skip", name)]  # only the figshare step here


def write_mat(label: int, pid: str, image: np.ndarray, mask: np.ndarray, *, userblock: bool) -> bytes:
    """A v7.3-style `.mat`: HDF5 (with MATLAB's 512-byte header when `userblock`); `image` and `mask`
    are the arrays as stored, which h5py gives back as they are (MATLAB sees them transposed)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=512 if userblock else 0) as f:
        g = f.create_group("cjdata")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, value, cls in [
            ("label", np.array([[float(label)]]), "double"),
            ("PID", np.array([[ord(c)] for c in pid], np.uint16), "char"),
            ("image", image.astype(np.int16), "int16"),
            ("tumorBorder", np.zeros((1, 8)), "double"),
            ("tumorMask", mask.astype(np.uint8), "logical"),
        ]:
            g.create_dataset(name, data=value).attrs["MATLAB_class"] = np.bytes_(cls)
    content = bytearray(buf.getvalue())
    if userblock:
        header = MATLAB_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM"
        content[: len(header)] = header
    return bytes(content)


def part_name(fid: int) -> str:
    lo, hi = next((lo, hi) for lo, hi in PARTS if lo <= fid <= hi)
    return f"brainTumorDataPublic_{lo}-{hi}.zip"


class Server:
    """Serves `root/<name>` at /files/<name> (HTTP Range when `ranges`) and the listing at /api;
    `cut[name] = n` sends only n bytes of that file's next response, then drops the connection."""

    def __init__(self, root: Path):
        self.root, self.ranges, self.cut, self.log = root, True, {}, []
        self.api = b"{}"
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(self.path)
                outer.log.append((path, self.headers.get("Range")))
                if path == "/api":
                    return self._send(200, outer.api, {"Content-Type": "application/json"})
                file = outer.root / path.removeprefix("/files/")
                if not path.startswith("/files/") or not file.is_file():
                    return self._send(404, b"not found")
                body = file.read_bytes()
                m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if m and outer.ranges:
                    start = int(m.group(1))
                    if start >= len(body):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    span = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
                    return self._send(206, body[start:], span, cut=outer.cut.pop(file.name, None))
                return self._send(200, body, cut=outer.cut.pop(file.name, None))

            def _send(self, code, body, headers=None, cut=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def list_files(self, md5_override: dict[str, str] | None = None) -> None:
        files = []
        for i, p in enumerate(sorted(self.root.iterdir())):
            md5 = hashlib.md5(p.read_bytes()).hexdigest()
            files.append({"id": 3000000 + i, "name": p.name, "size": p.stat().st_size, "is_link_only": False,
                          "download_url": f"{self.base}/files/{p.name}", "supplied_md5": md5,
                          "computed_md5": (md5_override or {}).get(p.name, md5)})
        self.api = json.dumps({"id": figshare.ARTICLE, "version": figshare.VERSION, "files": files}).encode()


@pytest.fixture()
def shipped(real_dir):
    """The shipped masks and patients csv for PICKS."""
    patients = pd.read_csv(patients_csv(real_dir), dtype={"patient_id": str})
    return real_dir, masks_dir(real_dir), patients[patients.path.isin(PICKS)].reset_index(drop=True)


@pytest.fixture()
def release(shipped, tmp_path, isolated_root):
    """(kaggle folder with PICKS + DISTRACTORS, served folder, server, build) ; `build(...)` writes the release."""
    real_dir, masks, patients = shipped
    kaggle = tmp_path / "kaggle" / "brain-tumor-mri"
    for split in SPLITS:
        for cls in CLASSES:
            (kaggle / split / cls).mkdir(parents=True)
    for rel in PICKS + DISTRACTORS:
        os.symlink(real_dir / rel, kaggle / rel)
    served = tmp_path / "served"
    served.mkdir()
    server = Server(served)

    def build(turns: dict | None = None, mutate=None, md5_override=None) -> None:
        turns = {**OTHER, **(turns or {})}
        mats: dict[str, dict[str, bytes]] = {}
        rng = np.random.default_rng(0)
        for i, row in patients.iterrows():
            grey = np.asarray(images.decode_grey((real_dir / row.path).read_bytes()), np.int16)
            mask = np.asarray(Image.open(masks / Path(row.path).with_suffix(".png"))) > 0
            turn = turns.get(row.path, RELEASE)
            image = turn(grey) * 8 + rng.integers(0, 4, grey.shape)  # int16 scale, a little noise
            cls = row.path.split("/")[1]
            label = {v: k for k, v in figshare.LABELS.items()}[cls]
            content = write_mat(label, row.patient_id, image, turn(mask), userblock=i % 2 == 0)
            mats.setdefault(part_name(int(row.figshare_id)), {})[f"{row.figshare_id}.mat"] = content
        if mutate:
            mutate(mats)
        for name, members in mats.items():
            with zipfile.ZipFile(served / name, "w", zipfile.ZIP_DEFLATED) as zf:
                for member, content in sorted(members.items()):
                    zf.writestr(member, content)
        (served / "README.txt").write_text("This brain tumor dataset containing 3064 T1-weighted images\n")
        (served / "cvind.mat").write_bytes(write_mat(1, "x", np.zeros((8, 8)), np.zeros((8, 8)), userblock=True))
        server.list_files(md5_override)

    yield kaggle, served, server, build
    server.httpd.shutdown()


def run(kaggle: Path, server: Server) -> Path:
    return figshare.ensure(kaggle, api_url=f"{server.base}/api")


def nothing_written(kaggle: Path) -> bool:
    return sorted(p.name for p in kaggle.parent.iterdir()) == ["brain-tumor-mri"]


def test_derived_masks_and_patients_equal_the_shipped_ones(release, shipped, capsys):
    kaggle, _, server, build = release
    _, shipped_masks, patients = shipped
    build()
    out = run(kaggle, server)
    assert out == kaggle.parent / MASKS_DIRNAME
    derived = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert derived == sorted(str(Path(p).with_suffix(".png")) for p in PICKS)  # none for the mirrored copy
    for rel in derived:
        mine, theirs = Image.open(out / rel), Image.open(shipped_masks / rel)
        assert mine.mode == "L" and mine.size == theirs.size
        assert np.array_equal(np.asarray(mine), np.asarray(theirs)), rel
    csv = pd.read_csv(kaggle.parent / PATIENTS_FILENAME, dtype={"patient_id": str})
    assert list(csv.columns) == ["path", "figshare_id", "patient_id"]
    pd.testing.assert_frame_equal(csv, patients.sort_values("path", ignore_index=True))
    report = pd.read_csv(figshare.raw_dir() / figshare.DOWNLOAD_DIRNAME / "match-report.csv")
    first = report.set_index("path").loc[PICKS[0]]
    assert first.status == "resolved by orientation" and first.matches == 2
    assert (report.correlation > figshare.MATCH_THRESHOLD).all()
    assert "1 slice(s) also matched a mirrored copy" in capsys.readouterr().out
    # A second run says what is present and does nothing: no request, no file touched.
    stamp = {p: p.stat().st_mtime_ns for p in kaggle.parent.rglob("*")}
    requests = len(server.log)
    run(kaggle, server)
    assert "nothing to derive" in capsys.readouterr().out
    assert len(server.log) == requests and stamp == {p: p.stat().st_mtime_ns for p in kaggle.parent.rglob("*")}


def test_reader_takes_matlab_header_and_plain_hdf5():
    image = np.arange(12 * 10, dtype=np.int16).reshape(12, 10)
    mask = image > 50
    for userblock in (True, False):
        content = write_mat(2, "MR049358", image, mask, userblock=userblock)
        assert content.startswith(b"MATLAB 7.3") == userblock
        mat = figshare.read_mat(content, "x.mat")
        assert mat.label == 2 and mat.patient_id == "MR049358"
        assert np.array_equal(mat.image, image.T) and np.array_equal(mat.mask, mask.T)  # MATLAB's view


def test_interrupted_download_resumes(release):
    kaggle, served, server, build = release
    build()
    part = part_name(1903)
    server.cut[part] = 5000
    with pytest.raises(DownloadError, match=rf"{re.escape(part)}: download interrupted after 5,000 bytes"):
        run(kaggle, server)
    assert nothing_written(kaggle)
    partial = figshare.raw_dir() / figshare.DOWNLOAD_DIRNAME / f"{part}.part"
    assert partial.stat().st_size == 5000
    run(kaggle, server)
    assert (f"/files/{part}", "bytes=5000-") in server.log
    assert not partial.exists() and (kaggle.parent / PATIENTS_FILENAME).is_file()


def test_server_without_range_restarts_cleanly(release):
    kaggle, _, server, build = release
    build()
    server.ranges = False
    part = part_name(1902)
    server.cut[part] = 3000
    with pytest.raises(DownloadError, match="interrupted"):
        run(kaggle, server)
    run(kaggle, server)
    assert len(list((kaggle.parent / MASKS_DIRNAME).rglob("*.png"))) == len(PICKS)


def test_md5_mismatch_is_refused(release):
    kaggle, _, server, build = release
    part = part_name(191)
    build(md5_override={part: "0" * 32})
    with pytest.raises(DownloadError, match=rf"{re.escape(part)}: MD5 [0-9a-f]{{32}} does not match the listed 0+ "):
        run(kaggle, server)
    folder = figshare.raw_dir() / figshare.DOWNLOAD_DIRNAME
    assert not (folder / part).exists() and not (folder / f"{part}.part").exists()
    assert nothing_written(kaggle)


def test_corrupt_part_is_refused(release):
    kaggle, served, server, build = release
    build()
    part = served / part_name(1)
    with zipfile.ZipFile(part) as zf:
        info = zf.getinfo("1.mat")
    raw = bytearray(part.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(start + 200, start + 232):
        raw[k] ^= 0xFF
    part.write_bytes(bytes(raw))
    server.list_files()  # the listing's MD5 is of the corrupt file: the zip's own check must catch it
    with pytest.raises(figshare.FigshareError, match=rf"{re.escape(part.name)}:1\.mat: corrupt zip member"):
        run(kaggle, server)
    assert nothing_written(kaggle)


def test_truncated_mat_is_refused(release):
    kaggle, _, server, build = release

    def truncate(mats):
        members = mats[part_name(1089)]
        members["1089.mat"] = members["1089.mat"][: len(members["1089.mat"]) // 2]

    build(mutate=truncate)
    with pytest.raises(figshare.FigshareError, match=r"brainTumorDataPublic_767-1532\.zip:1089\.mat: not a readable"):
        run(kaggle, server)
    assert nothing_written(kaggle)


def test_slice_without_kaggle_file_is_refused_by_name(release):
    kaggle, _, server, build = release
    build()
    (kaggle / "Testing/meningioma/Te-me_0146.jpg").unlink()
    with pytest.raises(figshare.FigshareError) as err:
        run(kaggle, server)
    msg = str(err.value)
    assert "1 figshare slice(s) could not be matched" in msg and "nothing was written" in msg
    assert "brainTumorDataPublic_1-766.zip:191.mat: matches no Kaggle file above r = 0.999" in msg
    assert nothing_written(kaggle)
    report = pd.read_csv(figshare.raw_dir() / figshare.DOWNLOAD_DIRNAME / "match-report.csv")
    assert report.set_index("figshare_id").loc[191, "status"] == "unmatched"


def test_ambiguous_slice_is_refused_by_name(release):
    kaggle, _, server, build = release
    # Stored turned 180 degrees: neither it nor its mirrored copy is in the release's orientation.
    build(turns={PICKS[0]: lambda a: np.rot90(a, 2)})
    with pytest.raises(figshare.FigshareError, match="1903.mat: ambiguous, matches") as err:
        run(kaggle, server)
    assert PICKS[0] in str(err.value) and MIRROR in str(err.value)
    assert nothing_written(kaggle)


def test_missing_masks_and_patients_name_the_source_and_command(mini_dataset, isolated_root):
    ds = load_dataset(mini_dataset, expected=None, write=False)
    message = r"missing: run `make data` \(downloads the figshare release and derives them\)"
    with pytest.raises(DataNotFoundError, match=message):
        masked_rows(ds)
    with pytest.raises(DataNotFoundError, match=message):
        training_masks(ds, np.arange(2), 32)
    with pytest.raises(DataNotFoundError, match="patient ids .*figshare.*" + message):
        patients_csv(mini_dataset, required=True)
    with pytest.raises(DataNotFoundError, match=message):
        audit.load_patients(mini_dataset.parent / PATIENTS_FILENAME)
    assert masks_dir(mini_dataset) is None and patients_csv(mini_dataset) is None


def test_make_data_derives_them_and_names_failures(release, monkeypatch, capsys):
    from braintumour.__main__ import main
    from braintumour.datasets import kaggle as kaggle_module

    kaggle, _, server, build = release
    monkeypatch.setattr(kaggle_module, "fetch", lambda **kw: kaggle)
    monkeypatch.setenv("BRAIN_MRI_DIR", str(kaggle))  # where the figshare step finds the set the stand-in "fetched"
    build(md5_override={part_name(1): "f" * 32})
    assert main(["data", *SKIP_COLLECTIONS, "--figshare-api", f"{server.base}/api"]) == 2
    assert "ERROR: brainTumorDataPublic_1-766.zip: MD5" in capsys.readouterr().err
    server.list_files()
    monkeypatch.setenv("FIGSHARE_API_URL", f"{server.base}/api")
    assert main(["data", *SKIP_COLLECTIONS]) == 0
    assert (kaggle.parent / PATIENTS_FILENAME).is_file() and (kaggle.parent / MASKS_DIRNAME).is_dir()
