"""Generalisation to new collections: groups and parts that never straddle, the pool a run draws from,
scores with intervals over groups, tumour boxes through the square padding, and the brain-only view."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from braintumour.analysis import collection_scores
from braintumour.datasets import EXTERNAL, audit, br35h, images
from braintumour.datasets.folds import AUDIT_IMAGE_SIZE
from braintumour.datasets.kaggle import load_images
from braintumour.datasets.source import TUMOUR
from braintumour.datasets.splits import Split
from braintumour.reporting import generalisation_report
from braintumour.training import external, generalisation
from braintumour.training.randomise import Randomise, brain_only

NOTUMOR = 2


@pytest.fixture(scope="module")
def kaggle_hashes(dataset) -> np.ndarray:
    return audit.perceptual_hashes(load_images(dataset, AUDIT_IMAGE_SIZE))


@pytest.fixture(scope="module")
def openneuro_frame(dataset, kaggle_hashes) -> pd.DataFrame:
    collection = EXTERNAL["openneuro"].load()
    hashes = audit.perceptual_hashes(load_images(collection, AUDIT_IMAGE_SIZE))
    return generalisation.audit_collection(collection, hashes, dataset, kaggle_hashes)


def test_named_groups_and_near_duplicates_join_into_one_group():
    manifest = pd.DataFrame({"group": ["a", "", "a", "", "b"]})
    bits = 0xFFFFF  # 20 bits: every two distinct hashes here differ in 20 or more
    hashes = np.array([[0], [bits], [bits << 20], [bits], [bits << 40]], dtype=np.uint64)  # rows 1 and 3: copies
    clusters, groups = generalisation.collection_groups(manifest, hashes)
    assert clusters[1] == clusters[3] and clusters[0] != clusters[2]
    assert groups[0] == groups[2] and groups[1] == groups[3] and len(set(groups)) == 3


def test_a_subject_never_straddles_two_parts_and_test_holds_every_distinct_slice(openneuro_frame):
    parts = generalisation.collection_parts(openneuro_frame)
    subjects = {k: set(openneuro_frame.group.iloc[v]) for k, v in parts.items()}
    assert not (subjects["train"] & subjects["tune"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["tune"] & subjects["test"]) and subjects["all"] == set(openneuro_frame.group)
    assert len(parts["all"]) == openneuro_frame.cluster.nunique()  # one image per near-duplicate cluster
    assert len(subjects["test"]) >= 1 and len(parts["test"]) > len(subjects["test"])


def test_br35h_parts_are_notebook_08s(dataset, kaggle_hashes):
    collection = br35h.SOURCE.load()
    hashes = audit.perceptual_hashes(load_images(collection, AUDIT_IMAGE_SIZE))
    parts = generalisation.collection_parts(generalisation.audit_collection(collection, hashes, dataset, kaggle_hashes))
    old = external.external_parts(external.audit_against_kaggle(collection, hashes, dataset, kaggle_hashes))
    for k in ("train", "tune", "test", "all"):
        assert np.array_equal(parts[k], np.sort(old[k])), k


def test_the_pool_adds_each_collections_training_rows_at_a_floor_and_keeps_validation():
    pool = generalisation.Pool(np.zeros((130, 4, 4), np.uint8), np.r_[np.zeros(100, int), np.full(30, TUMOUR)],
                               {"a": 100, "b": 120}, "fp")
    kaggle = Split(np.arange(80), np.arange(80, 90), np.arange(90, 100))
    split = pool.split(kaggle, {"a": np.arange(3), "b": np.arange(10)})
    extra = split.train[80:]
    assert len(extra) == 8 + 10 and set(extra[:8]) == {100, 101, 102} and set(extra[8:]) == set(range(120, 130))
    assert np.array_equal(split.val, kaggle.val) and np.array_equal(split.test, kaggle.test)
    assert len(pool.split(kaggle, {}).train) == 80  # leave every collection out: the Kaggle set alone
    balanced = pool.split(kaggle, {"a": np.arange(3), "b": np.arange(10)}, min_share=1.0).train[80:]
    assert len(balanced) == 2 * 80 and set(balanced[:80]) == {100, 101, 102}
    assert set(balanced[80:]) == set(range(120, 130))
    images, labels = pool.trained_images(kaggle, {"a": np.arange(3), "b": np.arange(10)})
    assert len(images) == len(labels) == 80 + 3 + 10 and (labels == TUMOUR).sum() == 13  # each row once


def test_the_guide_aligns_masks_and_boxes_with_the_pools_training_rows():
    guide = generalisation.Guide(np.ones((3, 4, 4), np.uint8), {100: np.eye(4, dtype=bool)})
    train = np.array([5, 6, 7, 100, 101, 100])  # the Kaggle training rows first, then the collections'
    masks = guide.masks(Split(train, np.arange(2), np.arange(2)))
    assert masks.shape == (6, 4, 4) and masks.dtype == np.uint8 and masks[:3].all()
    assert (masks[3] == np.eye(4)).all() and (masks[5] == np.eye(4)).all() and not masks[4].any()


def test_rates_resample_groups_so_correlated_slices_widen_the_interval():
    hits = np.r_[np.ones(50), np.zeros(50)]
    per_image = collection_scores.rate(hits, np.arange(100))
    per_patient = collection_scores.rate(hits, np.repeat(np.arange(10), 10))  # 10 patients, all-or-nothing
    assert per_image["value"] == per_patient["value"] == 0.5 and per_patient["groups"] == 10
    width = lambda r: r["ci95"][1] - r["ci95"][0]  # noqa: E731
    assert width(per_patient) > 1.5 * width(per_image)
    assert per_patient["ci95"][0] <= 0.5 <= per_patient["ci95"][1]


def test_score_gives_detection_specificity_and_auroc_where_both_labels_exist():
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.05, 0.05, 0.85, 0.05], [0.2, 0.2, 0.4, 0.2]])
    labels = np.array([TUMOUR, TUMOUR, NOTUMOR, NOTUMOR])
    s = collection_scores.score(proba, labels, np.arange(4))
    assert s["detected"]["value"] == 0.5 and s["specificity"]["value"] == 1.0
    assert s["auroc"]["value"] == pytest.approx(0.75)
    assert set(collection_scores.score(proba[:2], labels[:2], np.arange(2))) == {"detected"}


def test_boxes_follow_the_images_padding_to_a_square():
    manifest = pd.DataFrame({"boxes": [json.dumps([[0.5, 0.5, 0.5, 0.5]]), "[]"], "width": [200, 100],
                             "height": [100, 100]})
    masks = images.box_masks(manifest, 100)
    ys, xs = np.nonzero(masks[0])  # a 100 x 50 box in the middle of a 200 x 100 image padded to 200 x 200
    assert (xs.min(), xs.max()) == (25, 74) and (ys.min(), ys.max()) == (37, 62) and not masks[1].any()


def test_brain_only_keeps_the_inside_of_the_head_and_is_off_by_default(dataset):
    image = load_images(dataset, 128)[0]
    mask = brain_only(image, 0.06)
    assert 0 < mask.sum() < (image > 20).sum()
    batch = torch.from_numpy(load_images(dataset, 128)[:8].copy())
    plain = Randomise()(batch, torch.Generator().manual_seed(0))
    assert torch.equal(plain, Randomise(skull_strip=0.0)(batch, torch.Generator().manual_seed(0)))
    stripped = Randomise(skull_strip=1.0, share=1.0)(batch, torch.Generator().manual_seed(0))
    assert not torch.equal(plain, stripped)


def test_targets_and_tables_read_the_scores():
    block = {"value": 0.95, "ci95": [0.9, 0.98], "n": 100, "groups": 20}
    loo = {"brats": {"detected": block, "by_look": {"axial": {"detected": block},
                                                     "coronal": {"detected": block | {"value": 0.8}}}},
           "oasis": {"specificity": block}}
    met = generalisation_report.targets_met(loo, ("brats", "oasis"))
    assert met == {"brats": True, "oasis": False, "brats_axial": True, "brats_coronal": False}
    table = generalisation_report.held_out_table(loo)  # BraTS, its planes, OASIS
    assert table["value [95% CI]"].iloc[0] == "95.0% [90.0%, 98.0%]" and list(table.met) == [True, True, False, False]


def test_flag_targets_read_the_errors_flagged_and_left():
    def report(unfamiliar=0.01, flagged=None, left=None):
        return {"unfamiliar_share": unfamiliar, "errors_flagged_share": flagged, "error_unflagged": left}

    default = {"kaggle_testing": report(0.031), "brats": report(flagged=0.5), "oasis": report(),
               "openneuro": report(flagged=0.49)}
    assert generalisation_report.flag_targets(default) == {
        "kaggle_testing_unfamiliar": False, "brats_errors_flagged": True, "oasis_errors_flagged": True,
        "openneuro_errors_flagged": False}
    shipped = {"kaggle_testing": report(left=0.5), "brats": report(left=0.05), "br35h": report(left=0.051),
               "openneuro": report(left=None)}
    assert generalisation_report.unflagged_error_targets(shipped) == {
        "brats_unflagged_error": True, "br35h_unflagged_error": False, "openneuro_unflagged_error": True}


def test_the_readme_sentence_names_a_leave_one_out_miss_that_the_shipped_model_met():
    from braintumour.reporting import generalisation_report

    scores = {n: {m: {"value": 0.9}} for n, m in generalisation_report.MEASURE.items()}
    gen = {"leave_one_out": scores, "saved_models": {}, "shipped": {"brats": {"detected": {"value": 0.963}}},
           "shipped_per_seed": {"0": {"kaggle_testing": {"accuracy": 0.96}}},
           "gradcam_brats_boxes": {"custom_cnn_generalised": {"value": 0.049}},
           "leave_one_out_targets_met": {"brats": False, "oasis": True},
           "shipped_targets_met": {"brats": True, "kaggle_testing_accuracy": False}}
    sentence = generalisation_report.readme_sentence(gen)
    assert "left out of training: brats" in sentence
    assert "trained on every collection: kaggle testing accuracy" in sentence
    assert "test parts: BraTS 2021 (gliomas) 96.3% detected; Grad-CAM pointing inside the BraTS boxes 0.05" in sentence
    gen["leave_one_out_targets_met"]["brats"] = gen["shipped_targets_met"]["kaggle_testing_accuracy"] = True
    assert "every target met" in generalisation_report.readme_sentence(gen)


def test_the_flags_sentence_gives_errors_caught_and_left_per_collection():
    def report(errors, flagged, left):
        return {"unfamiliar_share": 0.009, "errors": errors, "errors_flagged_share": flagged, "error_unflagged": left}

    reports = {"kaggle_testing": report(12, 0.25, 0.007), "brats": report(265, 0.781, 0.734),
               "oasis": report(0, None, 0.0)}
    gen = {"flags_default_model": "custom_cnn_external", "flags": {"custom_cnn_external": reports}}
    sentence = generalisation_report.flags_sentence(gen)
    assert "0.9% of Kaggle Testing marked unfamiliar" in sentence
    assert "78% of its 265 errors on BraTS 2021 (gliomas) (no errors on OASIS (healthy))" in sentence
    assert "the error is 73.4% on BraTS 2021 (gliomas), 0.0% on OASIS (healthy)." in sentence
    assert generalisation_report.flags_sentence({"flags_default_model": None}) == ""
