"""Byte-level fuzzing of `predict` (issue 51): over a thousand seeded mutations of real JPEG, PNG, TIFF and
DICOM files (bit flips, byte overwrites, truncations, swapped header bytes, header fields set to hostile
values), all through the command line in one run.

It passes when there is no traceback, every file is either one valid result or one line naming it,
the JSON output is strict, and no result comes from non-finite input (checked against PIL's and
pydicom's own reading of the file, not predict's). Every mutation is drawn from a generator seeded by
SEED and its index, and the index is in the file's name, so a failure names what to replay with
`mutations(...)`.
"""

from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from conftest import cli
from PIL import Image
from pydicom.data import get_testdata_file
from tiny import tiny_config

from braintumour.config import CLASSES
from braintumour.datasets import images
from braintumour.training.checkpoints import save_checkpoint
from braintumour.training.models import build_model

SEED = 51
PER_SOURCE = 120  # x 9 sources: 1,080 mutations
HEADER = 1024  # where most mutations land: the bytes every decoder parses before the pixels

# Values that break parsers: zero, one, powers of two and their neighbours, the largest of each width.
INTS = (0, 1, 2, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 255, 256, 4096, 8192, 8193, 32767, 32768, 65535)
DS = (b"nan", b"inf", b"-inf", b"1e308", b"-1e308", b"0", b"abc", b"1\\2", b"1e-320", b"-1", b"", b"1e12", b"2e12")
IS = (b"0", b"2", b"-1", b"99999", b"x")
CS = (b"MONOCHROME1", b"RGB", b"PALETTE COLOR", b"YBR_FULL", b"", b"MONOCHROME2")
UIDS = (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.5",
        b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.90", b"9.9.9")
# DICOM image-pixel and rescale elements: (group, element) -> the values tried there.
DICOM_FIELDS = {(0x0028, 0x0010): "US", (0x0028, 0x0011): "US", (0x0028, 0x0100): "US", (0x0028, 0x0101): "US",
                (0x0028, 0x0102): "US", (0x0028, 0x0103): "US", (0x0028, 0x0002): "US", (0x0028, 0x0004): "CS",
                (0x0028, 0x1052): "DS", (0x0028, 0x1053): "DS", (0x0028, 0x0008): "IS", (0x0002, 0x0010): "UI"}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "custom_cnn.pt"
    save_checkpoint(path, build_model("custom_cnn").eval(), tiny_config(image_size=64))
    return path


@pytest.fixture(scope="module")
def sources(real_dir) -> dict[str, bytes]:
    """Real files to mutate: a Kaggle JPEG, two Kaggle PNGs (RGBA, palette), a real slice as 16-bit PNG,
    float TIFF and 16-bit TIFF, and pydicom's real MR and CT slices (plain, RLE, RGB)."""
    jpeg = sorted((real_dir / "Testing" / "glioma").iterdir())[0]
    grey = np.asarray(images.decode_grey(jpeg.read_bytes()))[::2, ::2]  # 256 x 256: decoding stays cheap
    out = {"kaggle.jpg": jpeg.read_bytes(),
           "rgba.png": (real_dir / "Training" / "notumor" / "Tr-no_1019.jpg").read_bytes(),
           "palette.png": (real_dir / "Training" / "notumor" / "Tr-no_1012.jpg").read_bytes(),
           "wide.png": _encode(Image.fromarray(grey.astype(np.uint16) * 16), "PNG"),
           "float.tif": _encode(Image.fromarray(grey.astype(np.float32) / 7), "TIFF"),
           "wide.tif": _encode(Image.fromarray(grey.astype(np.uint16) * 16), "TIFF")}
    for name in ("MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm"):
        out[name] = Path(get_testdata_file(name, download=False)).read_bytes()
    assert len(out) * PER_SOURCE >= 1000
    return out


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


# --------------------------------------------------------------------------- mutations


def _at(raw: bytes, rng: np.random.Generator) -> int:
    """A position, three times in four within the header."""
    end = min(len(raw), HEADER) if rng.random() < 0.75 else len(raw)
    return int(rng.integers(0, end))


def flip_bits(raw: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(raw)
    for _ in range(rng.integers(1, 9)):
        b[_at(raw, rng)] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def overwrite_bytes(raw: bytes, rng: np.random.Generator) -> bytes:
    """A few bytes set to extremes; or one aligned 4-byte word anywhere set to a float32 NaN, infinity or
    extreme (in a float TIFF's pixels, a non-finite value)."""
    b = bytearray(raw)
    if rng.random() < 0.3:
        at = 4 * int(rng.integers(0, len(raw) // 4))
        b[at : at + 4] = [b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\xff\xff\x7f\x7f"][
            rng.integers(0, 4)]
        return bytes(b)
    for _ in range(rng.integers(1, 5)):
        b[_at(raw, rng)] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
    return bytes(b)


def truncate(raw: bytes, rng: np.random.Generator) -> bytes:
    return raw[: max(1, _at(raw, rng))]


def swap_bytes(raw: bytes, rng: np.random.Generator) -> bytes:
    """Two windows of 1, 2 or 4 bytes in the header swapped: fields exchanging their values."""
    width = int(rng.choice([1, 2, 4]))
    end = min(len(raw), HEADER) - width
    i, j = sorted(int(k) for k in rng.integers(0, end, 2))
    if j - i < width:
        return raw
    return raw[:i] + raw[j : j + width] + raw[i + width : j] + raw[i : i + width] + raw[j + width :]


def set_field(raw: bytes, rng: np.random.Generator) -> bytes:
    """One header field of the container set to a hostile value, where the container is recognised (and
    still whole enough, after an earlier mutation, to find the field in)."""
    field = {b"\x89P": _png_field, b"\xff\xd8": _jpeg_field, b"II": _tiff_field, b"MM": _tiff_field}.get(raw[:2])
    field = _dicom_field if raw[128:132] == b"DICM" else field
    try:
        return field(raw, rng) if field else overwrite_bytes(raw, rng)
    except (struct.error, ValueError, IndexError):
        return overwrite_bytes(raw, rng)


def _png_field(raw: bytes, rng: np.random.Generator) -> bytes:
    """IHDR's width, height, bit depth, colour type or interlace method; its CRC recomputed (mostly), so
    the value reaches the decoder."""
    offset, size = [(16, 4), (20, 4), (24, 1), (25, 1), (28, 1)][rng.integers(0, 5)]
    value = int(rng.choice(INTS)) % (256**size)
    b = bytearray(raw)
    b[offset : offset + size] = value.to_bytes(size, "big")
    if rng.random() < 0.9:
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def _jpeg_field(raw: bytes, rng: np.random.Generator) -> bytes:
    """The frame header's precision, height, width or component count."""
    at = max(raw.find(b"\xff\xc0"), raw.find(b"\xff\xc2"))
    if at < 0:
        return overwrite_bytes(raw, rng)
    offset, size = [(4, 1), (5, 2), (7, 2), (9, 1)][rng.integers(0, 4)]
    b = bytearray(raw)
    b[at + offset : at + offset + size] = (int(rng.choice(INTS)) % (256**size)).to_bytes(size, "big")
    return bytes(b)


def _tiff_field(raw: bytes, rng: np.random.Generator) -> bytes:
    """One entry of the first IFD: its type, count or value."""
    end = "<" if raw[:2] == b"II" else ">"
    ifd = struct.unpack(end + "I", raw[4:8])[0]
    n = struct.unpack(end + "H", raw[ifd : ifd + 2])[0]
    entry = ifd + 2 + 12 * int(rng.integers(0, n))
    offset, size = [(2, 2), (4, 4), (8, 2), (8, 4)][rng.integers(0, 4)]
    b = bytearray(raw)
    b[entry + offset : entry + offset + size] = struct.pack(end + ("H" if size == 2 else "I"), int(rng.choice(INTS)))
    return bytes(b)


def _dicom_field(raw: bytes, rng: np.random.Generator) -> bytes:
    """An image-pixel, rescale or transfer-syntax element (explicit VR little endian) given another value."""
    present = [(tag, vr) for tag, vr in DICOM_FIELDS.items()
               if struct.pack("<HH", *tag) + vr.encode() in raw[:HEADER * 4]]
    if not present:
        return overwrite_bytes(raw, rng)
    tag, vr = present[rng.integers(0, len(present))]
    at = raw.index(struct.pack("<HH", *tag) + vr.encode())
    old = struct.unpack("<H", raw[at + 6 : at + 8])[0]
    if vr == "US":
        value = struct.pack("<H", int(rng.choice(INTS)))
    else:
        options = {"DS": DS, "IS": IS, "CS": CS, "UI": UIDS}[vr]
        value = options[int(rng.integers(0, len(options)))]
        value += (b"\0" if vr == "UI" else b" ") * (len(value) % 2)
    return raw[: at + 6] + struct.pack("<H", len(value)) + value + raw[at + 8 + old :]


MUTATIONS: tuple[Callable[[bytes, np.random.Generator], bytes], ...] = (
    flip_bits, overwrite_bytes, truncate, swap_bytes, set_field)


def mutations(name: str, raw: bytes, index: int) -> tuple[str, bytes]:
    """Mutation `index` of source `name`: the same bytes on every run (seeded by SEED, the source and
    the index), one or two mutations in a row."""
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode()), index])
    kinds = [MUTATIONS[index % len(MUTATIONS)]]
    if rng.random() < 0.25:
        kinds.append(MUTATIONS[rng.integers(0, len(MUTATIONS))])
    for kind in kinds:
        raw = kind(raw, rng)
    return "+".join(k.__name__ for k in kinds), raw


# --------------------------------------------------------------------------- the oracle


def raw_values_finite(path: Path) -> bool | None:
    """Whether the file's pixel values, as PIL or pydicom read them (rescaled for DICOM), are all finite;
    None where they cannot read it. Independent of predict's decoding, which must not have given a
    result for a file where this is False."""
    raw = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix == ".dcm":
                ds = pydicom.dcmread(io.BytesIO(raw))
                slope, intercept = float(ds.get("RescaleSlope") or 1), float(ds.get("RescaleIntercept") or 0)
                return bool(np.isfinite(ds.pixel_array.astype(np.float64) * slope + intercept).all())
            with Image.open(io.BytesIO(raw)) as im:
                return bool(np.isfinite(np.asarray(im, dtype=np.float64)).all())
    except Exception:
        return None


# --------------------------------------------------------------------------- the test


def test_fuzzed_files_give_a_valid_result_or_a_named_refusal(sources, model_file, tmp_path, capsys):
    folder = tmp_path / "fuzz"
    folder.mkdir()
    kinds: Counter[str] = Counter()
    for name, raw in sources.items():
        stem, suffix = name.rsplit(".", 1)
        for i in range(PER_SOURCE):
            kind, mutated = mutations(name, raw, i)
            kinds[kind.split("+")[0]] += 1
            (folder / f"{stem}-{i:03d}-{kind}.{suffix}").write_bytes(mutated)
    paths = sorted(folder.iterdir())
    assert len(paths) >= 1000 and min(kinds.values()) >= 200, kinds

    rc, out, err = cli(capsys, "predict", folder, "--model", model_file, "--format", "json")
    assert "Traceback" not in err and rc in (0, 1), err[-3000:]
    parsed = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    results = {row["path"]: row for row in parsed["predictions"]}
    refusals = {}
    for line in parsed["errors"]:
        path = next((p for p in map(str, paths) if line.startswith(p + ":")), None)
        assert path is not None and path not in refusals, f"a refusal naming no single file: {line}"
        assert "\n" not in line and "object at 0x" not in line, line
        refusals[path] = line
    assert set(results).isdisjoint(refusals) and set(results) | set(refusals) == set(map(str, paths))
    count = re.compile(r"\d+ of \d+ file\(s\) failed")
    stray = [line for line in err.splitlines() if line.strip() and not line.startswith("ERROR: ")
             and not count.fullmatch(line)]
    assert not stray, stray[:5]

    for path, row in results.items():
        p = np.array([row[f"p_{c}"] for c in CLASSES])
        assert row["prediction"] in CLASSES and np.isfinite(p).all() and abs(p.sum() - 1) < 1e-4, row
        assert raw_values_finite(Path(path)) is not False, f"{path}: a result from non-finite pixel values"
    assert results and refusals  # both outcomes occur: the mutations reach past the first check
