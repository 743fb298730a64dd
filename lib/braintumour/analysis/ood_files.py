"""The unfamiliar detector's files beside a model, like the temperature's (`calibration`):
`<model>.ood.json` (the scores, their thresholds, provenance, the arrays' SHA-256) and `<model>.ood.npz`
(each score's fitted arrays: KNN's training features, Mahalanobis's class means and precision matrix).
Written atomically, arrays first; checked on load (schema, fields, finite values, shapes, checksum, and
the feature sizes against the model), a fault named with its file. `fit_for_model` is what
`python -m braintumour ood-fit` runs."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
from torch import nn

from braintumour import files
from braintumour.analysis.ood import (
    ARRAYS,
    BANK_DTYPE,
    FEATURE_KINDS,
    METHODS,
    OodDetector,
    Score,
    feature_dim,
    fit_detector,
    single_score,
)

SCHEMA = 2


class OodFileError(ValueError):
    """An OOD sidecar beside a model is unreadable, inconsistent or holds non-finite values."""


def ood_paths(model_path: Path) -> tuple[Path, Path]:
    """The files beside a model: `custom_cnn.pt` -> `custom_cnn.ood.json`, `custom_cnn.ood.npz`."""
    model_path = Path(model_path)
    return model_path.with_suffix(".ood.json"), model_path.with_suffix(".ood.npz")


def _arrays_sha256(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _stored_arrays(detector: OodDetector) -> dict[str, np.ndarray]:
    """Every score's arrays under `<position>.<name>`, in the dtypes stored."""
    return {f"{i}.{k}": np.asarray(s.arrays[k], dtype=ARRAY_DTYPES[k])
            for i, s in enumerate(detector.scores) for k in ARRAYS[s.method]}


def save_detector(model_path: Path, detector: OodDetector) -> Path:
    """Write the detector beside the model, atomically: the arrays first, then the JSON that names their
    checksum, so that a reader never pairs a new JSON with old arrays."""
    json_path, npz_path = ood_paths(model_path)
    record = {"schema": SCHEMA, **{k: v for k, v in asdict(detector).items() if k != "scores"},
              "scores": [{k: v for k, v in asdict(s).items() if k != "arrays"} for s in detector.scores]}
    arrays = _stored_arrays(detector)
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files.write_bytes(npz_path, buffer.getvalue())
        record["arrays_sha256"] = _arrays_sha256(list(arrays.values()))
    else:
        npz_path.unlink(missing_ok=True)
    return files.write_json(json_path, record)


_FIELDS = {"fitted_on": str, "n_fit": int, "thresholded_on": str, "n_threshold": int,
           "max_validation_flagged": float, "validation_flagged": float, "data_fingerprint": str, "git_commit": str}
_SCORE_FIELDS = {"method": str, "features": str, "neighbours": int, "threshold": float, "validation_flagged": float,
                 "feature_dim": int}
ARRAY_DTYPES = {"means": np.float64, "precision": np.float64, "bank": BANK_DTYPE}


def _checked_fields(path: Path, record: dict, fields: dict[str, type]) -> None:
    for name, kind in fields.items():
        value = record.get(name)
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
            raise OodFileError(f"{path}: field {name!r} is {value!r}, expected a finite {kind.__name__}")


def _checked_score(path: Path, record: object) -> dict:
    """One score's fields: present, typed, finite; a known method and features; KNN's k positive; a
    threshold other than 0 (scores are measured relative to its size)."""
    if not isinstance(record, dict):
        raise OodFileError(f"{path}: a score is {record!r}, expected an object")
    _checked_fields(path, record, _SCORE_FIELDS)
    if record["method"] not in METHODS:
        raise OodFileError(f"{path}: unknown method {record['method']!r} (known: {', '.join(METHODS)})")
    if record["features"] not in FEATURE_KINDS:
        raise OodFileError(f"{path}: unknown features {record['features']!r} (known: {', '.join(FEATURE_KINDS)})")
    if record["method"] == "knn" and record["neighbours"] < 1:
        raise OodFileError(f"{path}: field 'neighbours' is {record['neighbours']!r}, expected a positive integer")
    if record["threshold"] == 0:
        raise OodFileError(f"{path}: a threshold of 0; scores are measured relative to its size")
    return record


