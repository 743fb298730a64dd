"""CAM time per model: five pytorch-grad-cam calls (one per method) vs one shared pass.

Why notebook 05 uses `explain.MultiCamExplainer`: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM and
Eigen-CAM read the same activations and gradients of the same layer, so one forward and backward
pass per batch serves all five. Weights are random (timing and equality do not depend on them).

    .venv/bin/python benchmarks/cam_shared_pass.py [--models custom_cnn resnet50 vgg16_bn] [--images 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from braintumour.analysis import explain
from braintumour.training.models import build_model

METHODS = list(explain.SHARED_PASS_METHODS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["custom_cnn", "resnet50", "vgg16_bn"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (args.images, args.size, args.size), dtype=np.uint8)
    targets = rng.integers(0, 4, args.images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images, {args.size} px")
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name).eval()
        t0 = time.perf_counter()
        alone = {}
        for method in METHODS:
            with explain.CamExplainer(model, method) as cam:
                alone[method] = cam(images, targets)
        separate = time.perf_counter() - t0
        t0 = time.perf_counter()
        with explain.MultiCamExplainer(model, METHODS) as cams:
            shared = cams(images, targets)
        one_pass = time.perf_counter() - t0
        diff = max(float(np.abs(alone[m] - shared[m]).max()) for m in METHODS)
        print(f"{name:12s} five calls {separate:7.1f} s   shared pass {one_pass:7.1f} s   "
              f"ratio {separate / one_pass:4.1f}x   max difference {diff:.1e}")


if __name__ == "__main__":
    main()
