"""External validation: the Br35H audit and parts, detection rates, the partial-label loss and the
acquisition randomisation. Real Br35H and Kaggle files wherever the test needs data."""

import numpy as np
import pytest
import torch
from tiny import tiny_config

from braintumour.config import CLASSES, PARTIAL_LABEL
from braintumour.datasets import audit
from braintumour.datasets.folds import AUDIT_IMAGE_SIZE
from braintumour.datasets.images import load_image
from braintumour.datasets.kaggle import Dataset, DatasetLayoutError, load_images
from braintumour.training import external
from braintumour.training.losses import partial_label_loss
from braintumour.training.randomise import Randomise


@pytest.fixture(scope="module")
def br35h() -> Dataset:
    return external.load_br35h()


def test_br35h_loads_as_a_dataset_without_depending_on_its_counts(br35h):
    m = br35h.manifest
    assert set(m.class_name) == {"yes", "no"} and (m.split == "Br35H").all()
    assert set(m.label[m.class_name == "yes"]) == {external.TUMOUR_UNKNOWN}
    assert set(m.label[m.class_name == "no"]) == {CLASSES.index("notumor")}
    assert m.sha256.str.len().eq(64).all() and len(br35h.fingerprint) == 64


def test_a_br35h_folder_without_images_is_refused_by_name(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "no").mkdir()
    with pytest.raises(DatasetLayoutError, match=str(tmp_path)):
        external.load_br35h(tmp_path)


def test_the_audit_finds_kaggle_files_and_copies_and_the_parts_never_share_a_cluster(br35h, dataset):
    # A sample of each: every `no` file of this sample and the `yes` files that are copies of Kaggle files.
    rows = np.r_[np.flatnonzero(br35h.manifest.class_name == "no")[:40],
                 np.flatnonzero(br35h.manifest.class_name == "yes")[:200]]
    sample = Dataset(br35h.root, br35h.manifest.iloc[rows].reset_index(drop=True), "sample")
    rows_k = np.flatnonzero(dataset.manifest.class_name.isin(["notumor", "meningioma", "glioma"]))
    kaggle = Dataset(dataset.root, dataset.manifest.iloc[rows_k].reset_index(drop=True), "kaggle")
    kaggle_hashes = audit.perceptual_hashes(load_images(dataset, AUDIT_IMAGE_SIZE)[rows_k])  # cached
    sample_hashes = audit.perceptual_hashes(np.stack([load_image(sample.root / p, AUDIT_IMAGE_SIZE)
                                                      for p in sample.manifest.path]))
    frame = external.audit_against_kaggle(sample, sample_hashes, kaggle, kaggle_hashes)
    by_sha = set(kaggle.manifest.sha256)
    assert frame.kaggle_file.tolist() == sample.manifest.sha256.isin(by_sha).tolist()
    assert (frame.near_kaggle >= frame.kaggle_file).all() and (frame.kaggle_distance[frame.kaggle_file] == 0).all()
    summary = external.audit_summary(frame)
    assert summary["no"]["files"] == 40 and summary["yes"]["files"] == 200
    parts = external.external_parts(frame)
    clusters = {k: set(frame.cluster.iloc[v]) for k, v in parts.items()}
    assert not (clusters["train"] & clusters["tune"]) and not (clusters["train"] & clusters["test"])
    assert not (clusters["tune"] & clusters["test"])
    chosen = np.concatenate([parts["train"], parts["tune"], parts["test"]])
    assert not frame.kaggle_cluster.iloc[chosen].any() and (frame.folder.iloc[chosen] == "yes").all()
    assert len(set(frame.cluster.iloc[parts["test"]])) == len(parts["test"])  # one image per cluster