def _checked_record(path: Path) -> dict:
    """The JSON's fields, each present, of its type and finite; the schema known; at least one score."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise OodFileError(f"{path}: not an OOD file ({e})") from e
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise OodFileError(f"{path}: not an OOD file of schema {SCHEMA} (python -m braintumour ood-fit writes one)")
    _checked_fields(path, record, _FIELDS)
    if not isinstance(record.get("scores"), list) or not record["scores"]:
        raise OodFileError(f"{path}: field 'scores' is {record.get('scores')!r}, expected a list of scores")
    record["scores"] = [_checked_score(path, s) for s in record["scores"]]
    return record


def _expected_shapes(method: str, d: int) -> dict[str, tuple]:
    return {"mahalanobis": {"means": (None, d), "precision": (d, d)}, "knn": {"bank": (None, d)}, "energy": {}}[method]


def _checked_array(npz_path: Path, name: str, a: np.ndarray, shape: tuple) -> None:
    if a.ndim != 2 or any(want is not None and got != want for got, want in zip(a.shape, shape, strict=True)):
        raise OodFileError(f"{npz_path}: array {name!r} of shape {a.shape}; expected "
                           f"({', '.join('N' if w is None else str(w) for w in shape)})")
    if not _all_finite(a):
        raise OodFileError(f"{npz_path}: array {name!r} holds non-finite values")


def _all_finite(a: np.ndarray) -> bool:
    """`np.isfinite(a).all()`; for half precision by its exponent bits (all ones: infinite or NaN), ten
    times faster than numpy's half-precision arithmetic on a KNN bank."""
    if a.dtype == np.float16:
        return not ((a.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(a).all())


def _checked_arrays(npz_path: Path, record: dict) -> list[dict[str, np.ndarray]]:
    """Each score's arrays: shapes matching its feature size, finite, and the checksum the JSON names."""
    expected = [_expected_shapes(s["method"], s["feature_dim"]) for s in record["scores"]]
    if not any(expected):
        return [{} for _ in expected]
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = [{k: np.asarray(z[f"{i}.{k}"], dtype=ARRAY_DTYPES[k]) for k in shapes}
                      for i, shapes in enumerate(expected)]
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise OodFileError(f"{npz_path}: unreadable arrays ({e})") from e
    for i, shapes in enumerate(expected):
        for k, shape in shapes.items():
            _checked_array(npz_path, f"{i}.{k}", arrays[i][k], shape)
    if record.get("arrays_sha256") != _arrays_sha256([a for part in arrays for a in part.values()]):
        raise OodFileError(f"{npz_path}: arrays do not match the checksum in {npz_path.with_suffix('.json').name}")
    for s, part in zip(record["scores"], arrays, strict=True):
        if s["method"] == "knn" and len(part["bank"]) < s["neighbours"]:
            raise OodFileError(f"{npz_path}: {len(part['bank'])} training features, fewer than k = {s['neighbours']}")
    return arrays


def load_detector(model_path: Path) -> OodDetector | None:
    """The model's OOD detector, or None where no `.ood.json` sits beside it (no unfamiliar flag).
    OodFileError, naming the file and the fault, where it is there but unusable."""
    json_path, npz_path = ood_paths(model_path)
    if not json_path.is_file():
        return None
    record = _checked_record(json_path)
    arrays = _checked_arrays(npz_path, record)
    scores = tuple(Score(**{k: s[k] for k in _SCORE_FIELDS}, arrays=a) for s, a in zip(record["scores"], arrays,
                                                                                         strict=True))
    return OodDetector(scores=scores, **{k: record[k] for k in _FIELDS})


def check_model(detector: OodDetector, model: nn.Module, model_path: Path) -> None:
    """OodFileError where a score was fitted on features the model cannot give, or of another size."""
    for s in detector.scores:
        try:
            dim = feature_dim(model, s.features)
        except ValueError as e:
            raise OodFileError(f"{ood_paths(model_path)[0]}: {e}") from e
        if s.feature_dim != dim:
            raise OodFileError(f"{ood_paths(model_path)[0]}: fitted on {s.feature_dim} features, the model "
                               f"gives {dim}; fit it again (python -m braintumour ood-fit --model {model_path})")


def fit_beside(model_path: Path, model: nn.Module, train: tuple[np.ndarray, np.ndarray], validation: np.ndarray,
               data_fingerprint: str, specs: tuple | None = None) -> OodDetector:
    """Fit `model`'s detector (`ood.fit_detector`: `specs`, by default `default_scores`) on the training
    images and labels `train`, threshold it on the `validation` images, and write it beside `model_path`."""
    from braintumour.reporting import outputs

    detector = fit_detector(model, train, validation, specs, data_fingerprint=data_fingerprint,
                            git_commit=outputs.git_commit())
    save_detector(model_path, detector)
    return detector


def fit_for_model(model_path: Path, method: str | None = None) -> OodDetector:
    """Fit the detector of a model file on the Kaggle set (its split, the model's image size), write it
    beside the model (`fit_beside`) and return it: what `python -m braintumour ood-fit` runs. `method`
    alone, or by default `default_scores`."""
    from braintumour.datasets import splits
    from braintumour.datasets.kaggle import load_dataset, load_images
    from braintumour.training.checkpoints import load_checkpoint

    model, payload = load_checkpoint(model_path)
    kaggle = load_dataset()
    images = load_images(kaggle, payload["config"]["image_size"])
    labels = kaggle.manifest.label.to_numpy()
    split = splits.load_split(kaggle)
    return fit_beside(model_path, model, (images[split.train], labels[split.train]), images[split.val],
                      kaggle.fingerprint, single_score(method) if method else None)
