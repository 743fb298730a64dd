"""What the two flags of #49 cost `predict`: time per image with and without them.

"With": `predict.predict_files` as the command runs it (input check, one forward pass that also captures
the features, the unfamiliar score the model's `.ood` sidecar holds). "Without": the same call with
`screen=False`, predict as it was before the flags (decode, preprocess, forward, calibration). Both on the
same real Kaggle Testing files, no CAM (`--out` not given), in alternating order, the median of `--repeats`
runs each after one warm-up run; the target is under 10% more per image.

    .venv/bin/python benchmarks/ood_overhead.py [--model reports/models/custom_cnn_external.pt] [--images 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from braintumour import predict
from braintumour.datasets.kaggle import load_dataset


def per_image(paths: list[Path], model: Path, screen: bool) -> float:
    t0 = time.perf_counter()
    result = predict.predict_files(paths, model, progress=False, screen=screen)
    assert len(result.rows) + len(result.errors) == len(paths)
    return (time.perf_counter() - t0) / len(paths)


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=predict.default_model())
    ap.add_argument("--images", type=int, default=256, help="Testing files, every k-th so all classes appear")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    kaggle = load_dataset()
    test = kaggle.split("Testing")
    paths = [kaggle.root / p for p in test.path.iloc[:: max(1, len(test) // args.images)][: args.images]]
    per_image(paths, args.model, True)  # warm-up: imports, oneDNN kernels, page cache
    per_image(paths, args.model, False)
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.repeats):
        for label, screen in (("without", False), ("with", True)):
            times[label].append(per_image(paths, args.model, screen))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(json.dumps({"model": str(args.model), "images": len(paths), "repeats": args.repeats,
                      "median_ms_per_image": {k: round(v * 1e3, 3) for k, v in med.items()},
                      "ratio_with_over_without": round(med["with"] / med["without"], 4),
                      "runs_ms": {k: [round(x * 1e3, 3) for x in v] for k, v in times.items()},
                      "cpu": cpu_name(), "torch_threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
