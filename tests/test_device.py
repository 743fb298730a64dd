"""Device and precision choice, pinned with the machine's capabilities monkeypatched; and the CUDA
path itself, run where a GPU exists and skipped with a reason elsewhere."""

import numpy as np
import pytest
import torch

from braintumour.datasets import splits
from braintumour.training import device
from braintumour.training.profiles import get_profile, profile_precision

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has the given accelerators and native bfloat16 support."""
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)

    def set_(cuda: bool = False, mps: bool = False, cpu_bf16: bool = False, cuda_bf16: bool = True):
        monkeypatch.setattr(device, "accelerators", lambda: {"cpu": True, "cuda": cuda, "mps": mps})
        monkeypatch.setattr(device, "cpu_native_bf16", lambda: cpu_bf16)
        monkeypatch.setattr(device, "cuda_native_bf16", lambda: cuda_bf16)

    return set_


@pytest.mark.parametrize(("cuda", "mps", "expected"),
                         [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert device.choose_device().type == expected
    assert device.choose_device("auto").type == expected


def test_the_environment_variable_overrides_the_profile_and_auto(machine, monkeypatch):
    machine(cuda=True)
    assert device.choose_device("cuda").type == "cuda"
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert device.choose_device("cuda").type == "cpu"
    assert device.choose_device().type == "cpu"


def test_a_device_this_machine_lacks_is_refused_with_one_clear_message(machine, monkeypatch):
    machine()
    with pytest.raises(device.DeviceUnavailable, match="'cuda'.*has none"):
        device.choose_device("cuda")
    monkeypatch.setenv(device.DEVICE_ENV, "tpu9")
    with pytest.raises(device.DeviceUnavailable, match="tpu9"):
        device.choose_device()


@pytest.mark.parametrize(
    ("kind", "cpu_bf16", "cuda_bf16", "expected"),
    [
        ("cpu", True, True, "bf16"),  # AVX-512 BF16 / AMX
        ("cpu", False, True, None),  # AVX2: bfloat16 would be emulated, ~11x slower
        ("cuda", False, True, "bf16"),
        ("cuda", False, False, None),  # a GPU older than Ampere
        ("mps", True, True, None),
    ],
)
def test_auto_precision_is_bfloat16_only_where_it_is_native(machine, kind, cpu_bf16, cuda_bf16, expected):
    machine(cuda=kind == "cuda", mps=kind == "mps", cpu_bf16=cpu_bf16, cuda_bf16=cuda_bf16)
    assert device.choose_precision(torch.device(kind), "auto") == expected


def test_explicit_precisions_are_honoured_and_unknown_ones_refused(machine):
    machine(cpu_bf16=False)
    cpu = torch.device("cpu")
    assert device.choose_precision(cpu, "bf16") == "bf16"  # asked for explicitly: emulated, but honoured
    assert device.choose_precision(cpu, "float32") is None
    with pytest.raises(ValueError, match="fp16"):
        device.choose_precision(cpu, "fp16")


def test_the_cpu_profile_trains_float32_on_an_avx2_cpu_and_bfloat16_where_native(machine):
    params = get_profile("cpu")
    machine(cpu_bf16=False)
    assert profile_precision(params) is None
    machine(cpu_bf16=True)
    assert profile_precision(params) == "bf16"
    machine(cuda=True, cuda_bf16=True)
    assert profile_precision(params) == "bf16"
    assert profile_precision(get_profile("smoke")) is None  # the same numbers on every CPU


def test_training_in_emulated_bfloat16_warns(machine, tiny_run_data, tmp_path):
    from tiny import tiny_config

    from braintumour.training.train import train

    machine(cpu_bf16=False)
    images, labels, split = tiny_run_data
    cfg = tiny_config(image_size=32, epochs=1, batch_size=8, precision="bf16")
    with pytest.warns(UserWarning, match="without native bfloat16"):
        train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "run", progress=False)


def test_every_metrics_file_records_device_precision_and_threads(tmp_path, monkeypatch):
    import json

    from braintumour.reporting import outputs

    monkeypatch.setenv("BRAINTUMOUR_REPORTS", str(tmp_path))
    path = outputs.write_metrics("probe", profile="smoke", data_fingerprint="fp", value=1)
    assert path == tmp_path / "metrics" / "probe.json"
    compute = json.loads(path.read_text())["compute"]
    assert compute["device"] == device.choose_device().type and compute["precision"] == "float32"
    assert compute["threads"] == torch.get_num_threads() and compute["device_name"]
    assert compute["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and "cpu_id" in compute


def test_cpu_id_reads_vendor_family_model_and_stepping_of_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                       "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 8\n\nprocessor\t: 1\nmodel\t\t: 1\n")
    assert device.cpu_id(cpuinfo) == "GenuineIntel 6-143-8"
    cpuinfo.write_text("processor\t: 0\n")  # no such fields (an emulator): nothing invented
    assert device.cpu_id(cpuinfo) is None
    assert device.cpu_id(tmp_path / "absent") is None


@pytest.fixture(scope="module")
def tiny_run_data():
    """A synthetic 4-class problem at 32 px: enough for one epoch on any device."""
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(48, 32, 32, generator=gen) * 255).to(torch.uint8).numpy()
    labels = np.arange(48) % 4
    split = splits.Split(train=np.arange(40), val=np.arange(40, 48), test=np.arange(40, 48))
    return images, labels, split


@NO_CUDA
def test_cuda_trains_evaluates_and_explains_on_the_gpu(tiny_run_data, tmp_path):
    from tiny import tiny_config

    from braintumour.analysis.evaluate import predict_proba
    from braintumour.analysis.explain import CamExplainer, road_scores
    from braintumour.training.checkpoints import reestimate_batchnorm
    from braintumour.training.train import train

    images, labels, split = tiny_run_data
    cfg = tiny_config(image_size=32, epochs=2, batch_size=8, precision="bf16", device="cuda")
    model, history = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "run", progress=False)
    assert device.model_device(model).type == "cuda" and len(history) == 2
    reestimate_batchnorm(model, images[split.train])
    proba = predict_proba(model, images[split.val])
    assert proba.shape == (8, 4) and np.allclose(proba.sum(1), 1, atol=1e-4)
    with CamExplainer(model, "gradcam") as cam:
        maps = cam(images[split.val], proba.argmax(1))
    assert maps.shape == (8, 32, 32)
    assert np.isfinite(road_scores(model, images[split.val], maps, proba.argmax(1))["morf"])
    cpu_proba = predict_proba(model.cpu(), images[split.val])
    assert np.abs(cpu_proba - proba).max() < 1e-3  # the same weights, the same answers off the GPU


@NO_CUDA
def test_cuda_resume_continues_as_if_never_stopped(tiny_run_data, tmp_path):
    from tiny import tiny_config

    from braintumour.training.train import train

    images, labels, split = tiny_run_data
    cfg = tiny_config(image_size=32, epochs=3, batch_size=8, device="cuda")
    whole, _ = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "a", progress=False)
    train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "b", progress=False, stop_after_epochs=1)
    resumed, _ = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "b", progress=False)
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


@NO_CUDA
def test_cuda_warps_the_batch_on_the_gpu_as_the_cpu_does(tiny_run_data):
    from braintumour.training.transforms import Augment

    images, _, _ = tiny_run_data
    batch = torch.from_numpy(images[:8])
    on_cpu = Augment()(batch, torch.Generator().manual_seed(0))
    on_gpu = Augment()(batch.cuda(), torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=0)
