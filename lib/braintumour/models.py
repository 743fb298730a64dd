"""Models: our custom CNN and one factory, `build_model(name, ...)`, that later baselines extend."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from braintumour.config import CLASSES


def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (He et al., 2016), ReLU after the sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class BrainTumourCNN(nn.Module):
    """Compact residual CNN for 1-channel MRI slices, designed for a 2-core CPU.

    Design, and why:
    - Stem: two strided 3x3 convs (1 -> w/2 -> w) take 128 px to 32 px at once. MRI slices are
      large smooth fields of tissue; full-resolution layers cost most of a CNN's multiply-adds
      on a CPU while adding little that a 4x-downsampled map cannot see.
    - Four stages at 32, 16, 8 and 8 px (widths w, 2w, 4w, 4w), each a strided conv-BN-ReLU
      transition then one residual block. Residual blocks train reliably from scratch in few
      epochs; the last stage keeps 8 x 8 (no further striding) so the Grad-CAM target layer has a
      usable resolution (a 4 x 4 map would put each CAM cell over a quarter of the brain).
    - BatchNorm after every conv: fast, stable training with a high learning rate; it folds into
      the convs at inference. ReLU: the cheapest activation in oneDNN.
    - Global average pooling, dropout, one linear layer: no large dense head (the source of most
      parameters and overfitting in VGG-style networks); also what makes CAMs meaningful.
    With w = 32 this is 0.93 M parameters and about 100 M multiply-adds at 128 px; w = 40 or 48
    train 2x slower on the 2-core CPU (oneDNN blocks channels by 16 and 32), for no budget left.
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(1, w // 2, stride=2), conv_bn(w // 2, w, stride=2))
        self.stage1 = ResidualBlock(w)
        self.stage2 = nn.Sequential(conv_bn(w, 2 * w, stride=2), ResidualBlock(2 * w))
        self.stage3 = nn.Sequential(conv_bn(2 * w, 4 * w, stride=2), ResidualBlock(4 * w))
        self.stage4 = nn.Sequential(conv_bn(4 * w, 4 * w), ResidualBlock(4 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch: every block starts as identity.
        for m in self.modules():
            if isinstance(m, ResidualBlock):
                nn.init.zeros_(m.body[-1].weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage4(self.stage3(self.stage2(self.stage1(self.stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


ModelBuilder = Callable[..., nn.Module]
MODELS: dict[str, ModelBuilder] = {
    "custom_cnn": BrainTumourCNN,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name; keyword arguments go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def target_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM target layer of each architecture, chosen here and nowhere else.

    Custom CNN: the last residual block's output (8 x 8 at 128 px), the deepest layer that still
    has spatial extent: it carries the most class-specific features (Selvaraju et al., 2017).
    """
    if isinstance(model, BrainTumourCNN):
        return model.stage4[-1]
    raise ValueError(f"no Grad-CAM target layer registered for {type(model).__name__}")
