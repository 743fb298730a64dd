"""Acquisition and contrast randomisation: a training batch made to look as if it came from other
scanners, sequences and web pipelines, so that a model cannot lean on how one collection looks.

Domain randomisation in the spirit of SynthSeg (Billot et al., 2023: random intensity remapping,
contrast, bias field, resolution and noise drawn per image) and BigAug (Zhang et al., 2020:
stacked image-quality, appearance and spatial transforms). MRI-specific steps are MONAI's intensity
transforms; the rest are a contrast inversion inside the head (T1-like <-> T2-like: CSF dark or
bright) and a JPEG re-encoding at a random quality (web-collected images are JPEGs of JPEGs).

Every draw comes from the training loop's generator (MONAI's own random states are seeded from it
once per batch), so a randomised run is as deterministic and resumable as a plain one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

HEAD_LEVEL = 0.05  # intensities above this (of 1) count as head, below as background, for the inversion
GROUP = 4  # images that share one draw of each MONAI step
SKULL_RIM = (0.03, 0.08)  # of the image's side: the rim `brain_only` removes, drawn per image


@dataclass
class Randomise:
    """Probabilities and strengths of each step (each applied to an image independently)."""

    remap: float = 0.5  # MONAI RandHistogramShift: a random piecewise-linear intensity curve
    invert: float = 0.3  # contrast inversion inside the head
    bias_field: float = 0.3  # MONAI RandBiasField: smooth multiplicative inhomogeneity
    gibbs: float = 0.2  # MONAI RandGibbsNoise: k-space truncation ringing
    low_resolution: float = 0.3  # MONAI RandSimulateLowResolution: down- and up-sampled
    blur: float = 0.2  # MONAI RandGaussianSmooth
    noise: float = 0.3  # MONAI RandRicianNoise: magnitude-image noise
    jpeg: float = 0.3  # re-encoded as JPEG at quality 30-90
    share: float = 0.5  # of each batch; the rest stays as acquired, so the Kaggle look is still learnt
    # Keeps only the brain: the head less a rim as wide as scalp and skull, so that a skull-stripped
    # collection's look (BraTS, OASIS) comes with both labels. 0: never (the default, as every run before it).
    skull_strip: float = 0.0

    def __post_init__(self) -> None:
        # Imported here: `import monai` loads all of MONAI (its apps, bundles and networks), about 6 s
        # that every notebook, test and command importing the training loop would pay otherwise.
        from monai.transforms import (
            RandBiasField,
            RandGaussianSmooth,
            RandGibbsNoise,
            RandHistogramShift,
            RandRicianNoise,
            RandSimulateLowResolution,
        )

        self.steps = [
            RandHistogramShift(num_control_points=(4, 8), prob=self.remap),
            RandBiasField(coeff_range=(0.0, 0.4), degree=3, prob=self.bias_field),
            RandGibbsNoise(alpha=(0.0, 0.6), prob=self.gibbs),
            RandSimulateLowResolution(zoom_range=(0.35, 0.9), prob=self.low_resolution),
            RandGaussianSmooth(sigma_x=(0.3, 1.5), sigma_y=(0.3, 1.5), prob=self.blur),
            RandRicianNoise(std=0.03, relative=False, sample_std=True, prob=self.noise),
        ]

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """uint8 (N, H, W) -> uint8 (N, H, W): the first `share` of the (shuffled) batch randomised.
        The inversion and the JPEG step are drawn per image; MONAI's steps per group of `GROUP`
        images, given to them as channels (one call per group: per image, their fixed cost made a
        batch several times slower than a training step)."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
        rng = np.random.default_rng(seed)
        for k, step in enumerate(self.steps):
            step.set_random_state(seed + k)
        n = round(self.share * len(images))
        out = images.clone()
        out[:n] = self._randomised(images[:n], rng)
        return out

    def _randomised(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = images.numpy().astype(np.float32) / 255.0
        if self.skull_strip:
            strip = rng.random(len(x)) < self.skull_strip
            rims = rng.uniform(*SKULL_RIM, len(x))
            for i in np.flatnonzero(strip):
                x[i] *= brain_only(images[i].numpy(), rims[i])
        flip = rng.random(len(x)) < self.invert
        head = x > HEAD_LEVEL
        x = np.where(head & flip[:, None, None], np.clip(1.0 + HEAD_LEVEL - x, 0, 1), x)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # MONAI's small per-group tensors: thread start-up costs more than it saves
        try:
            for i in range(0, len(x), GROUP):
                group = x[i : i + GROUP]
                for step in self.steps:
                    group = np.clip(np.asarray(step(group), dtype=np.float32), 0, 1)
                x[i : i + GROUP] = group
        finally:
            torch.set_num_threads(threads)
        for i in np.flatnonzero(rng.random(len(x)) < self.jpeg):
            x[i] = _jpeg(x[i], int(rng.integers(30, 91)))
        return torch.from_numpy(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8))


def brain_only(image: np.ndarray, rim: float) -> np.ndarray:
    """A mask of the brain in a uint8 slice with its skull: the head (`explain.head_mask`) eroded by
    `rim` of the image's side, about the thickness of scalp and skull on an axial slice."""
    from scipy import ndimage

    from braintumour.analysis.explain import head_mask

    head = head_mask(image)
    return ndimage.binary_erosion(head, iterations=max(1, round(rim * image.shape[0])))


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf), dtype=np.float32) / 255.0
