"""Class activation maps from pytorch-grad-cam, and scores of a heatmap against an expert mask.

Shape follows pytorch-grad-cam: a `CamExplainer` is built from a model and a method (the target
layer comes from `models.target_layer`, the one place that decides it) and is called with images
and target classes. The scores (pointing game, energy inside the mask, IoU) are small pure
functions of one heatmap and one mask.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from braintumour.config import CAM_SCORES
from braintumour.training.device import model_device
from braintumour.training.models import target_layer
from braintumour.training.transforms import to_input

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
# The methods that read one layer's activations (and gradients) from a single pass; Score-CAM runs its own.
SHARED_PASS_METHODS = tuple(m for m in CAM_METHODS if m != "scorecam")


def _batches(images: np.ndarray, targets: np.ndarray, batch_size: int):
    """(input tensor, pytorch-grad-cam targets) per batch of uint8 images and class indices."""
    for start in range(0, len(images), batch_size):
        x = to_input(torch.from_numpy(images[start : start + batch_size]))
        yield x, [ClassifierOutputTarget(int(c)) for c in targets[start : start + batch_size]]


class CamExplainer:
    """Heatmaps (N, H, W) in [0, 1] for uint8 images (N, H, W) and target classes, in batches."""

    def __init__(self, model: torch.nn.Module, method: str = "gradcam", batch_size: int = 32) -> None:
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
        self.model = model.eval()
        self.method = method
        self.batch_size = batch_size
        self.cam = CAM_METHODS[method](model=self.model, target_layers=[target_layer(self.model)])
        if method == "scorecam":
            self.cam.batch_size = 64  # forward passes per channel batch

    def __call__(self, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
        out = [self.cam(input_tensor=x, targets=t) for x, t in _batches(images, targets, self.batch_size)]
        return np.concatenate(out).astype(np.float32)

    def __enter__(self) -> CamExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cam.activations_and_grads.release()


class MultiCamExplainer:
    """Several CAM methods at once: {method: heatmaps (N, H, W)} from one forward and one backward pass per batch.

    pytorch-grad-cam runs a forward and a backward pass per method, but Grad-CAM, Grad-CAM++,
    HiResCAM, LayerCAM and Eigen-CAM all read the same activations (and gradients) of the same target
    layer; they differ only in how they weight them. So the methods share one recorder of activations
    and gradients: the first method that needs gradients runs the passes, the others apply their own
    weighting (the library's `compute_cam_per_layer`) to what it recorded: the same maps for a fraction
    of the passes (`benchmarks/cam_shared_pass.py` times it). Score-CAM runs its own forward passes and
    is not accepted here.
    """

    def __init__(self, model: torch.nn.Module, methods: list[str], batch_size: int = 32) -> None:
        bad = [m for m in methods if m not in SHARED_PASS_METHODS]
        if bad or not methods:
            choices = ", ".join(SHARED_PASS_METHODS)
            raise ValueError(f"unknown or unsupported CAM method(s) {bad or methods!r}; choose from {choices}")
        self.model = model.eval()
        self.batch_size = batch_size
        layer = [target_layer(self.model)]
        cams = {m: CAM_METHODS[m](model=self.model, target_layers=layer) for m in methods}
        # The pass runs through a method that uses gradients (if any does), so all of them are recorded.
        self.runner = next((m for m, c in cams.items() if c.uses_gradients), methods[0])
        self.cams = cams
        recorder = cams[self.runner].activations_and_grads
        for method, cam in cams.items():
            if method != self.runner:
                cam.activations_and_grads.release()
                cam.activations_and_grads = recorder

    def __call__(self, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {m: [] for m in self.cams}
        for x, t in _batches(images, targets, self.batch_size):
            out[self.runner].append(self.cams[self.runner](input_tensor=x, targets=t))
            for method, cam in self.cams.items():
                if method != self.runner:
                    out[method].append(cam.aggregate_multi_layers(cam.compute_cam_per_layer(x, t, False)))
        return {m: np.concatenate(maps).astype(np.float32) for m, maps in out.items()}

    def __enter__(self) -> MultiCamExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cams[self.runner].activations_and_grads.release()


def overlay(image: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """RGB uint8 overlay of a [0, 1] heatmap (jet colour map) on a uint8 greyscale image."""
    rgb = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=image_weight)


# --------------------------------------------------------------------------- scores against masks


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """Hit when the heatmap's maximum lies inside the mask, or within `tolerance_px` of it
    (Zhang et al., 2018 use 15 px at 224 px)."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    if tolerance_px <= 0:
        return bool(mask[y, x])
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return False
    return bool(((ys - y) ** 2 + (xs - x) ** 2).min() <= tolerance_px**2)


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's total mass inside the mask (energy-based pointing game, Wang et al., 2020)."""
    total = float(heatmap.sum())
    return float(heatmap[mask].sum() / total) if total > 0 else 0.0


def blank_share(heatmaps: np.ndarray) -> float:
    """Share of heatmaps (N, H, W) that are zero everywhere: Grad-CAM found no positive evidence for
    the class (the class map is negative over the whole image, and the CAM's ReLU removes it all).
    Such a map scores a pointing-game miss and no energy, whether the prediction is right or not."""
    return float((heatmaps.reshape(len(heatmaps), -1).max(axis=1) <= 0).mean()) if len(heatmaps) else 0.0


def iou_at(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU between the mask and the heatmap thresholded at `threshold` of its maximum."""
    top = heatmap.max()
    if top <= 0:
        return 0.0
    region = heatmap >= threshold * top
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 0.0


HEAD_THRESHOLD = 20  # of 255, after a light blur: MRI background is near black, JPEG noise stays below
BORDER_PX = 8  # the outer band where scanner text, frame edges and padding sit


def head_mask(image: np.ndarray, threshold: int = HEAD_THRESHOLD) -> np.ndarray:
    """The head in a uint8 slice: the largest bright connected region, holes filled (dark
    ventricles and a dark tumour core belong to the head)."""
    from scipy import ndimage

    bright = ndimage.gaussian_filter(image.astype(np.float32), 1.5) > threshold
    labelled, n = ndimage.label(bright)
    if n == 0:
        return bright
    largest = 1 + int(np.argmax(ndimage.sum(bright, labelled, index=range(1, n + 1))))
    return ndimage.binary_fill_holes(labelled == largest)


# energy_by_region's keys; titles.REGION_TITLES names them in tables.
REGIONS: tuple[str, ...] = ("tumour", "other_head", "outside_head", "border_band")


def energy_by_region(heatmap: np.ndarray, tumour: np.ndarray, head: np.ndarray, border_px: int = BORDER_PX) -> dict:
    """Where a heatmap's mass goes: shares on the tumour, on the rest of the head, and outside the
    head (these three add up to 1), and, overlapping them, on the image's outer border band. An
    empty map (all zero: the CAM was negative everywhere) has no shares: NaN."""
    total = float(heatmap.sum())
    border = np.ones_like(tumour, dtype=bool)
    border[border_px:-border_px, border_px:-border_px] = False
    if total <= 0:
        return dict.fromkeys(REGIONS, float("nan"))
    tumour = tumour.astype(bool)
    masses = (heatmap[tumour].sum(), heatmap[head & ~tumour].sum(), heatmap[~head & ~tumour].sum(),
              heatmap[border].sum())
    return {region: float(mass / total) for region, mass in zip(REGIONS, masses, strict=True)}


def region_shares(heatmaps: np.ndarray, tumours: np.ndarray, images: np.ndarray) -> pd.DataFrame:
    """`energy_by_region` per image, with each region's share of the image area alongside (what a
    uniform heatmap would score). Means over images skip empty maps (pandas skips NaN)."""
    rows = []
    for h, t, im in zip(heatmaps, tumours, images, strict=True):
        head = head_mask(im)
        rows.append(energy_by_region(h, t, head) | {
            f"area_{k}": v for k, v in energy_by_region(np.ones_like(h), t, head).items()})
    return pd.DataFrame(rows)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over range(n): a fixed subset of a class-sorted list with the class mix
    of the whole (all of it when k >= n)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)) if k > 0 else np.arange(0)


def centred_gaussian(size: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """The trivial baseline heatmap: a Gaussian blob at the image centre."""
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * (sigma_fraction * size) ** 2))
    return (g / g.max()).astype(np.float32)


POINTING_TOLERANCE_PX = 8  # at 128 px; Zhang et al.'s 15 px at 224 px, scaled
IOU_THRESHOLD = 0.5  # of the heatmap's maximum


def score_heatmaps(
    heatmaps: np.ndarray,
    masks: np.ndarray,
    tolerance_px: int = POINTING_TOLERANCE_PX,
    iou_threshold: float = IOU_THRESHOLD,
) -> pd.DataFrame:
    """Per-image pointing-game hit, energy inside the mask and IoU."""
    return pd.DataFrame(
        {
            "pointing": [pointing_game(h, m, tolerance_px) for h, m in zip(heatmaps, masks, strict=True)],
            "energy": [energy_in_mask(h, m) for h, m in zip(heatmaps, masks, strict=True)],
            "iou": [iou_at(h, m, iou_threshold) for h, m in zip(heatmaps, masks, strict=True)],
        }
    )


def summarise_scores(scores: pd.DataFrame, class_names: np.ndarray) -> dict:
    """Mean and 95% bootstrap interval of each score, overall and per class."""
    from braintumour.analysis.evaluate import bootstrap_mean_ci

    def block(frame: pd.DataFrame) -> dict:
        return {
            k: {"mean": float(frame[k].mean()), "ci95": bootstrap_mean_ci(frame[k].to_numpy()), "n": len(frame)}
            for k in CAM_SCORES
        }

    out = {"all": block(scores)}
    for c in np.unique(class_names):
        out[str(c)] = block(scores[np.asarray(class_names) == c])
    return out


def positions_in(subset: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions of `rows` (sorted, all in `subset`) within arrays computed on `subset`, such as a
    model's heatmaps of a subset of the masked images."""
    return np.searchsorted(subset, rows)


def scores_on(maps: np.ndarray, masks: np.ndarray, class_names: np.ndarray) -> dict:
    """Scores of these heatmaps against their masks (`score_heatmaps`), summarised overall and per class."""
    return summarise_scores(score_heatmaps(maps, masks), class_names)


def blob_scores(blob: np.ndarray, masks: np.ndarray, class_names: np.ndarray) -> dict:
    """The centred blob's scores on these masks (`scores_on`): the baseline that ignores the image."""
    return scores_on(np.repeat(blob[None], len(masks), axis=0), masks, class_names)


def gradcam_scores(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, masks: np.ndarray,
                   class_names: np.ndarray) -> tuple[dict, np.ndarray]:
    """Grad-CAM (true class) on masked images, scored against their masks as in notebook 05: the
    summary (`scores_on`) and the heatmaps."""
    with CamExplainer(model, "gradcam") as cam:
        maps = cam(images, labels)
    return scores_on(maps, masks, class_names), maps


def gradcam_and_blob_scores(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, masks: np.ndarray,
                            rows: np.ndarray, class_names: np.ndarray, blob: np.ndarray) -> pd.DataFrame:
    """Per-image scores of the model's Grad-CAM (true class, `source` "custom_cnn") and of the centred
    blob (`source` "centred_blob") against the masks, each with its image's `row` and `class_name`."""
    with CamExplainer(model, "gradcam") as cam:
        maps = cam(images, labels)
    model_scores = score_heatmaps(maps, masks).assign(source="custom_cnn")
    blob_frame = score_heatmaps(np.repeat(blob[None], len(rows), axis=0), masks).assign(source="centred_blob")
    both = pd.concat([model_scores, blob_frame], ignore_index=True)
    return both.assign(row=np.tile(rows, 2), class_name=np.tile(class_names, 2))


def mean_cam_scores(cams: dict) -> dict:
    """Mean over seeds of each score's overall mean; `cams`: seed -> (`gradcam_scores` summary, maps)."""
    return {k: float(np.mean([c["all"][k]["mean"] for c, _ in cams.values()])) for k in ("pointing", "energy", "iou")}


def mean_blank_share(cams: dict) -> float:
    """Mean over seeds of the share of blank heatmaps; `cams`: seed -> (summary, maps)."""
    return float(np.mean([blank_share(maps) for _, maps in cams.values()]))


def road_scores(
    model: torch.nn.Module,
    images: np.ndarray,
    heatmaps: np.ndarray,
    targets: np.ndarray,
    percentiles: tuple[int, ...] = (20, 50, 80),
    seed: int = 0,
) -> dict[str, float]:
    """ROAD (Rong et al., 2022) with pytorch-grad-cam's metrics: the mean change of the target's softmax
    confidence after removing (imputing) the most relevant pixels first (MoRF: lower is more faithful)
    and the least relevant first (LeRF: higher is more faithful), averaged over `percentiles`."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x = to_input(torch.from_numpy(images)).to(model_device(model))  # pytorch-grad-cam's CAMs move it themselves
    t = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
    model.eval()
    # ROAD's imputer adds torch.randn noise from the global stream, whose state depends on whatever
    # ran before in the kernel: a fixed seed here keeps a rerun's ROAD numbers identical.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        morf = ROADMostRelevantFirstAverage(list(percentiles))(x, heatmaps, t, model)
        lerf = ROADLeastRelevantFirstAverage(list(percentiles))(x, heatmaps, t, model)
    return {
        "morf": float(np.mean(morf)),
        "lerf": float(np.mean(lerf)),
        "lerf_minus_morf": float(np.mean(lerf - morf)),
        "percentiles": list(percentiles),
        "n": len(images),
    }
