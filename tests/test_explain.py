import numpy as np
import pandas as pd
import pytest
import torch

from braintumour.analysis import explain
from braintumour.config import CAM_SCORES
from braintumour.reporting import summary
from braintumour.training.models import REGISTRY, build_model


def _mask(size=32, box=(8, 16, 8, 16)):
    m = np.zeros((size, size), bool)
    m[box[0] : box[1], box[2] : box[3]] = True
    return m


def test_pointing_game_known_answers():
    mask = _mask()
    h = np.zeros((32, 32))
    h[10, 10] = 1.0
    assert explain.pointing_game(h, mask)
    h = np.zeros((32, 32))
    h[10, 19] = 1.0  # 4 px right of the mask's last column (15)
    assert not explain.pointing_game(h, mask)
    assert not explain.pointing_game(h, mask, tolerance_px=3)
    assert explain.pointing_game(h, mask, tolerance_px=4)


def test_energy_and_iou_known_answers():
    mask = _mask()
    h = mask.astype(float)  # all mass inside, region equals mask
    assert explain.energy_in_mask(h, mask) == pytest.approx(1.0)
    assert explain.iou_at(h, mask) == pytest.approx(1.0)
    h2 = np.ones((32, 32))
    assert explain.energy_in_mask(h2, mask) == pytest.approx(64 / 1024)
    assert explain.iou_at(h2, mask) == pytest.approx(64 / 1024)
    half = np.zeros((32, 32))
    half[8:16, 8:12] = 1.0  # half the mask
    assert explain.iou_at(half, mask) == pytest.approx(0.5)
    assert explain.energy_in_mask(np.zeros((32, 32)), mask) == 0.0


def test_blank_share_counts_maps_with_no_positive_evidence():
    maps = np.zeros((4, 8, 8))
    maps[1, 2, 3] = 0.2
    maps[3] = 1.0
    assert explain.blank_share(maps) == pytest.approx(0.5)
    assert explain.blank_share(np.zeros((0, 8, 8))) == 0.0


def test_centred_gaussian_peaks_in_the_middle():
    g = explain.centred_gaussian(33)
    assert np.unravel_index(g.argmax(), g.shape) == (16, 16)
    assert g.max() == pytest.approx(1.0) and g[0, 0] < 0.1


IMAGES = np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8)


def _check(maps):
    assert maps.shape == (2, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", sorted(explain.CAM_METHODS))
def test_every_cam_method_runs_on_the_custom_cnn(method):
    torch.manual_seed(0)
    with explain.CamExplainer(build_model("custom_cnn"), method) as cam:
        _check(cam(IMAGES, np.array([0, 3])))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gradcam_runs_on_every_model_in_the_factory(name):
    torch.manual_seed(0)
    with explain.CamExplainer(build_model(name), "gradcam") as cam:
        _check(cam(IMAGES, np.array([1, 2])))


@pytest.mark.parametrize("name", ["custom_cnn", "resnet50"])
def test_shared_pass_cams_equal_one_call_per_method(name):
    methods = list(explain.SHARED_PASS_METHODS)
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = np.random.default_rng(1).integers(0, 255, (5, 64, 64), dtype=np.uint8)
    targets = np.array([0, 1, 2, 3, 1])
    with explain.MultiCamExplainer(model, methods, batch_size=3) as cams:
        shared = cams(images, targets)
    assert not model._forward_hooks  # every hook released on exit
    for method in methods:
        with explain.CamExplainer(model, method, batch_size=3) as cam:
            alone = cam(images, targets)
        assert shared[method].shape == (5, 64, 64)
        np.testing.assert_allclose(shared[method], alone, atol=1e-5, err_msg=method)
    assert shared["gradcam"].max() > 0
    assert not np.allclose(shared["gradcam"], shared["eigencam"])  # each method kept its own weighting


def test_shared_pass_cams_refuse_score_cam():
    with pytest.raises(ValueError, match="scorecam"):
        explain.MultiCamExplainer(build_model("custom_cnn"), ["gradcam", "scorecam"])


def test_overlay_is_rgb_uint8():
    img = np.full((16, 16), 100, np.uint8)
    out = explain.overlay(img, np.linspace(0, 1, 256).reshape(16, 16).astype(np.float32))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_head_mask_and_energy_by_region_known_answers():
    size = 64
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.uint8)
    image[(yy - 32) ** 2 + (xx - 32) ** 2 < 20**2] = 180  # the head: a bright disc
    image[(yy - 32) ** 2 + (xx - 32) ** 2 < 4**2] = 5  # a dark core inside it still belongs to the head
    head = explain.head_mask(image)
    assert head[32, 32] and head[32, 45] and not head[2, 2] and not head[32, 60]
    tumour = np.zeros((size, size), bool)
    tumour[28:36, 40:48] = True
    on_tumour = np.where(tumour, 1.0, 0.0)
    in_corner = np.zeros((size, size))
    in_corner[:4, :4] = 1.0
    assert explain.energy_by_region(on_tumour, tumour, head)["tumour"] == pytest.approx(1.0)
    corner = explain.energy_by_region(in_corner, tumour, head)
    assert corner["outside_head"] == pytest.approx(1.0) and corner["border_band"] == pytest.approx(1.0)
    shares = explain.region_shares(np.stack([on_tumour, in_corner]), np.stack([tumour, tumour]),
                                   np.stack([image, image]))
    parts = shares[["tumour", "other_head", "outside_head"]].sum(axis=1)
    np.testing.assert_allclose(parts, 1.0)
    assert shares["area_tumour"].iloc[0] == pytest.approx(64 / size**2)
    assert np.isnan(explain.energy_by_region(np.zeros((size, size)), tumour, head)["tumour"])  # empty map


def test_road_scores_do_not_depend_on_the_global_random_state():
    torch.manual_seed(0)
    model = build_model("custom_cnn").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 32, 32), dtype=np.uint8)
    heat = rng.random((2, 32, 32)).astype(np.float32)
    torch.manual_seed(1)
    first = explain.road_scores(model, images, heat, np.array([0, 1]), percentiles=(50,))
    torch.randn(1000)  # other work in between moves the global stream
    assert explain.road_scores(model, images, heat, np.array([0, 1]), percentiles=(50,)) == first


def test_evenly_spaced_keeps_the_class_mix_and_takes_all_when_asked_for_more():
    labels = np.repeat(np.arange(4), 25)  # a class-sorted list, as the masked rows are
    picked = explain.evenly_spaced(len(labels), 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == len(labels) - 1
    assert np.bincount(labels[picked]).tolist() == [2, 2, 2, 2]
    assert explain.evenly_spaced(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert explain.evenly_spaced(5, 0).size == 0


def test_cam_score_cells_show_each_score_with_its_interval_and_the_image_count():
    scores = pd.DataFrame({"pointing": [1.0, 0.0, 1.0, 1.0], "energy": [0.5, 0.1, 0.4, 0.2],
                           "iou": [0.3, 0.0, 0.2, 0.1]})
    block = explain.summarise_scores(scores, np.array(["glioma"] * 4))["all"]
    cells = summary.cam_score_cells(block)
    assert list(cells) == [*CAM_SCORES, "images"] and cells["images"] == 4
    lo, hi = block["energy"]["ci95"]
    assert cells["energy"] == f"0.300 [{lo:.3f}, {hi:.3f}]" == summary.with_interval(block["energy"])
