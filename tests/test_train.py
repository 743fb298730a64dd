import numpy as np
import pytest
import torch
import torch.nn.functional as F

from braintumour.analysis.evaluate import predict_proba
from braintumour.datasets import splits
from braintumour.datasets.images import load_image
from braintumour.training import runs
from braintumour.training.checkpoints import CheckpointError, load_checkpoint, reestimate_batchnorm, save_checkpoint
from braintumour.training.models import model_spec
from braintumour.training.profiles import get_profile
from braintumour.training.recipes import TrainConfig, baseline_config, custom_cnn_config
from braintumour.training.schedule import planned_steps
from braintumour.training.train import train
from braintumour.training.transforms import Augment, to_input

SIZE = 48


@pytest.fixture(scope="module")
def tiny(dataset):
    """A tiny real subset: 16 images per class for training, 6 for validation, at 48 px."""
    split = splits.load_split(dataset, per_class_limit=22, val_fraction=6 * 4 / 88)
    idx = np.concatenate([split.train, split.val])
    images = np.zeros((len(dataset.manifest), SIZE, SIZE), np.uint8)
    for i in idx:
        images[i] = load_image(dataset.root / dataset.manifest.path.iloc[i], SIZE)
    labels = dataset.manifest.label.to_numpy()
    return images, labels, split


def _cfg(**kw):
    base = dict(model="custom_cnn", image_size=SIZE, epochs=3, batch_size=16, lr=3e-3, weight_decay=5e-4, patience=10,
                seed=7)
    return TrainConfig(**{**base, **kw})


def _loss(model, images, labels, idx):
    proba = predict_proba(model, images[idx])
    return F.nll_loss(torch.log(torch.from_numpy(proba)), torch.from_numpy(labels[idx].astype(np.int64))).item()


def test_training_lowers_the_loss(tiny, tmp_path):
    images, labels, split = tiny
    cfg = _cfg(epochs=4)
    torch.manual_seed(cfg.seed)
    from braintumour.training.models import build_model

    before = _loss(build_model("custom_cnn"), images, labels, split.train)
    model, history = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "run", progress=False)
    assert len(history) == 4
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    assert _loss(model, images, labels, split.train) < before
    assert {"train_loss", "val_loss", "val_macro_f1", "lr", "seconds"} <= set(history.columns)
    assert (tmp_path / "run" / "history.csv").is_file()


def test_resume_after_interruption_equals_uninterrupted(tiny, tmp_path):
    images, labels, split = tiny
    cfg = _cfg()
    w = splits.class_weights(labels[split.train])
    straight, h1 = train(cfg, images, labels, split.train, split.val, w, tmp_path / "a", progress=False)
    train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", stop_after_epochs=1, progress=False)
    resumed, h2 = train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", progress=False)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    np.testing.assert_allclose(h1.train_loss, h2.train_loss)


