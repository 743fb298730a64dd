import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braintumour.config import EXPECTED_COUNTS
from braintumour.datasets import images, kaggle

# --------------------------------------------------------------------------- discovery


def test_discovery_order_env_then_data_raw_then_shared(isolated_root, mini_dataset, monkeypatch, tmp_path):
    shared = isolated_root.parent / "shared" / "datasets" / "brain-tumor-mri"
    shutil.copytree(mini_dataset, shared)
    assert kaggle.find_dataset() == shared.resolve()

    raw = isolated_root / "data" / "raw" / "brain-tumor-mri"
    shutil.copytree(mini_dataset, raw)
    assert kaggle.find_dataset() == raw.resolve()

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(mini_dataset, elsewhere)
    monkeypatch.setenv("BRAIN_MRI_DIR", str(elsewhere))
    assert kaggle.find_dataset() == elsewhere.resolve()


def test_env_var_pointing_nowhere_is_an_error_not_a_fallback(isolated_root, monkeypatch, tmp_path):
    monkeypatch.setenv("BRAIN_MRI_DIR", str(tmp_path / "typo"))
    with pytest.raises(kaggle.DataNotFoundError, match="BRAIN_MRI_DIR"):
        kaggle.find_dataset()


def test_missing_data_says_where_to_put_it(isolated_root):
    with pytest.raises(kaggle.DataNotFoundError) as e:
        kaggle.find_dataset()
    msg = str(e.value)
    assert "data/raw/brain-tumor-mri" in msg and "make data" in msg and "BRAIN_MRI_DIR" in msg


# --------------------------------------------------------------------------- layout


def test_real_dataset_layout_and_counts(dataset):
    counts = dataset.manifest.groupby(["split", "class_name"]).size()
    for split, per_class in EXPECTED_COUNTS.items():
        for cls, n in per_class.items():
            assert counts[(split, cls)] == n
    assert len(dataset.fingerprint) == 64
    assert set(dataset.manifest.columns) >= {"path", "split", "class_name", "sha256", "width", "height", "mode"}


def test_missing_class_folder_is_named(mini_dataset):
    shutil.rmtree(mini_dataset / "Testing" / "pituitary")
    with pytest.raises(kaggle.DatasetLayoutError, match="Testing/pituitary"):
        kaggle.list_images(mini_dataset)


def test_wrong_counts_are_reported(mini_dataset):
    with pytest.raises(kaggle.DatasetLayoutError, match=r"Training/glioma: 2 files, expected 1321"):
        kaggle.build_manifest(mini_dataset)


def test_fingerprint_changes_when_a_file_changes(mini_dataset):
    before = kaggle.fingerprint(kaggle.build_manifest(mini_dataset, expected=None))
    victim = next((mini_dataset / "Training" / "glioma").iterdir())
    Image.open(victim).convert("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(victim, "JPEG")
    after = kaggle.fingerprint(kaggle.build_manifest(mini_dataset, expected=None))
    assert before != after


# --------------------------------------------------------------------------- decoding


def _encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


_RAMP = np.tile(np.linspace(0, 1, 64), (48, 1))
_HIGH_BIT = {"I;16": np.uint16, "I": np.int32, "F": np.float32}


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("I", "TIFF"),
     ("F", "TIFF")],
)
def test_every_mode_decodes_to_8bit_grey(mode, fmt):
    if mode in _HIGH_BIT:
        im = Image.fromarray((_RAMP * 4095).astype(_HIGH_BIT[mode]))  # a 12-bit scan in a wider container
    else:
        grey = Image.fromarray((_RAMP * 255).astype(np.uint8), "L")
        im = grey.convert("RGB").convert("P") if mode == "P" else grey.convert(mode)
    assert im.mode == mode
    out = images.decode_grey(_encode(im, fmt))
    assert out.mode == "L" and out.size == (64, 48)
    arr = np.asarray(out)
    assert arr[:, 0].max() <= 2 and arr[:, -1].min() >= 250  # dark stays dark, bright is stretched to white


def test_transparent_pixels_become_black():
    im = Image.new("RGBA", (16, 16), (255, 255, 255, 0))
    assert np.asarray(images.decode_grey(_encode(im))).max() == 0


def test_real_images_of_every_mode_in_the_archive_decode(dataset):
    for mode, rows in dataset.manifest.groupby("mode"):
        arr = images.load_image(dataset.root / rows.path.iloc[0], 64)
        assert arr.shape == (64, 64) and arr.dtype == np.uint8, mode
        assert arr.max() > 0, mode


def test_non_square_images_are_padded_not_stretched():
    im = Image.new("L", (200, 100), 255)
    arr = images.square_resize(im, 50)
    assert arr.shape == (50, 50)
    assert arr[0].max() == 0 and arr[-1].max() == 0  # padding rows
    assert arr[25].min() == 255  # the image itself, full width