def test_detection_rate_counts_every_tumour_class_and_brackets_itself():
    notumor = CLASSES.index("notumor")
    pred = np.array([0, 1, 3, notumor] * 25)
    d = external.detection(pred)
    assert d.detected == pytest.approx(0.75) and d.n == 100
    assert d.ci95[0] < 0.75 < d.ci95[1] and 0.6 < d.ci95[0] and d.ci95[1] < 0.9
    assert d.predicted_mix["notumor"] == pytest.approx(0.25) and sum(d.predicted_mix.values()) == pytest.approx(1)
    assert external.detection(np.full(10, notumor)).as_dict()["detected_ci95"] == [0.0, 0.0]


def test_the_partial_label_moves_probability_off_notumor_and_leaves_the_tumour_split_free():
    cfg = tiny_config(partial_label_weight=1.0, label_smoothing=0.0)
    w = torch.ones(4)
    logits = torch.zeros(1, 4, requires_grad=True)
    partial_label_loss(logits, torch.tensor([PARTIAL_LABEL]), w, cfg).backward()
    g = logits.grad[0]
    notumor = CLASSES.index("notumor")
    assert g[notumor] > 0  # descending lowers the notumor logit
    tumour = [i for i in range(4) if i != notumor]
    assert torch.allclose(g[tumour], g[tumour][0].expand(3))  # no preference between the tumour classes
    # Any split between the tumour classes is as good as another: only P(tumour) counts.
    a = partial_label_loss(torch.tensor([[5.0, 0.0, -3.0, 0.0]]), torch.tensor([PARTIAL_LABEL]), w, cfg)
    b = partial_label_loss(torch.tensor([[0.0, 5.0, -3.0, 0.0]]), torch.tensor([PARTIAL_LABEL]), w, cfg)
    assert torch.isclose(a, b)
    # Labelled images alone: exactly the class-weighted cross-entropy.
    z, t = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 2])
    cw = torch.tensor([1.0, 2.0, 0.5, 1.5])
    plain = torch.nn.functional.cross_entropy(z, t, weight=cw)
    assert torch.isclose(partial_label_loss(z, t, cw, cfg), plain)


def test_randomisation_is_seeded_keeps_shape_and_leaves_part_of_the_batch_as_acquired(dataset):
    images = torch.from_numpy(np.stack([load_image(dataset.root / p, 64) for p in dataset.manifest.path[:16]]))
    r = Randomise()
    a, b = r(images, torch.Generator().manual_seed(0)), r(images, torch.Generator().manual_seed(0))
    c = r(images, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[8:], images[8:]) and not torch.equal(a[:8], images[:8])  # share 0.5


def test_a_randomised_partial_label_run_trains_and_resumes_exactly(tmp_path):
    from braintumour.datasets import splits
    from braintumour.training.train import train

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 32, 32, generator=gen) * 255).to(torch.uint8).numpy()
    labels = np.r_[np.arange(32) % 4, np.full(8, PARTIAL_LABEL)]
    split = splits.Split(np.r_[np.arange(24), np.arange(32, 40)], np.arange(24, 32), np.arange(24, 32))
    cfg = tiny_config(image_size=32, epochs=3, batch_size=8, randomise={}, partial_label_weight=1.0, seed=3)
    whole, history = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "a", progress=False)
    train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "b", progress=False,
          stop_after_epochs=1)
    resumed, _ = train(cfg, images, labels, split.train, split.val, np.ones(4), tmp_path / "b", progress=False)
    assert len(history) == 3 and np.isfinite(history.train_loss).all()
    for (k, x), (_, y) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_predict_defaults_to_the_best_model_a_notebook_wrote_after_meeting_its_targets(isolated_root):
    from braintumour import predict

    models = isolated_root / "reports" / "models"
    models.mkdir(parents=True)
    (models / "custom_cnn.pt").write_bytes(b"notebook 03")
    assert predict.default_model() == models / "custom_cnn.pt"
    (models / "custom_cnn_external.pt").write_bytes(b"notebook 08, targets met")
    assert predict.default_model() == models / "custom_cnn_external.pt"
    (models / "custom_cnn_generalised.pt").write_bytes(b"notebook 11, targets met")
    assert predict.default_model() == models / "custom_cnn_generalised.pt"
