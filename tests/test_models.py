import pytest
import torch

from braintumour.training.models import (
    MODEL_TITLES,
    REGISTRY,
    BrainTumourCNN,
    build_model,
    count_parameters,
    target_layer,
)
from braintumour.training.profiles import get_profile
from braintumour.training.recipes import custom_cnn_config


@pytest.mark.parametrize("size", [64, 96, 128, 160, 224])
def test_custom_cnn_output_shape_for_several_input_sizes(size):
    model = build_model("custom_cnn").eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3, 4)


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet50", "lenet5", "alexnet"])
def test_baselines_take_one_channel_and_give_four_classes(name):
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 128, 128)).shape == (2, 4)


def test_pretrained_weights_come_from_the_cache_or_one_line_saying_they_cannot(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights, resnet50

    from braintumour.training.models import PretrainedWeightsMissing, imagenet_state

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsMissing, match="not downloadable") as offline:  # nothing listens on port 9
        imagenet_state(ResNet50_Weights.DEFAULT, url="http://127.0.0.1:9/resnet50-0676ba61.pth")
    assert "\n" not in str(offline.value)
    reference = resnet50(weights=None)
    cache = tmp_path / "hub" / "checkpoints" / ResNet50_Weights.DEFAULT.url.split("/")[-1]
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), cache)
    model = build_model("resnet50", pretrained=True)  # cached: no network needed
    # RGB kernels summed into one grey channel; deeper layers loaded as they are.
    assert torch.allclose(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_pretrained_weights_download_into_torchvisions_cache(tmp_path, monkeypatch, capsys):
    """The real download path, against a local HTTP server serving a small state dict."""
    import functools
    import http.server
    import threading

    from braintumour.training.models import imagenet_state

    served = tmp_path / "served"
    served.mkdir()
    state = {"conv.weight": torch.randn(4, 1, 3, 3), "fc.bias": torch.zeros(4)}
    torch.save(state, served / "tiny-12345678.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"http://127.0.0.1:{server.server_address[1]}/tiny-12345678.pth"
    try:
        got = imagenet_state(None, url=url)
    finally:
        server.shutdown()
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "tiny-12345678.pth").is_file()
    assert "100%" in capsys.readouterr().err  # torch.hub's progress bar
    assert torch.equal(imagenet_state(None, url=url)["conv.weight"], state["conv.weight"])  # server gone: cached


@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_custom_cnn_parameter_budget_at_every_profiles_width(profile):
    cfg = custom_cnn_config(get_profile(profile), seed=0)
    assert count_parameters(build_model(cfg.model, **cfg.model_kwargs)) <= 1_500_000  # #3's limit


def test_custom_cnn_stem_is_16_channels_whatever_the_width():
    # 16: oneDNN blocks channels by 16 (models.BrainTumourCNN); at width 32 the stem is what it always was,
    # so checkpoints of width 32 keep loading.
    for width in (32, 40):
        first = build_model("custom_cnn", width=width).stem[0][0]
        assert first.out_channels == 16
    assert count_parameters(build_model("custom_cnn", width=32)) == 929_012


@pytest.mark.parametrize("name,digest", [("custom_cnn", "9ca1fb8baedd181d"), ("custom_cnn_guided", "c8f661a327c81510")])
def test_default_architectures_keep_their_repr_so_cached_runs_keep_their_keys(name, digest):
    # runs.run_key hashes the model's repr: an option added with its default off must not change it,
    # or every cached run (hours of training for `make reproduce`) is trained again. Change the digest
    # only for a change that should retrain.
    import hashlib

    assert hashlib.sha256(repr(build_model(name, width=32)).encode()).hexdigest()[:16] == digest


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="custom_cnn"):
        build_model("resnet9000")


def test_target_layer_for_every_model_in_the_factory():
    for name in REGISTRY:
        model = build_model(name)
        layer = target_layer(model)
        assert any(layer is m for m in model.modules())


def test_target_layer_keeps_spatial_extent():
    model = BrainTumourCNN().eval()
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = output.shape

    target_layer(model).register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 1, 128, 128))
    assert seen["shape"][-2:] == (8, 8)


def test_multiply_adds_match_lenet5_by_hand():
    """At 32 px: conv1 6*28*28*25, conv2 16*10*10*150, dense 400*120 + 120*84 + 84*4."""
    from braintumour.training.models import LeNet5, multiply_adds

    assert multiply_adds(LeNet5(), 32) == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 4