def test_truncated_jpeg_names_the_file(tmp_path, real_dir):
    src = next((real_dir / "Testing" / "glioma").iterdir())
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(images.ImageDecodeError, match="truncated.jpg"):
        images.load_image(bad, 64)


def test_text_file_named_jpg_names_the_file(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image\n")
    with pytest.raises(images.ImageDecodeError, match="notes.jpg"):
        images.load_image(bad, 64)


def test_empty_file_names_the_file(tmp_path):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    with pytest.raises(images.ImageDecodeError, match="empty.jpg: file is empty"):
        images.load_image(bad, 64)


def test_bad_file_stops_manifest_unless_skipping(mini_dataset):
    bad = mini_dataset / "Training" / "glioma" / "zz-bad.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(images.ImageDecodeError, match="zz-bad.jpg"):
        kaggle.build_manifest(mini_dataset, expected=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = kaggle.build_manifest(mini_dataset, expected=None, skip_bad=True)
    row = manifest[manifest.path.str.endswith("zz-bad.jpg")].iloc[0]
    assert "zz-bad.jpg" in row.error
    assert any("zz-bad.jpg" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- cache


def test_cache_miss_hit_and_corruption(isolated_root, mini_dataset, monkeypatch):
    monkeypatch.setenv("BRAIN_MRI_DIR", str(mini_dataset))
    ds = kaggle.Dataset(mini_dataset, m := kaggle.build_manifest(mini_dataset, expected=None), kaggle.fingerprint(m))
    arr_path, meta_path = kaggle.cache_paths(ds.fingerprint, 32)
    assert not arr_path.exists()

    first = kaggle.load_images(ds, 32)  # miss: decodes and writes
    assert arr_path.is_file() and meta_path.is_file()
    assert first.shape == (len(m), 32, 32)
    expected = images.load_image(mini_dataset / m.path.iloc[3], 32)
    np.testing.assert_array_equal(first[3], expected)

    stamp = arr_path.stat().st_mtime_ns
    second = kaggle.load_images(ds, 32)  # hit: nothing rewritten
    assert arr_path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, second)

    raw = bytearray(arr_path.read_bytes())  # corrupt one pixel byte near the end
    raw[-5] ^= 0xFF
    arr_path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="stale or corrupt"):
        third = kaggle.load_images(ds, 32)
    np.testing.assert_array_equal(first, third)

    arr_path.write_bytes(b"garbage")  # unreadable
    with pytest.warns(UserWarning, match="unreadable"):
        np.testing.assert_array_equal(first, kaggle.load_images(ds, 32))


def test_cache_is_keyed_by_size_and_fingerprint(isolated_root, mini_dataset):
    m = kaggle.build_manifest(mini_dataset, expected=None)
    ds = kaggle.Dataset(mini_dataset, m, kaggle.fingerprint(m))
    a, _ = kaggle.cache_paths(ds.fingerprint, 32)
    b, _ = kaggle.cache_paths(ds.fingerprint, 48)
    c, _ = kaggle.cache_paths("0" * 64, 32)
    assert len({a, b, c}) == 3


def test_manifest_cache_is_rebuilt_when_a_file_changes(isolated_root, mini_dataset, monkeypatch):
    first = kaggle.load_dataset(mini_dataset, expected=None)
    assert (isolated_root / "data" / "interim" / "manifest.csv").is_file()
    again = kaggle.load_dataset(mini_dataset, expected=None)
    assert again.fingerprint == first.fingerprint
    victim = mini_dataset / first.manifest.path.iloc[0]
    Image.open(victim).convert("L").rotate(90).save(victim, "JPEG")
    os.utime(victim, ns=(1, 1))
    assert kaggle.load_dataset(mini_dataset, expected=None).fingerprint != first.fingerprint


def test_masks_and_patients_are_found_beside_the_dataset(real_dir):
    masks = kaggle.masks_dir(real_dir)
    assert masks is not None and (masks / "Testing" / "glioma").is_dir()
    assert kaggle.patients_csv(real_dir) is not None


def test_mask_and_image_share_geometry(real_dir):
    masks = kaggle.masks_dir(real_dir)
    mask_file = next((masks / "Testing" / "glioma").iterdir())
    image_file = real_dir / "Testing" / "glioma" / (mask_file.stem + ".jpg")
    with Image.open(mask_file) as m, Image.open(image_file) as i:
        assert m.size == i.size
    mask = images.load_mask(mask_file, 64)
    assert mask.shape == (64, 64) and mask.dtype == bool and 0 < mask.sum() < 64 * 64


def test_path_of_manifest_rows_resolve(dataset):
    assert all((dataset.root / p).is_file() for p in dataset.manifest.path.sample(50, random_state=0))
    assert isinstance(dataset.root, Path)
