"""The unfamiliar score and the input check (#49): features, threshold, sidecar files, and every kind of
input that is not a brain MRI slice refused or flagged by the committed default model."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nonbrain import nonbrain_images
from tiny import tiny_config

from braintumour import inputcheck, predict
from braintumour.analysis import ood, ood_files
from braintumour.analysis.evaluate import predict_logits
from braintumour.datasets import kaggle, splits
from braintumour.training.checkpoints import load_checkpoint, save_checkpoint
from braintumour.training.models import build_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "reports" / "models"
COMMITTED = ("custom_cnn", "custom_cnn_external", "custom_cnn_guided", "lenet5")
ROUNDING = 1e-4  # of a threshold's size: far below the gap between neighbouring validation scores (about 1e-2)


@pytest.mark.parametrize("name", ["custom_cnn", "custom_cnn_guided", "lenet5"])
def test_logits_are_linear_in_the_captured_features(name):
    """The captured features are the penultimate layer's: the final linear map of them gives the logits."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    logits, feats = ood.logits_and_features(model, images)
    feats = feats["penultimate"]
    layer = ood.penultimate_layer(model)
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).numpy()
    b = (layer.bias if layer.bias is not None else model.bias).detach().numpy()
    np.testing.assert_allclose(feats @ w.T + b, logits, atol=1e-4)


@pytest.mark.parametrize("n", [1, 49, 50, 572, 1000])
def test_threshold_flags_at_most_the_share_even_with_ties(n):
    rng = np.random.default_rng(n)
    for scores in (rng.normal(size=n), rng.integers(0, 5, n).astype(float), np.ones(n)):
        t = ood.threshold_for_share(scores, 0.02)
        assert (scores > t).sum() <= int(0.02 * n)
        assert (scores >= t).sum() >= int(0.02 * n) + 1 or (scores > t).sum() == int(0.02 * n)


def _score(method: str, dim: int = 8, threshold: float = 3.5) -> ood.Score:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dim, dim))
    arrays = {"mahalanobis": {"means": rng.normal(size=(4, dim)), "precision": a @ a.T + np.eye(dim)},
              "knn": {"bank": rng.normal(size=(30, dim)).astype(ood.BANK_DTYPE)}}.get(method, {})
    return ood.Score(method=method, features=ood.FEATURES[method], neighbours=3 if method == "knn" else 0,
                     threshold=threshold, validation_flagged=0.01, feature_dim=dim, arrays=arrays)


def _detector(*methods: str, dim: int = 8) -> ood.OodDetector:
    return ood.OodDetector(
        scores=tuple(_score(m, dim) for m in methods or ("mahalanobis",)), fitted_on="train", n_fit=100,
        thresholded_on="val", n_threshold=50, max_validation_flagged=0.02, validation_flagged=0.02,
        data_fingerprint="f", git_commit="c")


def _features(n: int = 5, dim: int = 8) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(n, dim))
    return rng.normal(size=(n, 4)), {"penultimate": feats, "stages": feats}


def test_sidecar_round_trip(tmp_path):
    model_path = tmp_path / "m.pt"
    for methods in (("mahalanobis",), ("knn",), ("knn", "mahalanobis"), ("energy",)):
        d = _detector(*methods)
        ood_files.save_detector(model_path, d)
        back = ood_files.load_detector(model_path)
        assert back == d and back.kinds == d.kinds
        np.testing.assert_allclose(back.apply(*_features())[0], d.apply(*_features())[0])
    assert not ood_files.ood_paths(model_path)[1].exists()  # energy needs no arrays; the old ones are gone
    assert ood_files.load_detector(tmp_path / "none.pt") is None
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary file