def test_multiply_adds_of_the_custom_cnn_grow_with_the_image_area():
    from braintumour.training.models import multiply_adds

    model = build_model("custom_cnn")
    small, large = multiply_adds(model, 64), multiply_adds(model, 128)
    assert 90e6 < large < 110e6  # the docstring's "about 100 M multiply-adds at 128 px"
    assert large == pytest.approx(4 * small, rel=0.01)


def test_display_titles_are_the_ones_the_reports_show():
    # Pinned: tables and sentences in reports/ show these; the registry and `models.VARIANTS` give them.
    assert dict(MODEL_TITLES) == {
        "custom_cnn": "Custom CNN (ours)",
        "custom_cnn_refit": "Custom CNN, refit on Training + validation",
        "custom_cnn_guided": "Mask-guided custom CNN",
        "custom_cnn_external": "Custom CNN + Br35H partial labels (notebook 08)",
        "custom_cnn_generalised": "Custom CNN, generalised recipe (notebook 11)",
        "lenet5": "LeNet-5",
        "alexnet": "AlexNet",
        "vgg16_bn": "VGG-16 (BN)",
        "resnet50": "ResNet-50",
        "vgg16_bn_imagenet": "VGG-16 (BN), ImageNet weights",
        "resnet50_imagenet": "ResNet-50, ImageNet weights",
        "custom_cnn_imagenet": "Custom CNN (ours), ImageNet weights",
        "custom_cnn_guided_imagenet": "Mask-guided custom CNN, ImageNet weights",
        "lenet5_imagenet": "LeNet-5, ImageNet weights",
        "alexnet_imagenet": "AlexNet, ImageNet weights",
        "randomised": "(a) custom CNN, acquisition-randomised",
        "partial_label": "(b) custom CNN + Br35H partial labels",
    }
    # the saved models, in the order notebooks 08 and 11 score them; and who writes each
    assert list(REGISTRY) == ["custom_cnn", "custom_cnn_guided", "lenet5", "alexnet", "vgg16_bn", "resnet50"]
    assert {n: s.written_by for n, s in REGISTRY.items()} == {"custom_cnn": "03", "custom_cnn_guided": "07",
                                                              "lenet5": "04", "alexnet": "04", "vgg16_bn": "04",
                                                              "resnet50": "04"}
    assert {n: s.peak_lr for n, s in REGISTRY.items() if s.peak_lr != 3e-3} == {"alexnet": 5e-4}


def test_a_model_registered_in_one_place_trains_with_the_projects_loop(tmp_path):
    """Adding a model is one registration and its profile's run lengths: nothing else to edit."""
    import numpy as np
    from torch import nn

    from braintumour.training import models
    from braintumour.training.checkpoints import SavedModelMissing, saved_model
    from braintumour.training.profiles import steps_for
    from braintumour.training.recipes import baseline_config
    from braintumour.training.train import train

    @models.register_model("toy_cnn", target_layer=lambda m: m.conv, title="Toy CNN", peak_lr=1e-3, written_by="99")
    class ToyCNN(nn.Module):
        def __init__(self, num_classes: int = 4) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x))

    try:
        params = get_profile("smoke", image_size=16, batch_size=8, epochs=1)
        params["baseline_steps"] = {**params["baseline_steps"], "toy_cnn": 1}
        cfg = baseline_config(params, "toy_cnn", seed=0, max_steps=steps_for(params, "baseline_steps", "toy_cnn"))
        assert cfg.lr == 1e-3
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (24, 16, 16), dtype=np.uint8)
        labels = np.arange(24) % 4
        model, history = train(cfg, images, labels, np.arange(16), np.arange(16, 24), np.ones(4, np.float32),
                               tmp_path, progress=False)
        assert isinstance(model, ToyCNN) and history.steps.tolist() == [1]
        assert models.target_layer(model) is model.conv
        assert MODEL_TITLES["toy_cnn"] == "Toy CNN" and models.written_by("toy_cnn") == "99"
        with pytest.raises(SavedModelMissing, match="re-execute notebook 99"):
            saved_model("toy_cnn")
    finally:
        models.REGISTRY.pop("toy_cnn", None)
    assert "toy_cnn" not in MODEL_TITLES
