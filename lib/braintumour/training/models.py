"""Models: our custom CNN, the baselines, and the registry that holds one `ModelSpec` per architecture.

Each architecture is registered once, where it is defined (`@register_model`): its builder, its Grad-CAM
target layer, its display title, its peak learning rate and the notebook that saves it. Adding a model is
that registration plus its run lengths in the profiles (`baseline_steps` / `fold_steps`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from braintumour.config import CLASSES
from braintumour.reporting.titles import CAM_SOURCE_TITLES

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: everything the rest of the compendium needs to know about it, in one place.

    - `build`: the constructor (keyword arguments from `TrainConfig.model_kwargs`);
    - `target_layer`: the Grad-CAM target layer of a built model (`target_layer`);
    - `title`: how tables and sentences name it;
    - `peak_lr`: AdamW's peak learning rate in its recipe (`recipes`);
    - `written_by`: the notebook that saves it as reports/models/<name>.pt, what an error says to re-execute.
    """

    name: str
    build: ModelBuilder
    target_layer: Callable[[nn.Module], nn.Module]
    title: str
    peak_lr: float
    written_by: str


# Every architecture by id, in registration order (the order notebooks 08 and 11 score the saved models in).
REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, target_layer: Callable[[nn.Module], nn.Module], title: str, peak_lr: float,
                   written_by: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register the decorated builder (a class or a function) as architecture `name`."""

    def register(build: ModelBuilder) -> ModelBuilder:
        if name in REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        REGISTRY[name] = ModelSpec(name, build, target_layer, title, peak_lr, written_by)
        return build

    return register


def model_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


@dataclass(frozen=True)
class VariantSpec:
    """A row that is not an architecture of its own: a registered model trained another way."""

    title: str
    written_by: str | None = None  # the notebook that saves it under reports/models, if one does


# Metrics files and records key models, variants and groups by these ids; tables and sentences show the
# titles (`MODEL_TITLES`). A baseline fine-tuned from ImageNet weights is "<name>_imagenet", titled after it.
VARIANTS: dict[str, VariantSpec] = {
    "custom_cnn_refit": VariantSpec("Custom CNN, refit on Training + validation"),
    "custom_cnn_external": VariantSpec("Custom CNN + Br35H partial labels (notebook 08)", "08"),
    "custom_cnn_generalised": VariantSpec("Custom CNN, generalised recipe (notebook 11)", "11"),
    "randomised": VariantSpec("(a) custom CNN, acquisition-randomised"),
    "partial_label": VariantSpec("(b) custom CNN + Br35H partial labels"),
}
IMAGENET_SUFFIX = "_imagenet"


def title(name: str) -> str:
    """The display title of a registered model, a variant, or a baseline with ImageNet weights."""
    if name in REGISTRY:
        return REGISTRY[name].title
    if name in VARIANTS:
        return VARIANTS[name].title
    base = name.removesuffix(IMAGENET_SUFFIX)
    if base != name and base in REGISTRY:
        return f"{REGISTRY[base].title}, ImageNet weights"
    raise KeyError(name)


def written_by(name: str) -> str | None:
    """The notebook that saves model `name` (a registered model, a variant or an ImageNet baseline); None
    for a row no notebook saves."""
    base = name.removesuffix(IMAGENET_SUFFIX)
    if base in REGISTRY:
        return REGISTRY[base].written_by
    return VARIANTS[name].written_by if name in VARIANTS else None


class Titles(Mapping[str, str]):
    """Titles by id, read from the registry when looked up (`title`), with `extra` ids on top."""

    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self._extra = dict(extra or {})

    def __getitem__(self, name: str) -> str:
        return self._extra[name] if name in self._extra else title(name)

    def _names(self) -> list[str]:
        imagenet = [n + IMAGENET_SUFFIX for n in REGISTRY]
        return list(dict.fromkeys([*REGISTRY, *VARIANTS, *imagenet, *self._extra]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __or__(self, other: Mapping[str, str]) -> dict[str, str]:
        return dict(self) | dict(other)


MODEL_TITLES = Titles()
# Notebook 05's heatmap rows: every model, and the centred blob that ignores the image.
CAM_TITLES = Titles({"centred_blob": CAM_SOURCE_TITLES["centred_blob"]})


def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def separable_conv_bn(channels: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1 conv, BN, ReLU (Howard et al., 2017): the 3x3 neighbourhood of a
    dense 3x3 conv at about a ninth of its multiply-adds."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
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


@register_model("custom_cnn", target_layer=lambda m: m.stage4[-1], title="Custom CNN (ours)", peak_lr=3e-3,
                written_by="03")
class BrainTumourCNN(nn.Module):
    """Compact residual CNN for 1-channel MRI slices, designed for a 2-core CPU.

    Design, and why:
    - Stem: two strided 3x3 convs (1 -> 16 -> w) take 128 px to 32 px at once. MRI slices are
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
    - The stem's first conv has `stem_width` = 16 channels whatever the width: oneDNN blocks channels by
      16, and a stem of w/2 = 20 channels (w = 40) made the BatchNorm backward pass on the 64 x 64 maps
      the slowest part of a bfloat16 step (`benchmarks/cpu_precision.py --kwargs`). At w = 32, w/2 is 16.
    With w = 32 (the profiles' `width`) this is 0.93 M parameters and about 100 M multiply-adds at 128 px;
    a wider one did no better in the same minutes (docs/experiments.md).
    A second residual block in stage 2 and squeeze-excitation gates (Hu et al., 2018) were screened with
    this recipe and did not help (docs/experiments.md), so the network keeps one plain block per stage.
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32, dropout: float = 0.2,
                 stem_width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(1, stem_width, stride=2), conv_bn(stem_width, w, stride=2))
        # Stage 1's block is not wrapped in a Sequential: the module names of the committed weights stay.
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