def test_an_image_is_unfamiliar_when_any_score_is_over_its_threshold():
    logits, features = _features(n=200)
    both = _detector("knn", "mahalanobis")
    scores, flags = both.apply(logits, features)
    each = [_detector(m).apply(logits, features) for m in ("knn", "mahalanobis")]
    np.testing.assert_array_equal(flags, each[0][1] | each[1][1])
    np.testing.assert_allclose(scores, np.maximum(each[0][0], each[1][0]))
    assert ((scores > 0) == flags).all() and 0 < flags.mean() < 1
    # Energy scores are negative: relative to the threshold's size, the order is kept.
    energy = _detector("energy")
    raw = ood.score("energy", logits, features["penultimate"])
    assert np.argsort(energy.apply(logits, features)[0]).tolist() == np.argsort(raw).tolist()


@pytest.mark.parametrize("fault", ["not json", "schema", "missing field", "nan threshold", "zero threshold",
                                   "infinite", "method", "bool", "features", "no scores", "nan array", "shape",
                                   "checksum", "no arrays", "k zero", "k bool", "fewer features than k",
                                   "bank shape"])
def test_a_bad_sidecar_is_named_not_used(tmp_path, fault):
    model_path = tmp_path / "m.pt"
    ood_files.save_detector(model_path, _detector("mahalanobis", "knn"))
    json_path, npz_path = ood_files.ood_paths(model_path)
    record = json.loads(json_path.read_text())
    arrays = dict(np.load(npz_path))
    maha, knn = record["scores"]
    if fault == "not json":
        json_path.write_text("{")
    elif fault == "no arrays":
        npz_path.unlink()
    elif fault in ("nan array", "shape", "checksum", "bank shape"):
        arrays |= {"nan array": {"0.precision": arrays["0.precision"] * np.nan},
                   "shape": {"0.precision": arrays["0.precision"][:4]},
                   "checksum": {"0.precision": arrays["0.precision"] * 2},
                   "bank shape": {"1.bank": arrays["1.bank"][:, :4]}}[fault]
        np.savez(npz_path, **arrays)
    else:
        record |= {"schema": {"schema": 1}, "missing field": {}, "infinite": {"n_fit": float("inf")},
                   "no scores": {"scores": []}}.get(fault, {})
        maha |= {"nan threshold": {"threshold": float("nan")}, "zero threshold": {"threshold": 0},
                 "method": {"method": "magic"}, "bool": {"threshold": True}, "features": {"features": "pixels"}
                 }.get(fault, {})
        knn |= {"k zero": {"neighbours": 0}, "k bool": {"neighbours": True},
                "fewer features than k": {"neighbours": 31}}.get(fault, {})
        record.pop("n_fit") if fault == "missing field" else None
        json_path.write_text(json.dumps(record))
    with pytest.raises(ood_files.OodFileError, match=r"m\.ood\.(json|npz)"):
        ood_files.load_detector(model_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_half_precision_bank_with_a_non_finite_value_is_refused(tmp_path, bad):
    model_path = tmp_path / "m.pt"
    ood_files.save_detector(model_path, _detector("knn"))
    npz_path = ood_files.ood_paths(model_path)[1]
    arrays = dict(np.load(npz_path))
    assert arrays["0.bank"].dtype == np.float16
    arrays["0.bank"][3, 5] = bad
    np.savez(npz_path, **arrays)
    with pytest.raises(ood_files.OodFileError, match=r"m\.ood\.npz: array '0\.bank' holds non-finite"):
        ood_files.load_detector(model_path)
    edge = np.array([[65504, -65504, 0, 6e-8]], np.float16)  # the largest and smallest finite halves
    assert ood_files._all_finite(edge)


def test_stage_statistics_are_each_stage_mean_and_spread():
    """The "stages" features: per stage, the channel means then standard deviations of its output, from
    the same forward pass as the logits and the penultimate features."""
    torch.manual_seed(0)
    model = build_model("custom_cnn").eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    logits, feats = ood.logits_and_features(model, images, kinds=("stages", "penultimate"))
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _a, o: outputs.append(o.float())) for m in ood.stages(model)]
    np.testing.assert_allclose(predict_logits(model, images), logits, atol=1e-5)
    for h in hooks:
        h.remove()
    want = torch.cat([torch.cat([o.mean((2, 3)), o.std((2, 3))], 1) for o in outputs], 1).detach().numpy()
    assert feats["stages"].shape == (3, ood.feature_dim(model, "stages")) == want.shape
    np.testing.assert_allclose(feats["stages"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["penultimate"], ood.logits_and_features(model, images)[1]["penultimate"])
    with pytest.raises(ValueError, match="no stages registered for LeNet5"):
        ood.logits_and_features(build_model("lenet5"), images, kinds=("stages",))


@pytest.mark.parametrize("name", ["custom_cnn", "lenet5"])
def test_the_thumbnail_is_the_input_averaged_down_less_its_mean(name):
    """The "thumbnail" features of any model: its input tensor in THUMBNAIL_SIDE blocks, less the image's
    mean, so a brighter copy of an image has the same thumbnail."""
    model = build_model(name).eval()
    side, block = ood.THUMBNAIL_SIDE, 4
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 200, (2, side, side)).astype(np.uint8)
    images = np.repeat(np.repeat(coarse, block, 1), block, 2)  # constant over each block
    seen = []
    hook = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].float()))
    feats = ood.logits_and_features(model, np.concatenate([images, images + 40]), kinds=("thumbnail",))[1]["thumbnail"]
    hook.remove()
    x = seen[0][:, 0, ::block, ::block].flatten(1).numpy()
    assert feats.shape == (4, ood.feature_dim(model, "thumbnail")) == (4, side * side)
    np.testing.assert_allclose(feats[:2], x[:2] - x[:2].mean(1, keepdims=True), atol=1e-4)
    np.testing.assert_allclose(feats[:2], feats[2:], atol=1e-4)


