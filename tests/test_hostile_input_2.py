"""Hostile and broken input, second round (issue 51): nothing silently wrong, nothing lost.

Every value that reaches the model is finite and means what the file says; one bad file is one line
naming it while the others still run; calibration files and checkpoints are checked before use;
outputs never touch inputs; memory is bounded by what is allocated; every container follows one
frames rule. Each case runs `main(argv)` in-process unless it needs the real process.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from conftest import cli, make_mini_dataset
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from test_hostile_input import one_line
from tiny import tiny_config

from braintumour import predict
from braintumour.analysis.calibration import Calibration, calibration_path, load_calibration, save_calibration
from braintumour.config import CLASSES, EXPECTED_COUNTS, SPLITS
from braintumour.datasets import images
from braintumour.training import device
from braintumour.training.checkpoints import save_checkpoint
from braintumour.training.models import build_model

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="module")
def slice_grey(real_image) -> np.ndarray:
    """A real glioma slice as 8-bit grey, the pixels every container below stores."""
    return np.asarray(images.decode_grey(real_image.read_bytes()))


def dicom_of(path: Path, pixels: np.ndarray, syntax=ExplicitVRLittleEndian, **header) -> Path:
    """An MR DICOM holding `pixels` (uint8, uint16 or int16) as they are, with `header` elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "MR", MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(pixels.dtype.kind == "i")
    for name, value in header.items():
        setattr(ds, name, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def with_raw_value(path: Path, keyword: str, value: bytes) -> Path:
    """`path` with the DS element `keyword` holding exactly `value` (pydicom refuses to write bad ones)."""
    ds = pydicom.dcmread(path)
    ds.add_new(pydicom.datadict.tag_for_keyword(keyword), "DS", "1")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    tag = pydicom.tag.Tag(keyword)
    at = raw.index(struct.pack("<HH", tag.group, tag.element) + b"DS")
    old = struct.unpack("<H", raw[at + 6 : at + 8])[0]
    value += b" " * (len(value) % 2)
    path.write_bytes(raw[: at + 6] + struct.pack("<H", len(value)) + value + raw[at + 8 + old :])
    return path


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def predictions_and_errors(capsys, *argv) -> tuple[int, dict, str]:
    rc, out, err = cli(capsys, "predict", *argv, "--format", "json")
    assert "Traceback" not in err, err
    return rc, json.loads(out), err


# --------------------------------------------------------------------------- 1. finite, meaning what the file says


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_pixel_is_refused_not_scaled(bad, slice_grey, real_image, model_file, tmp_path, capsys):
    values = slice_grey.astype(np.float32) * 4.0
    values[10, 10] = bad  # NaN once made the maximum NaN, and the whole glioma zero: "notumor", exit 0
    Image.fromarray(values).save(tif := tmp_path / "float.tif")
    rc, parsed, err = predictions_and_errors(capsys, tif, real_image, "--model", model_file)
    assert rc == 1 and [p["path"] for p in parsed["predictions"]] == [str(real_image)]
    one_line(err, tif, "1 pixel value(s) are not finite")


@pytest.mark.parametrize(("keyword", "value", "words"), [
    ("RescaleSlope", b"1e308", "absurd"),  # overflows to infinity: once every pixel, then zero
    ("RescaleSlope", b"-1e300", "absurd"),
    ("RescaleSlope", b"nan", "not one finite number"),
    ("RescaleSlope", b"inf", "not one finite number"),
    ("RescaleSlope", b"0", "absurd"),  # every pixel the intercept: a blank image
    ("RescaleIntercept", b"1e308", "absurd"),
    ("RescaleSlope", b"abc", "not one finite number"),  # once a traceback
    ("RescaleSlope", b"1\\2", "not one finite number"),  # two values: once a traceback
])
def test_a_dicom_rescale_that_is_not_one_finite_sane_number_is_refused(keyword, value, words, slice_grey, real_image,
                                                                       model_file, tmp_path, capsys):
    scan = with_raw_value(dicom_of(tmp_path / "scan.dcm", slice_grey.astype(np.uint16) * 16), keyword, value)
    rc, parsed, err = predictions_and_errors(capsys, scan, real_image, "--model", model_file)
    assert rc == 1 and len(parsed["predictions"]) == 1
    one_line(err, scan, keyword, words)


def test_the_same_pixels_give_the_same_input_in_every_container(slice_grey, tmp_path):
    """Signed values were shifted up as DICOM but clipped to zero as TIFF; 8-bit values were stretched as
    DICOM but not as PNG. One rule now: 8-bit as stored, wider or signed or float shifted and scaled."""
    signed = slice_grey.astype(np.int16) * 8 - 700
    wide = slice_grey.astype(np.uint16) * 12
    dim = (slice_grey.astype(np.uint16) * 200 // 255).astype(np.uint8)
    groups = {
        "signed": [dicom_of(tmp_path / "signed.dcm", signed),
                   tmp_path / "signed.tif", tmp_path / "signed-float.tif"],
        "wide": [dicom_of(tmp_path / "wide.dcm", wide), tmp_path / "wide.png", tmp_path / "wide.tif"],
        "8-bit": [dicom_of(tmp_path / "dim.dcm", dim), tmp_path / "dim.png", tmp_path / "dim.tif"],
    }
    Image.fromarray(signed.astype(np.int32)).save(tmp_path / "signed.tif")
    Image.fromarray(signed.astype(np.float32)).save(tmp_path / "signed-float.tif")
    for name, arr in (("wide.png", wide), ("wide.tif", wide), ("dim.png", dim), ("dim.tif", dim)):
        Image.fromarray(arr).save(tmp_path / name)
    for kind, paths in groups.items():
        arrays = [predict.read_scan(p, 128) for p in paths]
        for p, arr in zip(paths[1:], arrays[1:], strict=True):
            np.testing.assert_array_equal(arr, arrays[0], err_msg=f"{kind}: {p.name} differs from the DICOM")
    signed_dicom = groups["signed"][0]
    assert np.asarray(predict.read_dicom(signed_dicom.read_bytes(), signed_dicom)).max() == 255  # stretched


def test_negative_slopes_and_monochrome1_mean_what_the_file_says(slice_grey, tmp_path):
    plain = predict.read_scan(dicom_of(tmp_path / "plain.dcm", slice_grey.astype(np.uint16)), 64)
    wide = slice_grey.astype(np.uint16)
    inverted = dicom_of(tmp_path / "inverted.dcm", wide, PhotometricInterpretation="MONOCHROME1")
    negated = dicom_of(tmp_path / "negated.dcm", wide, RescaleSlope="-1")
    np.testing.assert_array_equal(predict.read_scan(inverted, 64), predict.read_scan(negated, 64))
    assert np.corrcoef(plain.ravel(), predict.read_scan(inverted, 64).ravel())[0, 1] < -0.9


# --------------------------------------------------------------------------- 2. one bad file is one line


def _corrupt_png(slice_grey: np.ndarray) -> bytes:
    """A PNG whose second chunk has a broken type: PIL raises SyntaxError while loading it."""
    png = encode(Image.fromarray(slice_grey), "PNG")
    at = 8 + 12 + 13  # the signature, then IHDR
    at += 12 + struct.unpack(">I", png[at : at + 4])[0]  # past the first IDAT
    return png[: at + 4] + b"\x00\x01\x02\x03" + png[at + 8 :]


def _dicom_header_flips() -> dict[str, bytes]:
    """A few bytes of a real MR DICOM's header changed: pydicom raises NotImplementedError and
    BytesLengthException, outside its documented errors."""
    raw = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    at = raw.index(b"\x02\x00\x00\x00UL")  # the file meta group length
    return {"vr.dcm": raw[: at + 4] + b"UF" + raw[at + 6 :],
            "length.dcm": raw[: at + 6] + struct.pack("<H", 6) + raw[at + 8 :]}


def test_errors_outside_our_types_are_one_line_each_and_the_rest_run(slice_grey, real_image, model_file, tmp_path,
                                                                    capsys):
    bad = {"chunk.png": _corrupt_png(slice_grey), **_dicom_header_flips()}
    paths = []
    for name, raw in bad.items():
        (path := tmp_path / name).write_bytes(raw)
        paths.append(path)
    rc, parsed, err = predictions_and_errors(capsys, real_image, *paths, "--model", model_file)
    assert rc == 1 and [p["path"] for p in parsed["predictions"]] == [str(real_image)]
    lines = [line for line in err.splitlines() if line.startswith("ERROR: ")]
    assert len(lines) == len(paths) and "3 of 4 file(s) failed" in err
    for path, line in zip(paths, lines, strict=True):
        assert str(path) in line and "object at 0x" not in line, line
    assert "SyntaxError" in lines[0] and "NotImplementedError" in lines[1] and "BytesLengthException" in lines[2]


def test_manifest_skip_bad_skips_a_png_with_a_corrupt_chunk(isolated_root, real_dir, slice_grey, tmp_path,
                                                            monkeypatch, capsys):
    mini = make_mini_dataset(real_dir, tmp_path / "mini" / "brain-tumor-mri")
    for split in SPLITS:
        for cls in CLASSES:
            monkeypatch.setitem(EXPECTED_COUNTS[split], cls, 2)
    monkeypatch.setenv("BRAIN_MRI_DIR", str(mini))
    victim = sorted((mini / "Training" / "glioma").iterdir())[0]
    victim.write_bytes(_corrupt_png(slice_grey))
    rc, out, err = cli(capsys, "manifest", "--skip-bad")
    assert rc == 0 and "images:      16" in out
    one_line(err, victim, "SKIPPED", "SyntaxError")


def test_a_long_file_name_with_out_is_classified_and_its_overlay_written(real_image, model_file, tmp_path, capsys):
    (long := tmp_path / ("s" * 232 + ".jpg")).write_bytes(real_image.read_bytes())
    rc, parsed, err = predictions_and_errors(capsys, long, "--model", model_file, "--out", tmp_path / "cams")
    assert rc == 0 and err == "", err
    (row,) = parsed["predictions"]
    assert Path(row["cam_png"]).is_file() and len(Path(row["cam_png"]).name.encode()) < 200


def test_a_name_too_long_for_the_file_system_is_one_line_and_the_rest_run(real_image, model_file, tmp_path, capsys):
    too_long = tmp_path / ("x" * 300 + ".jpg")
    rc, parsed, err = predictions_and_errors(capsys, too_long, real_image, "--model", model_file)
    assert rc == 1 and len(parsed["predictions"]) == 1
    one_line(err, too_long, "name too long")


# --------------------------------------------------------------------------- 3. calibration files and checkpoints


def _calibrated_copy(model_file: Path, folder: Path, content: str | bytes) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    model = Path(shutil.copy(model_file, folder / "model.pt"))
    path = calibration_path(model)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return model, path


_GOOD = {"temperature": 0.5, "uncertain_below": 0.9, "fitted_on": "validation", "n_images": 572,
         "max_validation_risk": 0.005, "data_fingerprint": "abc", "git_commit": "def"}


@pytest.mark.parametrize(("content", "words"), [
    (json.dumps(_GOOD | {"temperature": 0}), "temperature"),  # every probability NaN, every image glioma
    (json.dumps(_GOOD | {"temperature": float("nan")}), "temperature"),  # written as NaN, which json reads
    (json.dumps(_GOOD | {"temperature": -0.5}), "temperature"),  # reverses the ranking
    (json.dumps(_GOOD | {"temperature": float("inf")}), "temperature"),
    (json.dumps(_GOOD | {"temperature": 1e-300}), "temperature"),
    (json.dumps(_GOOD | {"temperature": "0.5"}), "temperature"),
    (json.dumps(_GOOD | {"temperature": True}), "temperature"),
    (json.dumps(_GOOD | {"uncertain_below": 1.5}), "uncertain_below"),
    (json.dumps(_GOOD | {"uncertain_below": -0.1}), "uncertain_below"),
    (json.dumps(_GOOD | {"n_images": -3}), "n_images"),
    (json.dumps({k: v for k, v in _GOOD.items() if k != "uncertain_below"}), "missing uncertain_below"),
    (json.dumps(_GOOD | {"surprise": 1}), "unknown field(s) surprise"),
    (json.dumps([0.5, 0.9]), "not an object"),
    ('{"temperature": 0.5,', "not a calibration file"),  # once a traceback
    (b"\xff\xfe not text", "not a calibration file"),
])
def test_a_broken_calibration_file_is_refused_by_name(content, words, model_file, real_image, tmp_path, capsys):
    model, path = _calibrated_copy(model_file, tmp_path / "m", content)
    rc, out, err = cli(capsys, "predict", real_image, "--model", model, "--format", "json")
    assert rc == 2 and out == ""
    one_line(err, path, words)


def test_a_calibration_file_that_is_not_a_file_is_refused_not_ignored(model_file, real_image, tmp_path, capsys):
    model = Path(shutil.copy(model_file, tmp_path / "model.pt"))
    calibration_path(model).mkdir()
    rc, _, err = cli(capsys, "predict", real_image, "--model", model)
    assert rc == 2
    one_line(err, calibration_path(model), "cannot be read")


def test_valid_calibrations_still_load_and_json_output_is_strict(model_file, real_image, tmp_path, capsys):
    model = Path(shutil.copy(model_file, tmp_path / "model.pt"))
    every_image_flagged = float(np.nextafter(1.0, 2.0))  # threshold_for_risk's value when no threshold meets the risk
    save_calibration(model, Calibration(**(_GOOD | {"uncertain_below": every_image_flagged})))
    assert load_calibration(model).uncertain_below == every_image_flagged
    rc, out, err = cli(capsys, "predict", real_image, "--model", model, "--format", "json")
    assert rc == 0, err
    strict = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    assert strict["predictions"][0]["uncertain"] is True
    for committed in sorted((ROOT / "reports" / "models").glob("*.calibration.json")):
        assert load_calibration(committed.with_name(committed.name.replace(".calibration.json", ".pt")))


def _checkpoint(path: Path, change=None, size: int = 64, name: str = "custom_cnn") -> Path:
    torch.manual_seed(0)
    state = build_model(name).eval().state_dict()
    if change is not None:
        change(state)
    torch.save({"config": tiny_config(model=name, image_size=size).to_dict(), "model": state}, path)
    return path


def _set(key: str, value: float):
    def change(state):
        state[key].view(-1)[0] = value
    return change


def _scale_all(factor: float):
    def change(state):
        for t in state.values():
            if t.is_floating_point():
                t.mul_(factor)
    return change


@pytest.mark.parametrize(("label", "change", "size", "name", "words"), [
    ("NaN weight", _set("stem.0.0.weight", float("nan")), 64, "custom_cnn", "not finite"),
    ("inf weight", _set("stem.0.0.weight", float("inf")), 64, "custom_cnn", "not finite"),
    ("NaN BatchNorm variance", _set("stem.0.1.running_var", float("nan")), 64, "custom_cnn", "not finite"),
    ("overflowing output", _scale_all(1e30), 64, "custom_cnn", "not finite"),
    ("image_size 30000", None, 30000, "custom_cnn", "image_size"),  # 3.6 GB per image
    ("image_size 4", None, 4, "custom_cnn", "image_size"),
    ("too small for its architecture", None, 8, "lenet5", "cannot run on 8x8"),
])
def test_a_broken_checkpoint_is_refused_in_one_line(label, change, size, name, words, real_image, tmp_path, capsys):
    model = _checkpoint(tmp_path / "broken.pt", change, size, name)
    rc, out, err = cli(capsys, "predict", real_image, "--model", model)
    assert rc == 2 and out == "", label
    one_line(err, model, words)


def test_the_checkpoint_keys_used_above_exist():
    state = build_model("custom_cnn").state_dict()
    assert {"stem.0.0.weight", "stem.0.1.running_var"} <= set(state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_checkpoints_in_other_float_dtypes_are_converted(dtype, model_file, real_image, tmp_path):
    payload = torch.load(model_file, weights_only=True)
    payload["model"] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in payload["model"].items()}
    torch.save(payload, other := tmp_path / f"{dtype}.pt")
    expected = predict.predict_files([real_image], model_file, progress=False).frame()
    got = predict.predict_files([real_image], other, progress=False).frame()
    columns = [f"p_{c}" for c in CLASSES]
    np.testing.assert_allclose(got[columns].to_numpy(), expected[columns].to_numpy(), atol=0.02)


# --------------------------------------------------------------------------- 4. outputs never touch inputs


def test_an_output_that_is_or_lies_inside_an_input_is_refused(real_image, model_file, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    scan = Path(shutil.copy(real_image, scans / "scan.jpg"))
    (alias := tmp_path / "alias.jpg").symlink_to(scan)
    os.link(scan, hard := tmp_path / "hard.jpg")
    before = scan.read_bytes()
    cases = [
        ([scan, "--output", scan], scan, "is the input"),  # once overwrote the scan with the CSV
        ([scan, "--output", alias], alias, "is the input"),
        ([scan, "--output", hard], hard, "is the input"),
        ([scans, "--output", scans / "p.csv"], scans / "p.csv", "lies inside the input folder"),
        ([scans, "--out", scans], scans, "is the input"),
        ([scans, "--out", scans / "cams"], scans / "cams", "lies inside the input folder"),
        ([scans, "--out", tmp_path / "scans" / ".." / "scans" / "x"], "x", "lies inside the input folder"),
    ]
    for argv, named, words in cases:
        rc, out, err = cli(capsys, "predict", *argv, "--model", model_file, "--format", "csv")
        assert rc == 2 and out == "", (argv, err)
        one_line(err, named, words)
    assert scan.read_bytes() == before and sorted(p.name for p in scans.iterdir()) == ["scan.jpg"]


def test_a_folder_scan_skips_the_overlays_of_earlier_runs(real_dir, model_file, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    for c in CLASSES[:2]:
        shutil.copy(sorted((real_dir / "Testing" / c).iterdir())[0], scans / f"{c}.jpg")
    counts = []
    for run in range(3):
        rc, parsed, err = predictions_and_errors(capsys, scans, "--model", model_file, "--out", tmp_path / f"cams{run}")
        assert rc == 0, err
        counts.append(len(parsed["predictions"]))
        shutil.move(tmp_path / f"cams{run}", scans / f"cams{run}")  # the overlays moved in with the scans
    assert counts == [2, 2, 2]
    assert len(list(scans.rglob("*_cam.png"))) == 6
    one = next(scans.rglob("*_cam.png"))
    rc, parsed, err = predictions_and_errors(capsys, one, "--model", model_file)
    # named explicitly, an overlay is read, and the input check refuses it by name: it is a colour picture
    assert rc == 1 and parsed["predictions"] == [] and one.name in err and "colour" in err


# --------------------------------------------------------------------------- 5. memory bounded by what is allocated


def test_the_size_guard_counts_the_padded_square(model_file, tmp_path, capsys):
    Image.new("L", (60000, 10)).save(wide := tmp_path / "wide.png", optimize=True)
    assert wide.stat().st_size < 1000  # once 4.4 GB of padding
    Image.new("L", (10, 60000)).save(tall := tmp_path / "tall.png", optimize=True)
    strip = dicom_of(tmp_path / "strip.dcm", np.zeros((10, 60000), np.uint8))
    for path, shape in ((wide, "60000x10"), (tall, "10x60000"), (strip, "60000x10")):
        rc, _, err = cli(capsys, "predict", path, "--model", model_file)
        assert rc == 1
        one_line(err, path, shape, "padded to 60000x60000", "pixel limit")
    images.check_image_size(8192, 1)  # pads to 8192 x 8192, the limit itself
    with pytest.raises(images.ImageDecodeError, match="padded to 8193x8193"):
        images.check_image_size(8193, 1)


_PEAK = """
import resource, sys
from pathlib import Path
from braintumour import predict
from braintumour.datasets.images import ImageDecodeError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for p in sys.argv[1:]:
    try:
        predict.read_scan(Path(p), 128)
    except ImageDecodeError as e:
        print("refused", e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_memory_stays_under_2_gb_for_the_largest_slices_allowed(tmp_path):
    """The worst cases the guard lets through, at its limit (8192 x 8192): a float TIFF (float64
    scaling), an RGB PNG with alpha (compositing) and a 16-bit DICOM, decoded in a fresh process."""
    side = 8192  # mostly zeros, so that the files are small and quick to write
    values = np.zeros((side, side), np.float32)
    values[:256] = np.linspace(-1.0, 1.0, side, dtype=np.float32)  # negative values: the shift too
    Image.fromarray(values).save(tmp_path / "f.tif", compression="tiff_adobe_deflate")
    Image.new("RGBA", (side, side), (40, 80, 120, 200)).save(tmp_path / "rgba.png", compress_level=1)
    wide = np.zeros((side, side), np.uint16)
    wide[:256] = np.arange(side, dtype=np.uint16)
    dicom_of(tmp_path / "wide.dcm", wide, syntax=DeflatedExplicitVRLittleEndian)
    del values, wide
    files = [tmp_path / "f.tif", tmp_path / "rgba.png", tmp_path / "wide.dcm"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    r = subprocess.run([sys.executable, "-c", _PEAK, *map(str, files)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0 and "refused" not in r.stdout, r.stdout + r.stderr
    peak = int(r.stdout.split()[-1])
    assert peak < 2 * 1024**3, f"{peak / 1024**3:.2f} GB"


# --------------------------------------------------------------------------- 6. frames: one rule for every container


def test_every_multi_frame_container_is_refused_with_how_to_pick_a_slice(slice_grey, model_file, tmp_path, capsys):
    frames = [Image.fromarray(slice_grey), Image.fromarray(255 - slice_grey), Image.fromarray(slice_grey // 2)]
    frames[0].save(tif := tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(apng := tmp_path / "animated.png", save_all=True, append_images=frames[1:])
    frames[0].save(gif := tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    stack = dicom_of(tmp_path / "stack.dcm", np.stack([slice_grey] * 3), NumberOfFrames=3)
    for path, container in ((tif, "TIFF"), (apng, "PNG"), (gif, "GIF"), (stack, "DICOM")):
        rc, _, err = cli(capsys, "predict", path, "--model", model_file)
        assert rc == 1
        one_line(err, path, f"{container} holds 3 frames", "0 to 2", "as its own file")


# --------------------------------------------------------------------------- 7. the small ones


def test_png_exif_orientation_is_honoured_as_jpeg_s_is(slice_grey, tmp_path):
    upright = Image.fromarray(slice_grey[:, 40:-40])  # not square, so a missed turn shows
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; shown turned 90 degrees clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    stored.save(png := tmp_path / "turned.png", exif=exif)
    stored.save(jpg := tmp_path / "turned.jpg", exif=exif, quality=100)
    assert Image.open(png).getexif()[0x0112] == 6
    np.testing.assert_array_equal(predict.read_scan(png, 64), images.square_resize(upright, 64))
    assert np.abs(predict.read_scan(jpg, 64).astype(int) - predict.read_scan(png, 64)).mean() < 2


@pytest.mark.parametrize("name", ["cuda", "cuda:3", "tpu", "mps"])
def test_a_device_this_machine_lacks_is_one_line_and_exit_2(name, model_file, real_image, monkeypatch, capsys):
    monkeypatch.setattr(device, "accelerators", lambda: {"cpu": True, "cuda": False, "mps": False})
    monkeypatch.setenv(device.DEVICE_ENV, name)
    rc, out, err = cli(capsys, "predict", real_image, "--model", model_file)
    assert rc == 2 and out == ""
    one_line(err, repr(name), "device")


def test_csv_cells_that_would_be_formulas_are_escaped(real_image, model_file, tmp_path, monkeypatch, capsys):
    names = ["=1+2.jpg", "+cmd.jpg", "-2+3.jpg", "@SUM(A1).jpg", "plain.jpg"]
    for name in names:
        shutil.copy(real_image, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "predict", "--model", model_file, "--format", "csv", "--out", "=cams", "--", *names)
    assert rc == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert frame.path.tolist() == ["'" + n for n in names[:-1]] + ["plain.jpg"]
    assert all(cell.startswith("'=cams") for cell in frame.cam_png)
    assert not any(str(cell).startswith(("=", "+", "-", "@")) for cell in frame.to_numpy().ravel())


def _nifti(path: Path) -> Path:
    header = bytearray(348)
    header[0:4] = struct.pack("<i", 348)
    header[344:348] = b"n+1\0"
    path.write_bytes(bytes(header) + bytes(4) + bytes(64 * 64 * 2))
    return path


def test_refusals_of_other_formats_name_the_file_and_the_format(slice_grey, model_file, tmp_path, capsys):
    Image.fromarray(slice_grey).save(gif := tmp_path / "slice.gif")
    nii = _nifti(tmp_path / "brain.nii")
    (gz := tmp_path / "brain.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(60))
    for path, words in ((gif, "a GIF file"), (nii, "a NIfTI-1 file"), (gz, "gzip-compressed")):
        rc, _, err = cli(capsys, "predict", path, "--model", model_file)
        assert rc == 1
        line = one_line(err, path, words, "predict reads JPEG, PNG, TIFF, BMP and DICOM")
        assert "object at 0x" not in line and "BytesIO" not in line
