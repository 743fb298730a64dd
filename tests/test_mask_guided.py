"""The mask-guided custom CNN: its Grad-CAM is its class map, the alignment loss has known answers,
masks follow their images through augmentation, and training never reads a held-out image's mask."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import model_record
from tiny import tiny_config

from braintumour.analysis.explain import CamExplainer
from braintumour.datasets import audit, folds, kaggle
from braintumour.datasets.images import load_mask
from braintumour.training.losses import mask_alignment_loss, tumour_coverage
from braintumour.training.models import build_model, target_layer
from braintumour.training.train import train
from braintumour.training.transforms import Augment


def test_gradcam_of_the_guided_model_is_its_rectified_class_map():
    torch.manual_seed(0)
    model = build_model("custom_cnn_guided").eval()
    images = (torch.rand(3, 64, 64) * 255).to(torch.uint8).numpy()
    from braintumour.training.transforms import to_input

    with torch.no_grad():
        maps = model.class_maps(to_input(torch.from_numpy(images)))
    # An untrained map can be negative everywhere (Grad-CAM blank, nothing to correlate): take each
    # image's class with the strongest positive evidence.
    peaks = maps.amax(dim=(2, 3))
    targets = peaks.argmax(1).numpy()
    assert (peaks.amax(1) > 0).all()
    with CamExplainer(model, "gradcam") as cam:
        heat = cam(images, targets)
    for i, t in enumerate(targets):
        own = F.relu(maps[i, t])[None, None]
        own = F.interpolate(own, size=64, mode="bilinear", align_corners=False)[0, 0].numpy()
        own = (own - own.min()) / (own.max() - own.min())
        assert np.corrcoef(own.ravel(), heat[i].ravel())[0, 1] > 0.98
    assert target_layer(model) is model.fuse


def test_guided_model_has_a_16px_map_at_128px_and_stays_small():
    model = build_model("custom_cnn_guided")
    assert model.class_maps(torch.zeros(1, 1, 128, 128)).shape == (1, 4, 16, 16)
    assert sum(p.numel() for p in model.parameters()) < 1.5e6


def test_mask_alignment_loss_rewards_evidence_inside_and_never_goes_flat():
    masks = torch.zeros(4, 8, 8)
    masks[:, :4, :] = 1  # top half of the image
    maps = torch.zeros(4, 4, 4, 4)
    maps[0, 1, :2, :], maps[0, 1, 2:, :] = 20.0, -20.0  # class 1: evidence exactly on the mask
    maps[1, 2, :2, :], maps[1, 2, 2:, :] = -20.0, 20.0  # class 2: evidence exactly off the mask
    maps[2, 3] = 0.0  # class 3: undecided everywhere
    maps[3, 0] = -20.0  # class 0: negative everywhere, the map Grad-CAM shows blank
    maps[0, 0] = 99.0  # other classes' maps do not count
    maps.requires_grad_(True)
    loss = mask_alignment_loss(maps, masks, torch.tensor([1, 2, 3, 0]))
    np.testing.assert_allclose(loss[:3].detach().numpy(), [0.0, 20.0, np.log(2)], atol=1e-4)
    assert loss[3] > 9  # half the cells wrong by a logit of 20
    loss[3].backward()
    grad = maps.grad[3, 0]
    assert (grad[:2] < -1e-3).all()  # a blank map still gets a push upwards inside the mask


def test_tumour_coverage_is_relative_to_the_best_covered_cell():
    masks = torch.zeros(2, 8, 8)
    masks[0, :2, :3] = 1  # all of cell (0, 0), half of cell (0, 1)
    masks[1, 7, 7] = 1  # one pixel: a quarter of cell (3, 3)
    cover = tumour_coverage(masks, (4, 4))
    assert cover[0, 0, 0] == 1 and cover[0, 0, 1] == 0.5 and cover[0].sum() == 1.5
    assert cover[1, 3, 3] == 1 and cover[1].sum() == 1


def test_mask_alignment_loss_asks_for_evidence_on_a_small_tumour():
    masks = torch.zeros(1, 8, 8)
    masks[0, 0, 0] = 1  # one pixel: a quarter of cell (0, 0), as a small pituitary tumour at 8 px a cell
    on = torch.full((1, 1, 4, 4), -20.0)
    on[0, 0, 0, 0] = 20.0  # evidence in that cell only
    off = torch.full((1, 1, 4, 4), -20.0)  # blank
    assert mask_alignment_loss(on, masks, torch.tensor([0])) < 1e-4
    assert mask_alignment_loss(off, masks, torch.tensor([0])) > 9


def test_a_partial_label_aligns_the_tumour_classes_maps_together():
    from braintumour.config import CLASSES, PARTIAL_LABEL

    masks = torch.zeros(1, 8, 8)
    masks[0, :4, :] = 1
    maps = torch.full((1, 4, 4, 4), -20.0)
    maps[0, CLASSES.index("glioma"), :2, :] = 20.0  # one tumour class's evidence on the mask is enough
    maps[0, CLASSES.index("notumor")] = 20.0  # the notumor map does not count
    maps.requires_grad_(True)
    loss = mask_alignment_loss(maps, masks, torch.tensor([PARTIAL_LABEL]))
    assert loss < 1e-3
    loss.backward()
    assert maps.grad[0, CLASSES.index("notumor")].abs().sum() == 0


def test_partial_labels_and_the_mask_term_add_up(monkeypatch):
    from braintumour.config import PARTIAL_LABEL
    from braintumour.training import losses

    x = (torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    y = torch.tensor([0, 2, PARTIAL_LABEL, PARTIAL_LABEL])
    masks = torch.zeros(4, 32, 32, dtype=torch.uint8)
    masks[[0, 2], 8:16, 8:16] = 1  # an expert mask and a tumour box
    calls = []
    real = losses.mask_alignment_loss
    monkeypatch.setattr(losses, "mask_alignment_loss", lambda *a: calls.append(a[2].tolist()) or real(*a))
    cfg = tiny_config(model="custom_cnn_guided", image_size=32, mask_weight=1.0, partial_label_weight=1.0)
    loss = losses.batch_loss(build_model("custom_cnn_guided"), cfg, Augment(), x, y, masks, torch.ones(4),
                             torch.Generator().manual_seed(0))
    assert calls == [[0, PARTIAL_LABEL]] and torch.isfinite(loss)


def test_the_guided_training_step_adds_the_mask_term_for_images_with_a_mask(monkeypatch):
    from braintumour.training import losses
    from braintumour.training.transforms import Augment

    x = (torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    y = torch.tensor([0, 1, 2, 3])
    masks = torch.zeros(4, 32, 32, dtype=torch.uint8)
    masks[:2, 8:16, 8:16] = 1  # two of the four images have a tumour outline
    calls = []
    real = losses.mask_alignment_loss
    monkeypatch.setattr(losses, "mask_alignment_loss", lambda *a: calls.append(len(a[0])) or real(*a))
    cfg = tiny_config(model="custom_cnn_guided", image_size=32, mask_weight=1.0)
    gen = torch.Generator().manual_seed(0)
    loss = losses.batch_loss(build_model("custom_cnn_guided"), cfg, Augment(), x, y, masks, torch.ones(4), gen)
    assert calls == [2] and torch.isfinite(loss)


def test_augmentation_moves_a_mask_with_its_image_and_keeps_the_random_stream():
    images = torch.zeros(8, 32, 32, dtype=torch.uint8)
    images[:, 4:14, 18:28] = 255  # a bright square off centre
    masks = (images > 0).to(torch.uint8)
    aug = Augment(rotate_deg=10, translate=0.1)
    plain = aug(images, torch.Generator().manual_seed(3))
    x, m = aug.with_masks(images, masks, torch.Generator().manual_seed(3))
    assert torch.equal(plain, x)  # masks or not, the same draws: the images do not change
    bright = x[:, 0] > x[:, 0].mean(dim=(1, 2), keepdim=True)
    assert ((m > 0.5) == bright).float().mean() > 0.95
    assert bright.flip(-1).logical_and(m > 0.5).float().sum() < bright.logical_and(m > 0.5).float().sum()


def test_training_masks_open_only_the_training_rows_masks(dataset, monkeypatch):
    pf = folds.pooled_folds(dataset.manifest, kaggle.load_images(dataset, folds.AUDIT_IMAGE_SIZE),
                            audit.load_patients(kaggle.patients_csv(dataset.root)), per_class_limit=40)
    split = pf.split(0)
    opened = []
    real_load_mask = load_mask
    monkeypatch.setattr(kaggle, "load_mask", lambda path, size: opened.append(str(path)) or real_load_mask(path, size))
    masks = kaggle.training_masks(dataset, split.train, 32)
    stem = {str(p).rsplit(".", 1)[0] for p in dataset.manifest.path}
    held_out = {str(dataset.manifest.path.iloc[i]).rsplit(".", 1)[0] for i in np.concatenate([split.val, split.test])}
    read = {p.split(kaggle.MASKS_DIRNAME + "/", 1)[1].rsplit(".", 1)[0] for p in opened}
    assert read and read <= stem
    assert not read & held_out
    assert masks.shape == (len(split.train), 32, 32) and masks.any(axis=(1, 2)).sum() == len(read)
    has_test_masks = [i for i in split.test
                      if (kaggle.masks_dir(dataset.root) / dataset.manifest.path.iloc[i]).with_suffix(".png").is_file()]
    assert has_test_masks  # the held-out fold does have masks: they were available, and not read


def test_mask_guided_training_runs_and_needs_masks(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 10)
    masks = np.zeros((32, 32, 32), np.uint8)
    masks[:16, 8:20, 8:20] = 1
    cfg = tiny_config(model="custom_cnn_guided", image_size=32, epochs=2, batch_size=8, mask_weight=1.0, seed=1)
    train_idx, val_idx = np.arange(32), np.arange(32, 40)
    model, history = train(cfg, images, labels, train_idx, val_idx, np.ones(4), tmp_path / "run", progress=False,
                           train_masks=masks)
    assert len(history) == 2 and np.isfinite(history.train_loss).all()
    with pytest.raises(ValueError, match="train_masks"):
        train(cfg, images, labels, train_idx, val_idx, np.ones(4), tmp_path / "other", progress=False)


def test_mask_guided_sentence_reads_the_record_and_the_ablation():
    from braintumour.reporting.summary import ablation_accuracy, mask_guided_sentence

    model = model_record("custom_cnn_guided", 0.9, seeds=(0, 1, 2))
    acc, f1 = (model.test_over_seeds[k] for k in ("accuracy", "macro_f1"))
    score = {"all": {"pointing": {"mean": 0.61}, "energy": {"mean": 0.33}}}
    guided = {
        "variants": {"plain": {"seeds": 3, "testing_accuracy": 0.9705, "testing_accuracy_sd": 0.0029,
                               "pointing": 0.276, "energy": 0.032},
                     "mask_term": {"seeds": 3, "testing_accuracy": acc["mean"], "testing_accuracy_sd": acc["sd"],
                                   "pointing": 0.808, "energy": 0.52}},
        "unseen_patients": {"gradcam": score, "over_folds": {"all": {"accuracy": {"mean": 0.9}}}},
    }
    text = mask_guided_sentence(guided, model)
    for part in ("3 seeds", f"{acc['mean']:.2%} ± {acc['sd']:.2%}, macro-F1 {f1['mean']:.2%} ± {f1['sd']:.2%}",
                 "plain, when notebook 07 ran: 97.05% ± 0.29%", "pointing game 0.81",
                 "energy inside the mask 0.52", "plain: 0.28 and 0.03", "pointing 0.61, energy 0.33, accuracy 90.0%"):
        assert part in text, (part, text)
    one_seed = {"seeds": 1, "testing_accuracy": 0.9916, "testing_accuracy_sd": None}
    assert ablation_accuracy(one_seed) == "99.16%"