def test_on_epoch_end_sees_every_epoch_and_changes_no_weights(tiny, tmp_path):
    images, labels, split = tiny
    cfg = _cfg()
    w = splits.class_weights(labels[split.train])
    plain, _ = train(cfg, images, labels, split.train, split.val, w, tmp_path / "a", progress=False)
    seen = {}

    def record(epoch, model):
        assert not model.training
        seen[epoch] = predict_proba(model, images[split.val])

    watched, history = train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", progress=False,
                             on_epoch_end=record)
    assert sorted(seen) == [1, 2, 3]
    for (k, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    accuracy = [float((p.argmax(1) == labels[split.val]).mean()) for p in seen.values()]
    np.testing.assert_allclose(accuracy, history.val_accuracy)


def test_baselines_train_with_the_custom_cnns_recipe_but_their_own_peak_lr():
    params = get_profile("cpu")
    custom = custom_cnn_config(params, seed=3).to_dict()
    for name in ("lenet5", "alexnet", "vgg16_bn", "resnet50"):
        cfg = baseline_config(params, name, seed=3, max_steps=params["baseline_steps"][name]).to_dict()
        assert cfg["lr"] == model_spec(name).peak_lr
        assert cfg["model_kwargs"] == {} and cfg["max_steps"] == params["baseline_steps"][name]
        same = {k: v for k, v in cfg.items()
                if k not in ("model", "model_kwargs", "lr", "max_steps", "reestimate_bn")}
        assert same == {k: custom[k] for k in same}, name
        assert cfg["reestimate_bn"] is None and custom["reestimate_bn"] is True  # the custom CNN's step only
    assert baseline_config(params, "alexnet", 0).weight_decay == params["weight_decay"] == 0.05


def test_checkpoint_round_trip_and_bad_files(tiny, tmp_path):
    images, labels, split = tiny
    from braintumour.training.models import build_model

    model = build_model("custom_cnn").eval()
    path = save_checkpoint(tmp_path / "m.pt", model, _cfg(), extra={"note": "x"})
    loaded, payload = load_checkpoint(path)
    assert payload["note"] == "x"
    x = to_input(torch.from_numpy(images[split.val[:4]]))
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    other = build_model("custom_cnn", width=16)  # different architecture, same name
    torch.save({"config": _cfg().to_dict(), "model": other.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_fine_tuned_baseline_loads_from_its_file_alone(tmp_path, monkeypatch):
    """The model is rebuilt on the meta device and takes the file's tensors: no ImageNet weights are
    fetched for a fine-tuned baseline, and nothing is left uninitialised."""
    from braintumour.training import models

    def offline(*_args, **_kwargs):
        raise AssertionError("load_checkpoint asked for ImageNet weights")

    monkeypatch.setattr(models, "imagenet_state", offline)
    trained = models.build_model("resnet50").eval()
    path = save_checkpoint(tmp_path / "ft.pt", trained, _cfg(model="resnet50", model_kwargs={"pretrained": True}))
    loaded, _ = load_checkpoint(path)
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))


def test_finished_run_is_reused_unless_retrain(tiny, tmp_path):
    images, labels, split = tiny
    cfg = _cfg(epochs=1)
    args = (cfg, images, labels, split, np.ones(4), "f" * 64)
    first = runs.train_or_load(*args, runs_root=tmp_path, progress=False)
    again = runs.train_or_load(*args, runs_root=tmp_path, progress=False)
    assert not first.reused and again.reused and again.run_dir == first.run_dir
    other = runs.train_or_load(cfg, images, labels, split, np.ones(4), "e" * 64, runs_root=tmp_path, progress=False)
    assert other.run_dir != first.run_dir  # other data fingerprint, other run
    fresh = runs.train_or_load(*args, runs_root=tmp_path, retrain=True, progress=False)
    assert not fresh.reused


def test_reestimate_batchnorm_gives_the_clean_images_statistics(tiny):
    images, _, split = tiny
    from braintumour.training.models import build_model

    torch.manual_seed(0)
    model = build_model("custom_cnn")
    conv, bn = model.stem[0][0], model.stem[0][1]
    rows = split.train[:32]  # one batch: update_bn's average over batches is then the plain average
    reestimate_batchnorm(model, images[rows], batch_size=32)
    assert not model.training
    with torch.no_grad():
        out = conv(to_input(torch.from_numpy(images[rows])))
    torch.testing.assert_close(bn.running_mean, out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, out.var(dim=(0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-5)
    lenet = build_model("lenet5")  # no BatchNorm: nothing to recompute, nothing changed
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    reestimate_batchnorm(lenet, images[rows])
    assert all(torch.equal(before[k], v) for k, v in lenet.state_dict().items())


def test_reestimate_bn_is_applied_when_a_run_is_loaded_and_keeps_its_key(tiny, tmp_path):
    images, labels, split = tiny
    plain_cfg, redo_cfg = _cfg(epochs=1), _cfg(epochs=1, reestimate_bn=True)
    assert runs.run_key(plain_cfg, split, "f" * 64) == runs.run_key(redo_cfg, split, "f" * 64)
    plain = runs.train_or_load(plain_cfg, images, labels, split, np.ones(4), "f" * 64, runs_root=tmp_path,
                               progress=False)
    redone = runs.train_or_load(redo_cfg, images, labels, split, np.ones(4), "f" * 64, runs_root=tmp_path,
                                progress=False)
    assert redone.reused and redone.run_dir == plain.run_dir  # the trained run is shared, not retrained
    weights = {k: v for k, v in plain.model.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(v, redone.model.state_dict()[k]) for k, v in weights.items())
    assert not torch.equal(plain.model.stem[0][1].running_mean, redone.model.stem[0][1].running_mean)
    on_disk, _ = load_checkpoint(plain.run_dir / "best.pt")  # the checkpoint keeps the trained statistics
    assert torch.equal(on_disk.stem[0][1].running_mean, plain.model.stem[0][1].running_mean)
    assert (plain.run_dir / "best_bn.pt").is_file()
    again = runs.train_or_load(redo_cfg, images, labels, split, np.ones(4), "f" * 64, runs_root=tmp_path,
                               progress=False)  # from the cache
    np.testing.assert_array_equal(predict_proba(again.model, images[split.val]),
                                  predict_proba(redone.model, images[split.val]))


def test_a_refit_keeps_the_last_epoch_with_its_statistics_reestimated_on_training_and_validation(tiny, tmp_path):
    images, labels, split = tiny
    refit, cfg = splits.refit_split(split), _cfg(epochs=2, reestimate_bn=True)
    run = runs.train_or_load(cfg, images, labels, refit, np.ones(4), "f" * 64, runs_root=tmp_path, progress=False,
                             checkpoint="last")
    assert run.best_epoch == len(run.history) == 2
    last, _ = load_checkpoint(run.run_dir / "last.pt")
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in last.state_dict().items() if "running" not in k
               and "num_batches" not in k)
    expected = reestimate_batchnorm(last, images[refit.train])  # over the union, validation included
    torch.testing.assert_close(run.model.stem[0][1].running_mean, expected.stem[0][1].running_mean)
    assert (run.run_dir / "last_bn.pt").is_file() and not (run.run_dir / "best_bn.pt").exists()
    again = runs.train_or_load(cfg, images, labels, refit, np.ones(4), "f" * 64, runs_root=tmp_path,
                               progress=False, checkpoint="last")
    assert again.reused and again.best_epoch == 2
    np.testing.assert_array_equal(predict_proba(again.model, images[split.test[:8]]),
                                  predict_proba(run.model, images[split.test[:8]]))
    with pytest.raises(ValueError, match="checkpoint must be"):
        runs.train_or_load(cfg, images, labels, refit, np.ones(4), "f" * 64, runs_root=tmp_path, checkpoint="final")


def test_augment_is_seeded_and_keeps_shape(tiny):
    images, _, split = tiny
    batch = torch.from_numpy(images[split.train[:8]])
    a = Augment()(batch, torch.Generator().manual_seed(0))
    b = Augment()(batch, torch.Generator().manual_seed(0))
    c = Augment()(batch, torch.Generator().manual_seed(1))
    assert a.shape == (8, 1, SIZE, SIZE)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_warps_where_the_batch_is_and_draws_on_the_host(tiny):
    """A GPU warps its own batch (the meta device stands in for one), while every random draw comes from
    the host generator: the same draws, so the same augmentation, on any device."""
    images, _, split = tiny
    batch = torch.from_numpy(images[split.train[:8]])
    host, elsewhere = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    Augment().with_masks(batch, torch.ones(batch.shape), host)
    x, m = Augment().with_masks(batch.to("meta"), torch.ones(batch.shape, device="meta"), elsewhere)
    assert x.device.type == m.device.type == "meta" and x.shape == (8, 1, SIZE, SIZE)
    assert torch.equal(host.get_state(), elsewhere.get_state())


def test_max_steps_beyond_the_epochs_changes_nothing(tiny, tmp_path):
    images, labels, split = tiny
    w = splits.class_weights(labels[split.train])
    plain, _ = train(_cfg(epochs=2), images, labels, split.train, split.val, w, tmp_path / "a", progress=False)
    capped, _ = train(_cfg(epochs=2, max_steps=10**6), images, labels, split.train, split.val, w, tmp_path / "b",
                      progress=False)
    for (k, a), (_, b) in zip(plain.state_dict().items(), capped.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_max_steps_ends_the_run_inside_an_epoch_and_finishes_the_schedule(tiny, tmp_path):
    import json

    images, labels, split = tiny
    steps_per_epoch = len(split.train) // 16
    cfg = _cfg(epochs=4, max_steps=5)
    _, history = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "run", progress=False)
    assert steps_per_epoch > 3  # so that 5 steps end inside the second epoch
    assert history.steps.tolist() == [steps_per_epoch, 5 - steps_per_epoch]
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["total_steps"] == 5 and plan["max_steps"] == 5 and plan["device"]["device"] == "cpu"
    # The schedule was laid out over 5 steps, not 4 epochs' 16: it has annealed, where a 16-step
    # cycle cut after 5 would still be near its peak (the lr logged is the one a 6th step would use).
    assert history.lr.iloc[-1] < cfg.lr / 5


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_a_profile_trains_the_same_steps_on_a_fast_and_a_slow_machine(tiny, tmp_path, monkeypatch, profile):
    """Run lengths never come from a clock: the same config, planned and trained once on a machine
    whose clock says every step takes a millisecond and once where it says a minute, takes the same
    steps and ends with the same weights."""
    import json

    from braintumour.training import train as train_module

    images, labels, split = tiny
    params = get_profile(profile, image_size=SIZE, batch_size=16, epochs=3)
    cfg = baseline_config(params, "lenet5", seed=0, max_steps=params["baseline_steps"]["lenet5"] // 2 or 1)
    outcomes = []
    for name, tick in (("fast", 1e-3), ("slow", 60.0)):
        clock = iter(range(10**6))
        monkeypatch.setattr(train_module.time, "perf_counter", lambda t=tick, c=clock: next(c) * t)
        model, history = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / name,
                               progress=False)
        plan = json.loads((tmp_path / name / "plan.json").read_text())
        outcomes.append((plan["total_steps"], history.steps.tolist(), model.state_dict(), history.seconds.sum()))
    (steps_a, per_epoch_a, weights_a, seconds_a), (steps_b, per_epoch_b, weights_b, seconds_b) = outcomes
    assert steps_a == steps_b == planned_steps(cfg, len(split.train) // 16)
    assert per_epoch_a == per_epoch_b
    assert seconds_b > 1000 * seconds_a  # the clocks did differ, and wall time is still recorded
    for k in weights_a:
        assert torch.equal(weights_a[k], weights_b[k]), k


def test_run_key_ignores_unset_options_and_the_device_but_not_max_steps(tiny):
    images, labels, split = tiny
    key = runs.run_key(_cfg(), split, "fp")
    assert runs.run_key(_cfg(max_steps=None), split, "fp") == key
    assert runs.run_key(_cfg(device="cpu"), split, "fp") == key
    assert runs.run_key(_cfg(max_steps=60), split, "fp") != key


def test_bf16_precision_trains_close_to_float32_and_rejects_unknown_values(tiny, tmp_path):
    # Mixed precision changes the forward pass's rounding, not the loss it computes: on one batch the
    # bf16 loss is within bf16's resolution of the float32 one, and a bf16 run still learns.
    from braintumour.training.losses import batch_loss
    from braintumour.training.models import build_model

    images, labels, split = tiny
    x = torch.from_numpy(images[split.train[:16]])
    y = torch.from_numpy(labels[split.train[:16]].astype(np.int64))
    model = build_model("custom_cnn").eval()
    class_w = torch.ones(4)

    def loss(cfg):
        return batch_loss(model, cfg, Augment(), x, y, None, class_w, torch.Generator().manual_seed(0))

    fp32, bf16 = loss(_cfg()), loss(_cfg(precision="bf16"))
    assert bf16.dtype == torch.float32
    assert abs(bf16.item() - fp32.item()) < 0.05 * fp32.item()
    _, history = train(_cfg(epochs=4, precision="bf16"), images, labels, split.train, split.val, class_w.numpy(),
                       tmp_path / "bf16", progress=False)
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    assert runs.run_key(_cfg(precision="bf16"), split, "fp") != runs.run_key(_cfg(), split, "fp")
    with pytest.raises(ValueError, match="precision"):
        train(_cfg(precision="fp16"), images, labels, split.train, split.val, class_w.numpy(), tmp_path / "x",
              progress=False)


def test_run_key_of_a_fixed_config_is_pinned():
    # The key of a config that sets none of the options since removed from TrainConfig, as computed
    # before their removal: the cached runs of every profile keep their keys. Change the hex only for a
    # change that should retrain.
    split = splits.Split(np.arange(10), np.arange(10, 14), np.arange(14, 16))
    cfg = TrainConfig(model="custom_cnn", image_size=32, epochs=2, batch_size=8, lr=3e-3, weight_decay=5e-4,
                      patience=10, seed=3)
    assert runs.run_key(cfg, split, "fp") == "638fb7745087b2b1"


def test_a_last_checkpoint_from_before_an_unset_option_was_removed_still_resumes(tiny, tmp_path):
    # A `last.pt` written while TrainConfig still had a field, left at None, that it has since lost is
    # the same config: the run resumes (and ends as an uninterrupted one) instead of starting over.
    images, labels, split = tiny
    cfg = _cfg()
    w = splits.class_weights(labels[split.train])
    straight, _ = train(cfg, images, labels, split.train, split.val, w, tmp_path / "a", progress=False)
    train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", stop_after_epochs=1, progress=False)
    last = tmp_path / "b" / "last.pt"
    payload = torch.load(last, weights_only=True)
    payload["config"]["retired_option"] = None
    torch.save(payload, last)
    resumed, history = train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", progress=False)
    assert history.epoch.tolist() == [1, 2, 3]  # epoch 1 kept from before the interruption
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    payload["config"]["retired_option"] = 0.5  # set: another config, so the run starts over
    torch.save(payload, last)
    (tmp_path / "b" / "plan.json").unlink()
    train(cfg, images, labels, split.train, split.val, w, tmp_path / "b", progress=False, stop_after_epochs=1)
    assert (tmp_path / "b" / "plan.json").is_file()  # written by a fresh start only


def test_nothing_imports_through_the_train_module_what_another_module_defines():
    """`train` is no re-export hub: notebooks, tests, experiments and benchmarks import each name from the
    module that defines it (recipes, checkpoints, losses, schedule ...)."""
    import ast
    import json
    from pathlib import Path

    from braintumour.training import train as train_module

    assert not hasattr(train_module, "__all__")
    root = Path(__file__).resolve().parents[1]
    folders = ("lib", "tests", "experiments", "benchmarks")
    sources = {p: p.read_text() for d in folders for p in (root / d).rglob("*.py")}
    for nb in (root / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module == "braintumour.training.train":
                for alias in node.names:
                    home = getattr(getattr(train_module, alias.name), "__module__", None)
                    assert home == "braintumour.training.train", f"{path.name}: {alias.name} comes from {home}"
