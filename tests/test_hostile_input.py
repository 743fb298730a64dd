"""Hostile and careless input, end to end through the command line (issue 30).

Every case: no traceback, one line on stderr that names the file and the problem, exit status 1 for
bad input files and 2 for bad arguments (a model, an output path, an option, a dataset folder). No
code from a checkpoint runs, no temporary file survives a rerun, and the decoded size is bounded for
every format, DICOM included. Most cases call `main(argv)` in-process (fast); the ones that depend on
the real process (the current folder, the stdout encoding, a FIFO that would block) run it.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from conftest import cli
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from tiny import tiny_config

from braintumour import files, predict
from braintumour.config import CLASSES, EXPECTED_COUNTS, SPLITS
from braintumour.datasets import download
from braintumour.reporting import summary
from braintumour.training.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from braintumour.training.models import build_model
from braintumour.training.train import train

ROOT = Path(__file__).resolve().parents[1]
COUNT_LINE = re.compile(r"\d+ of \d+ file\(s\) failed")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small trained-shape checkpoint (random weights: plumbing, not accuracy)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "custom_cnn.pt"
    save_checkpoint(path, build_model("custom_cnn").eval(), tiny_config(image_size=64))
    return path


@pytest.fixture(scope="module")
def real_image(real_dir) -> Path:
    return sorted((real_dir / "Testing" / "glioma").iterdir())[0]


def run(*argv, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    """The real process, for what in-process calls cannot show."""
    return subprocess.run([sys.executable, "-m", "braintumour", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def one_line(err: str, name: str | Path, *words: str) -> str:
    """The single problem line on stderr (besides predict's closing count), naming `name` and `words`."""
    assert "Traceback" not in err, err
    shown = [line.split("\r")[-1] for line in err.split("\n")]  # what a terminal shows of a progress bar: nothing
    lines = [line for line in shown if line.strip() and not COUNT_LINE.fullmatch(line)]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert str(name) in lines[0], f"{name} not named in: {lines[0]}"
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    return lines[0]


def argparse_error(err: str, *words: str) -> None:
    """argparse's refusal: the usage, then one `error:` line naming the option and the value."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"


def writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nobody can write to: mode 0555, and immutable (`chattr +i`) where the tests run as root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if writable(folder) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    if writable(folder):
        folder.chmod(0o755)
        pytest.skip("cannot make a read-only folder here (root, and no chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def make_unreadable(path: Path) -> Path:
    """A file that exists and cannot be read: mode 000, or (root reads anything) a link to /proc/self/mem,
    a regular file whose read fails with EIO for everyone."""
    path.chmod(0)
    try:
        path.read_bytes()
    except OSError:
        return path
    path.unlink()
    path.symlink_to("/proc/self/mem")
    with pytest.raises(OSError):
        path.read_bytes()
    return path


def dicom(path: Path, rows: int, cols: int, frames: int = 1, pixels: bytes | None = None,
          syntax=ExplicitVRLittleEndian) -> Path:
    """An 8-bit MR DICOM whose header announces rows x cols x frames; `pixels` may be far fewer bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "MR", MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(rows * cols * frames) if pixels is None else pixels
    ds.save_as(path, enforce_file_format=True)
    return path


class RunsCode:
    """Pickles to a call of `exec`: whoever unpickles it writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code from the checkpoint ran')",)


# --------------------------------------------------------------------------- 1. checkpoints never run code


@pytest.mark.parametrize("fmt", ["torch.save", "plain pickle"])
def test_a_checkpoint_that_runs_code_is_refused_and_its_code_never_runs(fmt, real_image, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"config": tiny_config().to_dict(), "model": RunsCode(marker)}
    if fmt == "torch.save":
        torch.save(payload, evil)
        torch.load(evil, weights_only=False)  # the file really is hostile: the loader used before runs it
    else:
        evil.write_bytes(pickle.dumps(payload))
        pickle.loads(evil.read_bytes())
    assert marker.exists()
    marker.unlink()

    rc, out, err = cli(capsys, "predict", real_image, "--model", evil)
    assert rc == 2 and out == ""
    one_line(err, evil, "refused")
    assert not marker.exists()


def test_a_hostile_last_pt_stops_training_before_any_code_runs(tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"config": {}, "state": RunsCode(marker)}, run_dir / "last.pt")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)
    labels = np.arange(40) % len(CLASSES)
    with pytest.raises(CheckpointError, match="last.pt: refused"):
        train(tiny_config(image_size=32, epochs=1, batch_size=16), images, labels, np.arange(32), np.arange(32, 40),
              np.ones(len(CLASSES)), run_dir, progress=False)
    assert not marker.exists()


def test_every_committed_model_loads_without_an_allow_list():
    models = sorted((ROOT / "reports" / "models").glob("*.pt"))
    if not models:
        pytest.skip("no committed models")
    for path in models:
        payload = read_checkpoint(path)
        assert {"config", "model"} <= set(payload) and isinstance(payload["config"]["image_size"], int)


def test_a_checkpoint_without_image_size_is_named(real_image, tmp_path, capsys):
    cfg = tiny_config().to_dict()
    del cfg["image_size"]
    path = tmp_path / "no-size.pt"
    torch.save({"config": cfg, "model": build_model("custom_cnn").state_dict()}, path)
    rc, _, err = cli(capsys, "predict", real_image, "--model", path)
    assert rc == 2
    one_line(err, path, "image_size")


# --------------------------------------------------------------------------- 2. default model from anywhere


def test_the_default_model_is_found_from_any_folder(real_image, tmp_path):
    assert predict.default_model().is_file()  # committed: reports/models/custom_cnn.pt
    r = run("predict", real_image, "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("path,prediction")


# --------------------------------------------------------------------------- 3. output paths, before any work


@pytest.fixture()
def no_inference(monkeypatch):
    """Fails the test if predict classifies anything: output paths are checked first."""
    def refuse(*a, **k):
        raise AssertionError("inference ran before the output paths were checked")
    monkeypatch.setattr(predict, "predict_logits", refuse)


def test_output_paths_are_checked_before_inference(model_file, real_image, tmp_path, read_only_dir, capsys,
                                                  no_inference):
    (a_file := tmp_path / "a-file.txt").write_text("x")
    (a_folder := tmp_path / "a-folder").mkdir()
    long_name = tmp_path / ("x" * 300 + ".csv")
    cases = [
        (["--out", a_file], a_file, "is a file"),
        (["--out", a_file / "cams"], a_file / "cams", "is a file, not a folder"),
        (["--out", read_only_dir / "cams"], read_only_dir / "cams", "cannot write"),
        (["--out", read_only_dir], read_only_dir, "cannot write"),
        (["--output", a_folder], a_folder, "is a folder"),
        (["--output", read_only_dir / "p.csv"], read_only_dir / "p.csv", "cannot write"),
        (["--output", long_name], long_name, "name too long"),
    ]
    for extra, named, words in cases:
        rc, out, err = cli(capsys, "predict", real_image, "--model", model_file, *extra)
        assert rc == 2 and out == "", (extra, err)
        one_line(err, named, words)
    assert not list(read_only_dir.iterdir())


def test_the_notebook_runner_checks_its_reports_folder(tmp_path, capsys):
    (a_file := tmp_path / "reports").write_text("x")
    rc, _, err = cli(capsys, "notebook", ROOT / "notebooks" / "00_data.ipynb", "--reports", a_file)
    assert rc == 2
    one_line(err, a_file, "is a file")


# --------------------------------------------------------------------------- 4. one size guard for every decoder


@pytest.fixture()
def no_pixel_decoding(monkeypatch):
    def refuse(self):
        raise AssertionError("DICOM pixel data decoded before the size check")
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(refuse))


def test_dicom_size_and_frames_are_refused_from_the_header(model_file, tmp_path, capsys, no_pixel_decoding):
    cases = {
        dicom(tmp_path / "huge.dcm", 20000, 20000, pixels=b"\0" * 64): "over the 67,108,864-pixel limit",
        dicom(tmp_path / "many-big-frames.dcm", 4096, 4096, frames=8, pixels=b"\0" * 64): "x 8 frames",
        dicom(tmp_path / "two-frames.dcm", 64, 64, frames=2): "2 frames",
    }
    for path, words in cases.items():
        rc, _, err = cli(capsys, "predict", path, "--model", model_file)
        assert rc == 1
        one_line(err, path, words)


def test_a_deflated_dicom_bomb_is_refused_before_pydicom_inflates_it(model_file, tmp_path, capsys, monkeypatch):
    bomb = dicom(tmp_path / "deflated.dcm", 2048, 2048, syntax=DeflatedExplicitVRLittleEndian)
    assert bomb.stat().st_size < 20_000  # 4 MB of pixels in a few KB
    monkeypatch.setattr(predict, "MAX_FILE_BYTES", 1 << 20)  # the real limit, scaled down for the test
    rc, _, err = cli(capsys, "predict", bomb, "--model", model_file)
    assert rc == 1
    one_line(err, bomb, "inflates to over", "refused")


def test_the_same_guard_refuses_large_pil_images_oversized_files_and_foreign_formats(model_file, tmp_path, capsys,
                                                                                    monkeypatch, real_image):
    Image.new("L", (9000, 9000)).save(huge := tmp_path / "huge.png", compress_level=1)
    Image.new("L", (64, 64)).save(eps := tmp_path / "scan.jpg", format="EPS")  # PIL would run Ghostscript
    for path, words in [(huge, "over the 67,108,864-pixel limit"), (eps, "cannot identify")]:
        rc, _, err = cli(capsys, "predict", path, "--model", model_file)
        assert rc == 1
        one_line(err, path, words)
    monkeypatch.setattr("braintumour.datasets.images.MAX_FILE_BYTES", 1000)
    rc, _, err = cli(capsys, "predict", real_image, "--model", model_file)
    assert rc == 1
    one_line(err, real_image, "over the 1,000-byte limit")


# --------------------------------------------------------------------------- 5. one guard for archives


def _bomb_zip(path: Path, megabytes: int = 64) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/Training/glioma/bomb.jpg", bytes(megabytes << 20))
    return path


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_written(isolated_root, tmp_path, capsys):
    bomb = _bomb_zip(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 1 << 20
    rc, _, err = cli(capsys, "data", "--url", bomb.as_uri())
    assert rc == 2
    one_line(err, bomb.as_uri(), "expands", "decompression bomb")
    assert list((isolated_root / "data" / "raw").iterdir()) == []


def test_the_total_unpacked_size_is_limited(isolated_root, mini_dataset, tmp_path, capsys, monkeypatch):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(mini_dataset.rglob("*.jpg")):
            zf.write(p, p.relative_to(mini_dataset).as_posix())
    monkeypatch.setattr(download, "MAX_UNPACKED_BYTES", 100_000)  # the real limit, scaled down
    rc, _, err = cli(capsys, "data", "--url", archive.as_uri())
    assert rc == 2
    one_line(err, archive.as_uri(), "over the 100,000-byte limit")
    assert list((isolated_root / "data" / "raw").iterdir()) == []


def test_a_member_whose_header_lies_about_its_size_is_stopped_while_streaming(tmp_path):
    archive = tmp_path / "liar.zip"
    content = os.urandom(200_000)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", content)
    raw = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = raw.index(signature) + offset
        raw[at : at + 4] = struct.pack("<I", 1000)  # "uncompressed size: 1000 bytes"
    archive.write_bytes(bytes(raw))
    with pytest.raises(download.DownloadError, match="liar.zip"):
        download.unpack_zip(archive, tmp_path / "into")
    assert not (tmp_path / "into").exists()


# --------------------------------------------------------------------------- 6. `data` and `manifest` agree


def test_data_and_manifest_both_refuse_an_empty_dataset_folder(isolated_root, capsys):
    empty = isolated_root / "data" / "raw" / "brain-tumor-mri"
    empty.mkdir()
    lines = []
    for command in ("data", "manifest"):
        rc, out, err = cli(capsys, command)
        assert rc == 2 and "present" not in out, (command, out)
        lines.append(one_line(err, empty, "expected layout"))
    assert lines[0] == lines[1]


# --------------------------------------------------------------------------- 7. options


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--batch-size", "0", ["--batch-size", "not a positive"]),
    ("--batch-size", "-3", ["--batch-size", "not a positive"]),
    ("--batch-size", "many", ["--batch-size", "not a whole number"]),
    ("--cam", "nosuchcam", ["--cam", "unknown CAM method", "gradcam"]),
    ("--format", "xml", ["--format", "xml"]),
])
def test_bad_options_are_argparse_errors(option, value, words, model_file, real_image, tmp_path, capsys):
    rc, out, err = cli(capsys, "predict", real_image, "--model", model_file, "--out", tmp_path / "cams", option, value)
    assert rc == 2 and out == ""
    argparse_error(err, *words)


def test_a_missing_notebook_is_an_argparse_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "notebook", tmp_path / "nope.ipynb")
    assert rc == 2
    argparse_error(err, "nope.ipynb", "no such notebook")


# --------------------------------------------------------------------------- 8. names that are not UTF-8


def test_file_names_that_are_not_utf8_in_every_output_format(model_file, real_image, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    good = folder / os.fsdecode(b"scan\xff.jpg")  # a name no UTF-8 decoder accepts
    shutil.copy(real_image, good)
    (bad := folder / os.fsdecode(b"broken\xfe.png")).write_bytes(b"")
    fifo = tmp_path / "pipe.png"  # reading it would block forever
    os.mkfifo(fifo)
    shown_good, shown_bad = predict.printable(good), predict.printable(bad)
    assert shown_good.endswith("scan\\xff.jpg") and shown_bad.endswith("broken\\xfe.png")
    for fmt in ("table", "csv", "json"):
        r = run("predict", folder, fifo, "--model", model_file, "--format", fmt, "--out", tmp_path / "cams",
                timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "scan\\xff.jpg" in r.stdout.replace("\\\\", "\\")
        errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR: ")]
        assert len(errors) == 2
        assert shown_bad in errors[0] and "empty" in errors[0]
        assert str(fifo) in errors[1] and "not a regular file" in errors[1]
    r = run("predict", folder, "--model", model_file, "--format", "csv", "--output", tmp_path / "p.csv")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert shown_good in (tmp_path / "p.csv").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- 9. what a killed process left


def _killed_long_ago(path: Path, text: str | None = None) -> None:
    """`path` as an atomic write killed an hour ago left it."""
    if text is not None:
        path.write_text(text)
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))


def test_a_stale_temporary_file_in_out_is_removed_and_one_in_an_input_folder_ignored(model_file, real_image,
                                                                                    tmp_path, capsys):
    cams = tmp_path / "cams"
    cams.mkdir()
    (stale := cams / ".00000_scan_glioma_0.50_cam.tmp-abcd1234.png").write_bytes(b"\x89PNG half")
    _killed_long_ago(stale)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(real_image, inputs / "scan.jpg")
    (inputs / ".scan2.tmp-k3j4h5g6.jpg").write_bytes(real_image.read_bytes()[:500])  # a killed copy
    rc, out, err = cli(capsys, "predict", inputs, "--model", model_file, "--format", "csv", "--out", cams)
    assert rc == 0 and err == "", err
    assert len([line for line in out.splitlines() if line]) == 2  # the header and the one real scan
    assert not stale.exists()
    assert [p for p in cams.iterdir() if files.is_temp(p)] == []
    assert len(list(cams.glob("*.png"))) == 1


def test_readers_of_results_skip_temporary_files_and_writers_remove_their_own(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    files.write_json(metrics / "custom_cnn.json", {"git_commit": "abc", "profile": "cpu", "written_at": "now"})
    _killed_long_ago(metrics / ".lenet5.tmp-q1w2e3r4.json", '{"git_commit": "half-writ')
    assert list(summary.provenance(metrics)["metrics file"]) == ["custom_cnn.json"]
    _killed_long_ago(other := metrics / ".other.tmp-a1b2c3d4.json", "{")  # another target's: not ours to remove
    (busy := metrics / ".lenet5.tmp-z9x8c7v6.json").write_text('{"git_commit": "be')  # another process's, now
    files.write_json(metrics / "lenet5.json", {"git_commit": "def"})  # the rerun
    assert sorted(p.name for p in metrics.iterdir()) == [".lenet5.tmp-z9x8c7v6.json", ".other.tmp-a1b2c3d4.json",
                                                          "custom_cnn.json", "lenet5.json"]
    assert busy.exists()  # younger than files.STALE_AFTER_S: its writer renames it
    assert other.exists() and files.listing(metrics, "*.json") == [metrics / "custom_cnn.json",
                                                                   metrics / "lenet5.json"]


# --------------------------------------------------------------------------- 10. the rest


def test_manifest_skip_bad_skips_an_unreadable_file(isolated_root, mini_dataset, monkeypatch, capsys):
    for split in SPLITS:
        for cls in CLASSES:
            monkeypatch.setitem(EXPECTED_COUNTS[split], cls, 2)  # the mini dataset's counts
    monkeypatch.setenv("BRAIN_MRI_DIR", str(mini_dataset))
    victim = make_unreadable(next(iter(sorted((mini_dataset / "Training" / "glioma").iterdir()))))
    rc, _, err = cli(capsys, "manifest")
    assert rc == 2
    one_line(err, victim, "cannot read file")
    rc, out, err = cli(capsys, "manifest", "--skip-bad")
    assert rc == 0 and "images:      16" in out
    one_line(err, victim, "SKIPPED", "cannot read file")


def test_an_empty_input_folder_is_named(model_file, tmp_path, capsys):
    (empty := tmp_path / "no-scans").mkdir()
    (empty / "notes.txt").write_text("not a scan")
    rc, _, err = cli(capsys, "predict", empty, "--model", model_file)
    assert rc == 1
    one_line(err, empty, "holds no image file")