def test_a_detector_for_other_features_is_refused(tmp_path):
    path = tmp_path / "custom_cnn.pt"
    save_checkpoint(path, build_model("custom_cnn").eval(), tiny_config(image_size=64))
    model, _ = load_checkpoint(path)
    with pytest.raises(ood_files.OodFileError, match="fitted on 8 features, the model gives 128"):
        ood_files.check_model(_detector("mahalanobis", dim=8), model, path)
    with pytest.raises(ood_files.OodFileError, match="no stages registered for LeNet5"):
        ood_files.check_model(_detector("knn", dim=8), build_model("lenet5"), path)


def test_fit_detector_thresholds_on_validation():
    """On synthetic images: fitted on 'training', at most 2% of 'validation' above the threshold; LeNet-5
    has no stages, so Mahalanobis alone takes the whole share."""
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (200, 32, 32), dtype=np.uint8), np.repeat(np.arange(4), 50)
    d = ood.fit_detector(model, (images, labels), rng.integers(0, 256, (150, 32, 32), dtype=np.uint8))
    (part,) = d.scores
    assert (part.method, part.feature_dim, d.n_fit, d.n_threshold) == ("mahalanobis", 84, 200, 150)
    assert d.validation_flagged <= 0.02 and all(np.isfinite(a).all() for a in part.arrays.values())


def test_the_default_detector_shares_validation_between_stages_and_thumbnail():
    torch.manual_seed(0)
    model = build_model("custom_cnn").eval()
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (80, 32, 32), dtype=np.uint8), np.repeat(np.arange(4), 20)
    val = rng.integers(0, 256, (400, 32, 32), dtype=np.uint8)
    d = ood.fit_detector(model, (images, labels), val)
    stages, thumbnail = d.scores
    assert [(s.method, s.features, s.neighbours) for s in d.scores] == [("knn", "stages", 1), ("knn", "thumbnail", 1)]
    assert stages.arrays["bank"].shape == (80, ood.feature_dim(model, "stages"))
    assert stages.arrays["bank"].dtype == thumbnail.arrays["bank"].dtype == ood.BANK_DTYPE
    assert thumbnail.arrays["bank"].shape == (80, ood.THUMBNAIL_SIDE ** 2)
    assert stages.validation_flagged <= 0.01 and thumbnail.validation_flagged <= 0.01 and d.validation_flagged <= 0.02
    # A training image is its own nearest neighbour: its KNN distances are zero, far under the thresholds.
    logits, features = ood.logits_and_features(model, images[:5], kinds=d.kinds)
    assert stages(logits, features) == pytest.approx(-1, abs=1e-3)
    assert thumbnail(logits, features) == pytest.approx(-1, abs=1e-3)