@register_model("custom_cnn_guided", target_layer=lambda m: m.fuse, title="Mask-guided custom CNN", peak_lr=3e-3,
                written_by="07")
class MaskGuidedCNN(BrainTumourCNN):
    """The custom CNN's backbone with a head built so that Grad-CAM can be trained to find the tumour.

    The plain custom CNN stays the reproduction of the original study; this is a separate model.
    Changes, and why:
    - A 16 x 16 class-evidence map instead of 8 x 8: stage 4's output is upsampled and added to a
      1x1 projection of stage 2's 16 x 16 output (a one-level feature pyramid, Lin et al., 2017),
      then one depthwise-separable 3x3 conv-BN-ReLU (`fuse`, the Grad-CAM target layer). An 8 x 8 cell
      covers 16 x 16 pixels at 128 px, larger than many pituitary tumours. Separable, not a dense 3x3:
      at 16 x 16 a dense 3x3 conv was the network's most expensive layer (about 38 M of 140 M
      multiply-adds), and under the cpu profile's fixed wall-clock budget its cost is training steps
      the model does not get (each run's measured step time is kept in its `plan.json`).
    - The classifier is a bias-free 1x1 conv on that map, averaged over space, plus a bias: the
      logits are the spatial mean of per-class maps (Zhou et al., 2016, CAM). Grad-CAM on `fuse`
      is then exactly the rectified class map (its weights are the 1x1 kernel divided by the number
      of cells), so the map the loss trains is the map Grad-CAM shows, not a proxy.
    - `class_maps` exposes those maps to the training loss (`mask_weight` in TrainConfig): on
      Training images that have a mask, the true class's map is trained towards the expert mask
      (`losses.mask_alignment_loss`; GAIN, Li et al., 2018; "right for the right reasons", Ross et
      al., 2017).
    About 0.96 M parameters and 106 M multiply-adds at 128 px (the custom CNN: 0.93 M, 100 M).
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32, dropout: float = 0.2) -> None:
        super().__init__(num_classes, width, dropout)
        w = width
        del self.pool, self.head
        self.lateral = conv_bn(2 * w, 4 * w, kernel=1)
        self.fuse = separable_conv_bn(4 * w)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(4 * w, num_classes, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        for m in (self.lateral[0], self.fuse[0], self.fuse[1]):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        low = self.stage2(self.stage1(self.stem(x)))
        high = self.stage4(self.stage3(low))
        return self.fuse(self.lateral(low) + nn.functional.interpolate(high, size=low.shape[-2:], mode="nearest"))

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class evidence maps (N, classes, 16, 16 at 128 px), before the spatial mean."""
        return self.classifier(self.dropout(self.features(x)))

    def logits_and_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.class_maps(x)
        return maps.mean(dim=(2, 3)) + self.bias, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_maps(x)[0]


@register_model("lenet5", target_layer=lambda m: m.features[4], title="LeNet-5", peak_lr=3e-3, written_by="04")
class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) for one-channel input: two 5x5 conv/average-pool stages and
    three dense layers. An adaptive pool in front of the dense layers lets it take any input size
    (the original saw 32 x 32)."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AdaptiveAvgPool2d(5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 25, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PretrainedWeightsMissing(FileNotFoundError):
    """ImageNet weights were asked for, are not in torchvision's cache, and cannot be downloaded."""


