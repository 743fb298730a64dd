"""`make data`'s figshare step at full scale, offline: all 3,064 slices rebuilt as a figshare-style release.

Each figshare-derived Kaggle image and its shipped mask are turned back to the release's orientation
(what h5py reads is the Kaggle file turned 90 degrees anticlockwise), written as MATLAB v7.3 files
(`tests/test_figshare.write_mat`, with MATLAB's 512-byte header) into the four part zips, served with a
figshare-style API listing from 127.0.0.1, and matched by `figshare.ensure` against a symlinked copy of
the whole Kaggle set. It checks that the derived masks and patients csv equal the shipped ones, and
times the matching. It shows the matching at scale (every mirrored copy of the Kaggle set included);
it cannot show that the real release's slices correlate as well with their Kaggle files.

    .venv/bin/python benchmarks/figshare_rebuilt_release.py [--work DIR]   # about 1 GB of disk in DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from braintumour import data, figshare
from braintumour.config import CLASSES, MASKS_DIRNAME, PATIENTS_FILENAME, SPLITS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_figshare import RELEASE, Server, part_name, write_mat  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="folder for the rebuilt release and outputs (default: a temporary one)")
    args = ap.parse_args()
    real = data.find_dataset()
    masks, patients_path = data.masks_dir(real, required=True), data.patients_csv(real, required=True)
    patients = pd.read_csv(patients_path, dtype={"patient_id": str})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        served, kaggle = work / "served", work / "kaggle" / real.name
        served.mkdir(parents=True)
        t0 = time.time()
        zips: dict[str, zipfile.ZipFile] = {}
        rng = np.random.default_rng(0)
        for row in patients.itertuples():
            grey = np.asarray(data.decode_grey((real / row.path).read_bytes()), np.int16)
            mask = np.asarray(Image.open(masks / Path(row.path).with_suffix(".png"))) > 0
            label = {v: k for k, v in figshare.LABELS.items()}[row.path.split("/")[1]]
            image = RELEASE(grey) * 8 + rng.integers(0, 4, grey.shape)
            name = part_name(int(row.figshare_id))
            if name not in zips:
                zips[name] = zipfile.ZipFile(served / name, "w", zipfile.ZIP_DEFLATED)
            content = write_mat(label, row.patient_id, image, RELEASE(mask), userblock=True)
            zips[name].writestr(f"{row.figshare_id}.mat", content)
        for zf in zips.values():
            zf.close()
        for split in SPLITS:
            for cls in CLASSES:
                (kaggle / split / cls).mkdir(parents=True)
                for p in (real / split / cls).iterdir():
                    os.symlink(p, kaggle / split / cls / p.name)
        print(f"rebuilt {len(patients)} slices in {time.time() - t0:.0f} s")
        os.environ["BRAINTUMOUR_ROOT"] = str(work / "project")  # downloads go to work/project/data/raw
        server = Server(served)
        server.list_files()
        t0 = time.time()
        out = figshare.ensure(kaggle, api_url=f"{server.base}/api")
        print(f"figshare.ensure: {time.time() - t0:.0f} s")
        server.httpd.shutdown()
        derived = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
        shipped = sorted(p.relative_to(masks).as_posix() for p in masks.rglob("*.png"))
        differ = [r for r in derived if r in shipped and not np.array_equal(
            np.asarray(Image.open(out / r)), np.asarray(Image.open(masks / r)))]
        same_csv = (kaggle.parent / PATIENTS_FILENAME).read_bytes() == patients_path.read_bytes()
        print(f"{MASKS_DIRNAME}: {len(derived)} derived, {len(shipped)} shipped, same names {derived == shipped}, "
              f"{len(differ)} differ in any pixel; {PATIENTS_FILENAME} byte-identical: {same_csv}")


if __name__ == "__main__":
    main()