def _committed(name: str, dataset: kaggle.Dataset) -> ood.OodDetector:
    model_path = MODELS / f"{name}.pt"
    detector = ood_files.load_detector(model_path) if model_path.is_file() else None
    if detector is None:
        pytest.skip(f"no committed {name} model with an OOD file (python -m braintumour ood-fit writes it)")
    if detector.data_fingerprint != dataset.fingerprint:
        pytest.skip("the OOD file was fitted on other data")
    return detector


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_detectors_flag_at_most_two_percent_of_validation(name, dataset):
    """The committed sidecars reproduce: the validation images' scores from the model file, through the
    library, flag the share recorded, at most 2%. The threshold is a validation image's own score
    (`threshold_for_share`), so that image scores 0 where it was fitted and may round to either side of
    0 on another CPU (a score of 1.6e-6 on an AVX2-only EPYC): images within `ROUNDING` of the line (one
    per score) count either way, and no other image may move."""
    detector = _committed(name, dataset)
    model, payload = load_checkpoint(MODELS / f"{name}.pt")
    images = kaggle.load_images(dataset, payload["config"]["image_size"])
    val = images[splits.load_split(dataset).val]
    scores, flags = detector.apply(*ood.logits_and_features(model, val, kinds=detector.kinds))
    on_line = np.abs(scores) <= ROUNDING
    recorded = round(detector.validation_flagged * len(val))
    assert (flags & ~on_line).sum() <= recorded <= (flags | on_line).sum()
    assert recorded <= 0.02 * len(val) and on_line.sum() <= len(detector.scores)  # a line per score
    assert detector.n_threshold == len(val)


@pytest.fixture(scope="module")
def nonbrain(tmp_path_factory):
    return nonbrain_images(tmp_path_factory.mktemp("nonbrain"))


@pytest.mark.parametrize("kind", ["colour photograph", "blank or constant", "non-brain medical", "text or screenshot"])
def test_every_non_brain_input_is_refused_or_flagged(kind, nonbrain, dataset):
    """#49: each image of each kind is refused by the input check or flagged unfamiliar by the default
    model; none gets a class without a flag. What caught each one is in the failure message."""
    _committed(predict.default_model().stem, dataset)
    paths = nonbrain[kind]
    result = predict.predict_files(list(paths.values()), predict.default_model(), progress=False)
    refused = {n for n, p in paths.items() if any(e.startswith(f"{p}: refused, not a brain MRI slice") for e in
                                                  result.errors)}
    flagged = {n for n, p in paths.items() for r in result.rows if r["path"] == str(p) and r["unfamiliar"]}
    passed = set(paths) - refused - flagged
    assert not passed, f"{kind}: given a class without a flag: {sorted(passed)} (refused {sorted(refused)}, " \
                       f"flagged {sorted(flagged)})"
    assert len(result.errors) == len(refused)  # nothing failed for another reason


def test_the_input_check_passes_real_slices(real_dir):
    """A sample of real slices of every Kaggle class and split passes (the rates on every collection:
    docs/predict.md)."""
    for path in sorted(real_dir.glob("*/*/*"))[::97]:
        predict.read_checked_scan(path, 128)  # raises inputcheck.NotABrainSlice on a refusal


def test_content_is_the_image_without_its_padding():
    image = np.zeros((128, 128), np.uint8)
    image[32:96] = 255  # a 2:1 white image, padded above and below
    assert inputcheck.content(image, 200, 100).min() == 255
    assert inputcheck.content(image, 100, 100).shape == (128, 128)


def test_the_command_line_offers_every_method():
    from braintumour.__main__ import _parser

    action = next(a for a in _parser()._subparsers._group_actions[0].choices["ood-fit"]._actions
                  if a.dest == "method")
    assert sorted(action.choices) == sorted(ood.METHODS) and action.default is None
