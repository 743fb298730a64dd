"""`make data`'s figshare step at full scale, offline: all 3,064 slices rebuilt as a figshare-style release.

Each figshare-derived Kaggle image and its shipped mask are turned back to the release's orientation
(what h5py reads is the Kaggle file turned 90 degrees anticlockwise), written as MATLAB v7.3 files
(`tests/test_figshare.write_mat`, with MATLAB's 512-byte header) into the four part zips, served with a
figshare-style API listing from 127.0.0.1, and matched by `figshare.ensure` against a symlinked copy of
the whole Kaggle set. It checks that the derived masks and patients csv equal the shipped ones, and
times the matching. It shows the matching at scale (every mirrored copy of the Kaggle set included);
it cannot show that the real release's slices correlate as well with their Kaggle files.
`--limit N` rebuilds N slices spread over the release, matched against their own Kaggle files only
(seconds: a check of the script, not of the matching at scale). Prints what it finds and writes it to
`experiments/results/figshare_rebuilt_release[-limit<N>].json`.

    .venv/bin/python experiments/figshare_rebuilt_release.py [--work DIR]   # about 1 GB of disk in DIR
    .venv/bin/python experiments/figshare_rebuilt_release.py --limit 8 --out /tmp/results
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import ModuleType

import common
import numpy as np
import pandas as pd
from PIL import Image

from braintumour.config import CLASSES, MASKS_DIRNAME, PATIENTS_FILENAME, SPLITS
from braintumour.datasets import figshare, images
from braintumour.datasets.kaggle import find_dataset, load_dataset, masks_dir, patients_csv


def release_builder() -> ModuleType:
    """tests/test_figshare.py, whose `write_mat`, `part_name`, `RELEASE` and `Server` build and serve
    the offline test's release: loaded from its file, so that the test and this script build one format."""
    path = Path(__file__).resolve().parents[1] / "tests" / "test_figshare.py"
    spec = importlib.util.spec_from_file_location("test_figshare", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.splitlines()[0], default_seeds=None, overrides=False, runs_root=False)
    ap.add_argument("--work", default="", help="folder for the rebuilt release and outputs (default: a temporary one)")
    ap.add_argument("--limit", type=int, default=None, help="rebuild only this many slices (a quick check)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit: at least 1")
    tf = release_builder()
    real = find_dataset()
    fingerprint = load_dataset(real).fingerprint
    masks, patients_path = masks_dir(real, required=True), patients_csv(real, required=True)
    patients = pd.read_csv(patients_path, dtype={"patient_id": str})
    if args.limit is not None:  # every k-th slice: both splits and the three tumour classes
        patients = patients.iloc[:: max(1, len(patients) // args.limit)].head(args.limit).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        served, kaggle = work / "served", work / "kaggle" / real.name
        served.mkdir(parents=True)
        t0 = time.time()
        zips: dict[str, zipfile.ZipFile] = {}
        rng = np.random.default_rng(0)
        for row in patients.itertuples():
            grey = np.asarray(images.decode_grey((real / row.path).read_bytes()), np.int16)
            mask = np.asarray(Image.open(masks / Path(row.path).with_suffix(".png"))) > 0
            label = {v: k for k, v in figshare.LABELS.items()}[row.path.split("/")[1]]
            image = tf.RELEASE(grey) * 8 + rng.integers(0, 4, grey.shape)
            name = tf.part_name(int(row.figshare_id))
            if name not in zips:
                zips[name] = zipfile.ZipFile(served / name, "w", zipfile.ZIP_DEFLATED)
            content = tf.write_mat(label, row.patient_id, image, tf.RELEASE(mask), userblock=True)
            zips[name].writestr(f"{row.figshare_id}.mat", content)
        for zf in zips.values():
            zf.close()
        subset = set(patients.path)
        for split in SPLITS:
            for cls in CLASSES:
                (kaggle / split / cls).mkdir(parents=True)
                for p in (real / split / cls).iterdir():
                    if args.limit is None or f"{split}/{cls}/{p.name}" in subset:
                        os.symlink(p, kaggle / split / cls / p.name)
        rebuild_seconds = time.time() - t0
        print(f"rebuilt {len(patients)} slices in {rebuild_seconds:.0f} s")
        root_before = os.environ.get("BRAINTUMOUR_ROOT")
        os.environ["BRAINTUMOUR_ROOT"] = str(work / "project")  # downloads go to work/project/data/raw
        server = tf.Server(served)
        try:
            server.list_files()
            t0 = time.time()
            out = figshare.ensure(kaggle, api_url=f"{server.base}/api")
            ensure_seconds = time.time() - t0
            print(f"figshare.ensure: {ensure_seconds:.0f} s")
        finally:  # the result is written in this project, with its commit
            server.httpd.shutdown()
            if root_before is None:
                os.environ.pop("BRAINTUMOUR_ROOT", None)
            else:
                os.environ["BRAINTUMOUR_ROOT"] = root_before
        derived = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
        if args.limit is None:
            shipped = sorted(p.relative_to(masks).as_posix() for p in masks.rglob("*.png"))
            expected_csv = patients_path.read_bytes()
        else:
            shipped = sorted(Path(p).with_suffix(".png").as_posix() for p in patients.path)
            expected_csv = patients.sort_values("path", ignore_index=True).to_csv(
                index=False, lineterminator="\n").encode()
        differ = [r for r in derived if r in shipped and not np.array_equal(
            np.asarray(Image.open(out / r)), np.asarray(Image.open(masks / r)))]
        same_csv = (kaggle.parent / PATIENTS_FILENAME).read_bytes() == expected_csv
        print(f"{MASKS_DIRNAME}: {len(derived)} derived, {len(shipped)} shipped, same names {derived == shipped}, "
              f"{len(differ)} differ in any pixel; {PATIENTS_FILENAME} byte-identical: {same_csv}")
        kaggle_files = sum(1 for p in kaggle.rglob("*") if p.is_symlink())
    name = "figshare_rebuilt_release" + ("" if args.limit is None else f"-limit{args.limit}")
    common.write_result(args, name, fingerprint, limit=args.limit, slices=len(patients), kaggle_files=kaggle_files,
                        rebuild_seconds=round(rebuild_seconds, 1), ensure_seconds=round(ensure_seconds, 1),
                        masks_derived=len(derived), masks_shipped=len(shipped), same_names=derived == shipped,
                        masks_differing=len(differ), masks_differing_names=differ[:50],
                        patients_csv_identical=same_csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