def imagenet_state(weights, url: str | None = None) -> dict:
    """ImageNet weights (a torchvision `Weights` entry) through torchvision's own weight cache
    (`torch.hub`'s checkpoints folder, `$TORCH_HOME`), downloaded with its progress bar when absent.
    `url` replaces the entry's address (a mirror, or a test's local server). Offline and not cached:
    `PretrainedWeightsMissing`, one line saying so."""
    url = url or weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=False, weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        reason = str(getattr(e, "reason", e)).splitlines()[0]
        raise PretrainedWeightsMissing(f"ImageNet weights not in {cached} and not downloadable from {url} "
                                       f"({reason})") from e


def _one_channel(conv: nn.Conv2d) -> nn.Conv2d:
    """The same convolution for greyscale input; pretrained RGB kernels are summed over colour,
    which is what they would compute on a grey image replicated to three channels."""
    new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _torchvision(name: str, pretrained: bool, num_classes: int) -> nn.Module:
    from torchvision import models as tvm

    builder = getattr(tvm, name)
    model = builder(weights=None)
    if pretrained:
        model.load_state_dict(imagenet_state(tvm.get_model_weights(builder).DEFAULT))
    if name == "resnet50":
        model.conv1 = _one_channel(model.conv1)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:  # vgg16_bn, alexnet: first conv in features, last layer of the classifier
        model.features[0] = _one_channel(model.features[0])
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


# AlexNet has no normalisation layers and gets 5e-4, the usual Adam rate for such nets; every other
# architecture here is batch-normalised (or, LeNet-5, tiny) and trains at 3e-3 from scratch.
@register_model("alexnet", target_layer=lambda m: m.features[-2], title="AlexNet", peak_lr=5e-4, written_by="04")
def alexnet(pretrained: bool = False, num_classes: int = len(CLASSES)) -> nn.Module:
    """torchvision's AlexNet, one input channel, four classes."""
    return _torchvision("alexnet", pretrained, num_classes)


@register_model("vgg16_bn", target_layer=lambda m: m.features[-2], title="VGG-16 (BN)", peak_lr=3e-3,
                written_by="04")
def vgg16_bn(pretrained: bool = False, num_classes: int = len(CLASSES)) -> nn.Module:
    """torchvision's VGG-16 with batch norm, one input channel, four classes."""
    return _torchvision("vgg16_bn", pretrained, num_classes)


@register_model("resnet50", target_layer=lambda m: m.layer4[-1], title="ResNet-50", peak_lr=3e-3, written_by="04")
def resnet50(pretrained: bool = False, num_classes: int = len(CLASSES)) -> nn.Module:
    """torchvision's ResNet-50, one input channel, four classes."""
    return _torchvision("resnet50", pretrained, num_classes)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its constructor. The model remembers its
    name (`target_layer` looks its spec up by it)."""
    model = model_spec(name).build(**kwargs)
    model.registered_name = name
    return model


def build_architecture(name: str, **kwargs) -> nn.Module:
    """The model's layers on the meta device, holding no values: no memory, no random initialisation
    (seconds for VGG-16's 134 M parameters) and no ImageNet download (`pretrained` is dropped), for a
    caller that needs only the architecture or replaces every tensor."""
    kwargs.pop("pretrained", None)
    with torch.device("meta"):
        return build_model(name, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def target_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM target layer of a model, as its `ModelSpec` says (registered with the model).

    Everywhere the deepest layer that still has spatial extent: it carries the most class-specific
    features (Selvaraju et al., 2017). At 128 px input:
    - custom CNN: the last residual block's output, 8 x 8;
    - mask-guided custom CNN: `fuse`, the 16 x 16 map its class maps are a linear function of;
    - VGG-16: the last conv block's ReLU, before the final max-pool, 8 x 8;
    - ResNet-50: the last bottleneck of layer4, 4 x 4;
    - AlexNet: the last conv's ReLU, before the final max-pool, 7 x 7;
    - LeNet-5: the second conv's activation, 58 x 58.
    A model built by `build_model` is looked up by its name; one built from a registered class directly,
    by its class.
    """
    name = getattr(model, "registered_name", None)
    if name in REGISTRY:
        return REGISTRY[name].target_layer(model)
    spec = next((s for s in REGISTRY.values() if type(model) is s.build), None)
    if spec is None:
        raise ValueError(f"no Grad-CAM target layer registered for {type(model).__name__}")
    return spec.target_layer(model)


def multiply_adds(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulate operations for one image, counted by torch's FLOP counter (convolutions,
    linear layers, matrix products; 1 MAC = 2 FLOPs). Normalisation and activations are left out,
    as is the convention when comparing architectures."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops() // 2
