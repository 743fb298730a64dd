"""`python -m braintumour predict`: the trained model on new slices, with a Grad-CAM overlay each.

Reads JPEG, PNG (8/16-bit, grey, RGB, RGBA, palette), TIFF and DICOM MR slices; preprocessing is
the library's own (`images.square_resize`, `transforms.to_input`), never a copy. Every bad file gets
one line naming it and the reason; the others are still processed; outputs are written atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from braintumour import files, inputcheck
from braintumour.analysis import ood, ood_files
from braintumour.analysis.calibration import Calibration, load_calibration, probabilities
from braintumour.analysis.evaluate import predict_logits
from braintumour.analysis.explain import CamExplainer, overlay
from braintumour.config import CLASSES, project_root
from braintumour.datasets.images import (
    MAX_FILE_BYTES,
    ImageDecodeError,
    check_frames,
    check_image_size,
    decode_image,
    decoder_reason,
    read_image_bytes,
    scale_to_uint8,
    square_resize,
    to_grey,
)
from braintumour.training.checkpoints import check_runs, load_checkpoint

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
# Relative to the project root, not the current folder, in order of preference. Notebook 11's model
# and notebook 08's variant are written only when they met their targets; notebook 03's model, the
# study's reproduction, always is.
DEFAULT_MODELS = (Path("reports/models/custom_cnn_generalised.pt"), Path("reports/models/custom_cnn_external.pt"),
                  Path("reports/models/custom_cnn.pt"))
# DICOM rescale values beyond these are corruption, not physics (CT and MR slopes are near 1, intercepts
# a few thousand); within them float64 cannot overflow for any stored pixel value.
RESCALE_LIMIT = 1e12
OVERLAY_STEM_BYTES = 120
# The overlays `predict --out` writes (`_write_overlay`): a folder scan skips them, so that overlays
# beside the scans are not classified as scans.
OVERLAY_NAME = re.compile(r"\d{5}_.*_(" + "|".join(CLASSES) + r")_\d\.\d\d_cam\.png", re.S)
# OWASP's CSV injection: a spreadsheet runs a cell that begins with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@")


def default_model() -> Path:
    """The model `predict` uses without `--model`, found from wherever the command is run: the first
    of `DEFAULT_MODELS` that exists."""
    paths = [project_root() / p for p in DEFAULT_MODELS]
    return next((p for p in paths if p.is_file()), paths[-1])


def printable(text: str | Path) -> str:
    """Text that every output (table, CSV, JSON, terminal) takes, for a file name or a message naming one.

    A name's bytes that are not UTF-8 reach Python as lone surrogates (`os.fsdecode`'s
    surrogateescape), which no UTF-8 writer accepts; they are shown as backslash escapes
    (`scan\\xff.png`), and so are control characters, which would split a line (a newline in a name).
    """
    s = os.fsencode(str(text)).decode("utf-8", "backslashreplace")
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in s)


def collect_paths(inputs: Iterable[str | Path], errors: list[str] | None = None) -> list[Path]:
    """Files named directly (any suffix), and files with a known suffix found recursively in folders
    (not the temporary files of an interrupted atomic write, nor predict's own overlays). A folder that
    holds no such file is reported in `errors` (when given), naming it."""
    out: list[Path] = []
    for p in map(Path, inputs):
        try:
            is_dir = p.is_dir()
        except OSError:  # a name too long for the file system: read_scan names the problem
            is_dir = False
        if is_dir:
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES and not files.is_temp(f)
                and not OVERLAY_NAME.fullmatch(f.name)
            )
            if not found and errors is not None:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES | DICOM_SUFFIXES))
                errors.append(f"{p}: folder holds no image file (searched recursively for {suffixes})")
            out += found
        else:
            out.append(p)  # a missing file is reported by read_scan, with the others still processed
    return out


def _is_dicom(data: bytes, path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or (len(data) > 132 and data[128:132] == b"DICM")


def read_dicom(data: bytes, source: Path) -> Image.Image:
    """One DICOM slice -> 8-bit greyscale by the rule every container follows (`images.scale_to_uint8`):
    8-bit unsigned pixels as stored, as an 8-bit PNG's are; wider, signed or rescaled ones shifted and
    scaled like a 16-bit PNG's or a float TIFF's."""
    import pydicom

    _check_deflated_size(data, source)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as e:  # InvalidDicomError, NotImplementedError, BytesLengthException and more
        raise ImageDecodeError(f"{source}: not a readable DICOM file ({decoder_reason(e)})") from e
    _check_dicom_header(ds, source)
    slope, intercept = _rescale(ds, source)  # before decoding: a refused rescale decodes nothing
    try:
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises many kinds for truncated or unsupported pixel data
        raise ImageDecodeError(f"{source}: DICOM pixel data cannot be decoded ({decoder_reason(e)})") from e
    if arr.ndim == 3 and arr.dtype == np.uint8:  # RGB secondary capture: PIL's luma, as for an RGB PNG
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., :3]), mode="RGB").convert("L"))
    elif arr.ndim == 3:  # wider colour: ITU-R 601 luma a channel at a time (a matrix product would
        arr = _luma(arr)  # first make a float64 copy of all three channels, 1.6 GB at the size limit)
    inverted = ds.get("PhotometricInterpretation") == "MONOCHROME1"
    if arr.dtype == np.uint8 and (slope, intercept) == (1.0, 0.0):
        return Image.fromarray(255 - arr if inverted else arr, mode="L")
    arr = arr.astype(np.float64, copy=False)  # pixel_array's own array or the luma: ours to overwrite
    arr *= -slope if inverted else slope  # negated, the shift to zero makes it max - value
    arr += -intercept if inverted else intercept
    return Image.fromarray(scale_to_uint8(arr, source=source), mode="L")


def _luma(rgb: np.ndarray) -> np.ndarray:
    luma = rgb[..., 0] * 0.299
    luma += rgb[..., 1] * 0.587
    luma += rgb[..., 2] * 0.114
    return luma


def _check_dicom_header(ds, source: Path) -> None:
    """The size guard on the header's numbers, before any pixel is decoded (a few KB of compressed
    pixel data can announce gigabytes), and the one-slice rule before decoding the frames."""
    if "PixelData" not in ds:
        raise ImageDecodeError(
            f"{source}: DICOM file holds no image (no PixelData; modality "
            f"{ds.get('Modality', 'unknown')}, SOP class {ds.get('SOPClassUID', 'unknown')})"
        )
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as e:
        raise ImageDecodeError(f"{source}: DICOM header has no usable image size ({e})") from e
    if rows <= 0 or cols <= 0:
        raise ImageDecodeError(f"{source}: DICOM header has no image size (Rows {rows}, Columns {cols})")
    check_image_size(cols, rows, frames, source=source)
    check_frames(frames, "DICOM", source=source)


def _rescale(ds, source: Path) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept, refused unless finite and of sane size: an overflowing slope
    turns every pixel into infinity, a zero one every pixel into the intercept (a blank image)."""
    slope = _dicom_number(ds, "RescaleSlope", 1.0, source)
    intercept = _dicom_number(ds, "RescaleIntercept", 0.0, source)
    if not 1 / RESCALE_LIMIT <= abs(slope) <= RESCALE_LIMIT or abs(intercept) > RESCALE_LIMIT:
        raise ImageDecodeError(
            f"{source}: DICOM rescale is absurd (RescaleSlope {slope:g}, RescaleIntercept {intercept:g}; a slope's "
            f"magnitude must lie in [{1 / RESCALE_LIMIT:g}, {RESCALE_LIMIT:g}], an intercept's at most "
            f"{RESCALE_LIMIT:g}); refused rather than rescaled"
        )
    return slope, intercept


def _dicom_number(ds, name: str, default: float, source: Path) -> float:
    raw = ds.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):  # text, or several values
        value = float("nan")
    if not np.isfinite(value):
        raise ImageDecodeError(f"{source}: DICOM {name} is {printable(str(raw))!r}, not one finite number; "
                               "refused rather than rescaled")
    return value


def _check_deflated_size(data: bytes, source: Path) -> None:
    """A DICOM file in the Deflated transfer syntax is inflated whole by pydicom when read: refuse one
    that would inflate past MAX_FILE_BYTES (found by inflating at most that much), before pydicom does."""
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception:  # not a DICOM file or a broken header: dcmread says what is wrong
        return
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflater.decompress(fp.read(), MAX_FILE_BYTES)
    except zlib.error as e:
        raise ImageDecodeError(f"{source}: not a readable DICOM file (deflated data is corrupt: {e})") from e
    if inflater.unconsumed_tail:
        raise ImageDecodeError(
            f"{source}: deflated DICOM inflates to over {MAX_FILE_BYTES:,} bytes; refused rather than decoded"
        )


def read_scan(path: Path, size: int) -> np.ndarray:
    """Any supported file -> (size, size) uint8, with the training preprocessing. Whatever goes wrong
    with one file, whichever library raises it, is an ImageDecodeError naming it: one bad file never
    stops the others."""
    return _read(path, size, check=False)


def read_checked_scan(path: Path, size: int) -> np.ndarray:
    """`read_scan`, then the input check (`inputcheck.refusal`): `inputcheck.NotABrainSlice`, one line
    naming the file and the rule, for what is plainly not a brain MRI slice (colour, blank, no dark
    background). The colour rule looks at the pixels decoded for the model: a file is decoded once."""
    return _read(path, size, check=True)


def _read(path: Path, size: int, check: bool) -> np.ndarray:
    data = read_image_bytes(path)  # missing, not a regular file, empty, too large: one line each
    try:
        with warnings.catch_warnings():  # a decoder's complaint about a file it still decodes is not a result line
            warnings.simplefilter("ignore")
            if _is_dicom(data, path):
                grey = read_dicom(data, path)
                looks = inputcheck.dicom_colour_and_size(data) if check else None
            else:
                decoded = decode_image(data, source=path)
                # what the input check reads, taken before `to_grey` turns the image by its EXIF tag
                looks = inputcheck.colour_and_size(decoded) if check else None
                grey = to_grey(decoded, source=path)
            if grey.width < 8 or grey.height < 8:
                raise ImageDecodeError(f"{path}: image is {grey.width}x{grey.height}, too small to be an MRI slice")
            image = square_resize(grey, size)
    except ImageDecodeError:
        raise
    except Exception as e:  # decoders raise far more kinds than their documentation lists
        raise ImageDecodeError(f"{path}: cannot decode image ({decoder_reason(e)})") from e
    if looks is not None and (reason := inputcheck.refusal(image, *looks)) is not None:
        raise inputcheck.NotABrainSlice(f"{path}: refused, not a brain MRI slice: {reason}")
    return image


# The flags' columns: each flag with its score and threshold (#49), so that a CSV row stands alone.
FLAG_COLUMNS = ["uncertain", "top_probability", "uncertain_below", "unfamiliar", "unfamiliar_score",
                "unfamiliar_above"]


@dataclass
class PredictResult:
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    model: str = ""
    calibration: Calibration | None = None
    detector: ood.OodDetector | None = None

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["path", "prediction", *[f"p_{c}" for c in CLASSES], *FLAG_COLUMNS,
                                                "model", "temperature", "cam_png"])

    @property
    def temperature(self) -> float:
        """The temperature the probabilities were scaled by: 1 for an uncalibrated model."""
        return self.calibration.temperature if self.calibration else 1.0

    def provenance(self) -> str:
        """One line: which model and temperature produced the probabilities, and the flag's threshold."""
        c = self.calibration
        if c is None:
            line = (f"model {self.model}: no calibration file beside it, so probabilities are uncalibrated "
                    "and no image is flagged uncertain")
        else:
            line = (f"model {self.model}, temperature {c.temperature:.3f} (fitted on {c.n_images} {c.fitted_on} "
                    f"images); uncertain: top probability below {c.uncertain_below:.4f}")
        return f"{line}\n{self.unfamiliar_provenance()}"

    def unfamiliar_provenance(self) -> str:
        """One line: the unfamiliar flag's method and threshold, or that the model has none."""
        d = self.detector
        if d is None:
            return ("unfamiliar: no OOD file beside the model (python -m braintumour ood-fit writes it), "
                    "so no image is flagged")
        return (f"unfamiliar: {d.method}, a score above its threshold (fitted on {d.n_fit} training images, "
                f"{d.validation_flagged:.1%} of {d.n_threshold} validation images above it)")


def _calibrated(model, images: np.ndarray, calibration: Calibration | None,
                detector: ood.OodDetector | None = None) -> tuple[np.ndarray, list, list]:
    """Probabilities, the uncertain flag and the unfamiliar (score, flag) per image; None where the model
    has no calibration or OOD file. Logits and features come from one forward pass."""
    if detector is None:
        logits, unfamiliar = predict_logits(model, images), [(None, None)] * len(images)
    else:
        logits, features = ood.logits_and_features(model, images, kinds=detector.kinds)
        scores, flags = detector.apply(logits, features)
        unfamiliar = [(float(s), bool(f)) for s, f in zip(scores, flags, strict=True)]
    if calibration is None:
        return probabilities(logits), [None] * len(images), unfamiliar
    proba, flag = calibration.apply(logits)
    return proba, [bool(f) for f in flag], unfamiliar


def _flag_fields(p: np.ndarray, uncertain: bool | None, unfamiliar: tuple, result: PredictResult) -> dict:
    """A row's FLAG_COLUMNS: each flag, its score and its threshold (None where the model has no file)."""
    c, d = result.calibration, result.detector
    return {"uncertain": uncertain, "top_probability": round(float(p.max()), 6),
            "uncertain_below": round(c.uncertain_below, 6) if c else None,
            "unfamiliar": unfamiliar[1], "unfamiliar_score": None if unfamiliar[0] is None else round(unfamiliar[0], 4),
            "unfamiliar_above": round(d.threshold, 4) if d else None}


def predict_files(
    paths: list[Path],
    model_path: Path,
    out_dir: Path | None = None,
    cam_method: str = "gradcam",
    batch_size: int = 64,
    progress: bool = True,
    screen: bool = True,
) -> PredictResult:
    """Classify each file; write a side-by-side Grad-CAM PNG per image to `out_dir` (if given).
    `model_path` is resolved by the caller (`main`: `--model`, else `default_model()`), and `out_dir` checked
    by it (`files.check_output_path`, before any work). `screen` runs the input check and the unfamiliar score
    (#49); False gives predict as it was without them (for `benchmarks/ood_overhead.py`)."""
    model, payload = load_checkpoint(model_path)
    size = payload["config"]["image_size"]
    check_runs(model, size, model_path)
    result = PredictResult(model=printable(model_path), calibration=load_calibration(model_path))
    if screen:
        result.detector = ood_files.load_detector(model_path)
        if result.detector is not None:
            ood_files.check_model(result.detector, model, model_path)
    read = read_checked_scan if screen else read_scan
    explainer = CamExplainer(model, cam_method) if out_dir is not None else None
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress or len(paths) < 2)
    for start in range(0, len(paths), batch_size):
        ok_paths, arrays = _read_batch(paths[start : start + batch_size], lambda path: read(path, size), result, bar)
        if not arrays:
            continue
        images = np.stack(arrays)
        proba, uncertain, unfamiliar = _calibrated(model, images, result.calibration, result.detector)
        pred = proba.argmax(1)
        maps = explainer(images, pred) if explainer is not None else [None] * len(images)
        for path, img, p, k, flag, odd, heat in zip(ok_paths, images, proba, pred, uncertain, unfamiliar, maps,
                                                   strict=True):
            if (cam_png := _checked_overlay(result, out_dir, path, img, heat, p)) is None:
                continue
            result.rows.append(
                {
                    "path": printable(path),
                    "prediction": CLASSES[k],
                    **{f"p_{c}": round(float(p[i]), 6) for i, c in enumerate(CLASSES)},
                    **_flag_fields(p, flag, odd, result),
                    "model": result.model,
                    "temperature": round(result.temperature, 6),
                    "cam_png": cam_png,
                }
            )
    bar.close()
    return result


def _read_batch(paths: list[Path], read: Callable[[Path], np.ndarray], result: PredictResult,
                bar: tqdm) -> tuple[list[Path], list[np.ndarray]]:
    """The files of one batch that read, and their images; each that does not is one line in `result.errors`."""
    ok_paths, arrays = [], []
    for path in paths:
        try:
            arrays.append(read(path))
            ok_paths.append(path)
        except ImageDecodeError as e:
            result.errors.append(printable(e))
        bar.update()
    return ok_paths, arrays


def _checked_overlay(result: PredictResult, out_dir: Path | None, path: Path, image: np.ndarray, heat: np.ndarray,
                     p: np.ndarray) -> str | None:
    """The overlay's name for a result's row ("" without `out_dir`), or None for no row: finite weights
    can still overflow, and no result beats a wrong one. An overlay that cannot be written is one error
    line, and the result is kept."""
    if not np.isfinite(p).all():
        result.errors.append(f"{printable(path)}: the model's output for it is not finite; no result")
        return None
    if out_dir is None:
        return ""
    k = int(p.argmax())
    try:
        return printable(_write_overlay(out_dir, path, image, heat, CLASSES[k], float(p[k]), len(result.rows)))
    except OSError as e:
        result.errors.append(f"{printable(path)}: overlay not written ({e.strerror or e}); result kept")
        return ""


def _write_overlay(
    out_dir: Path, source: Path, image: np.ndarray, heat: np.ndarray, label: str, p: float, index: int
) -> Path:
    """Image and heatmap overlay side by side, written atomically."""
    side = np.concatenate([np.repeat(image[..., None], 3, axis=2), overlay(image, heat)], axis=1)
    # The source's name is cut so the overlay's name (and its temporary's) stays under the 255-byte limit.
    stem = os.fsdecode(os.fsencode(source.stem)[:OVERLAY_STEM_BYTES])
    target = out_dir / f"{index:05d}_{stem}_{label}_{p:.2f}_cam.png"
    # The folder's stale temporaries were removed once, by `main`: no scan of it per image.
    return files.write_with(target, lambda tmp: Image.fromarray(side).save(tmp, format="PNG"), clean_stale=False)


def render(result: PredictResult, fmt: str) -> str:
    frame = result.frame()
    if fmt == "json":
        c, d = result.calibration, result.detector
        return json.dumps({"model": result.model, "temperature": result.temperature,
                           "uncertain_below": c.uncertain_below if c else None, "calibrated": c is not None,
                           "unfamiliar_method": d.method if d else None, "unfamiliar_above": d.threshold if d else None,
                           "predictions": frame.to_dict(orient="records"), "errors": result.errors}, indent=2,
                          allow_nan=False)  # strict JSON: every number is finite by now
    if fmt == "csv":
        return frame.map(_csv_cell).to_csv(index=False)
    if frame.empty:
        return "no image could be classified"
    shown = frame.drop(columns=["cam_png", "model", "temperature", "top_probability", "uncertain_below",
                                "unfamiliar_above"]).copy()
    shown["path"] = shown.path.map(lambda s: s if len(s) <= 60 else "..." + s[-57:])
    counts = frame.prediction.value_counts().reindex(list(CLASSES), fill_value=0)
    summary = ", ".join(f"{c}: {n}" for c, n in counts.items())
    flagged = int(frame.uncertain.fillna(False).astype(bool).sum())
    unsure = f"; {flagged} flagged uncertain" if result.calibration else ""
    if result.detector is not None:
        unsure += f"; {int(frame.unfamiliar.fillna(False).astype(bool).sum())} flagged unfamiliar"
    return (f"{shown.to_string(index=False)}\n\n{len(frame)} image(s) classified ({summary}{unsure})\n"
            f"{result.provenance()}")


def _csv_cell(value: object) -> object:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def check_apart(inputs: Iterable[str | Path], output: str | Path, option: str) -> None:
    """Outputs never touch inputs: OutputPathError when `output` is an input (by any name: a link, a
    hard link) or lies inside an input folder, where `--output` would overwrite a scan and `--out`
    would have each rerun classify the last run's overlays."""
    for given in map(Path, inputs):
        try:
            target, source = Path(output).resolve(), given.resolve()
            same = target == source or (target.exists() and source.exists() and os.path.samefile(target, source))
            inside = source.is_dir() and target.is_relative_to(source)
        except (OSError, RuntimeError):  # a name too long, a link loop: check_output_path names it
            continue
        if same or inside:
            where = f"is the input {given}" if same else f"lies inside the input folder {given}"
            raise files.OutputPathError(f"{output}: the {option} path {where}; refused, since outputs never touch "
                                        "inputs (choose a path outside them)")


def main(args) -> int:
    out_dir = Path(args.out) if args.out else None
    # Every output path is checked before any work, so that no result is lost to a bad one
    # (files.OutputPathError: one line, exit status 2).
    for option, output in (("--out", out_dir), ("--output", args.output)):
        if output:
            check_apart(args.paths, output, option)
    if out_dir is not None:
        files.check_output_path(out_dir, folder=True)
        files.remove_stale_temps(out_dir, any_target=True)  # what a killed run left there
    if args.output:
        files.check_output_path(args.output, folder=False)
    input_errors: list[str] = []
    paths = collect_paths(args.paths, errors=input_errors)
    model_path = Path(args.model) if args.model else default_model()
    if paths:
        result = predict_files(paths, model_path, out_dir, args.cam, args.batch_size, progress=sys.stderr.isatty())
    else:
        result = PredictResult()
    result.errors[:0] = [printable(e) for e in input_errors]
    text = render(result, args.format)
    if args.output:
        files.write_text(args.output, text + "\n")
    else:
        print(text)
    for err in result.errors:
        print(f"ERROR: {err}", file=sys.stderr)
    if result.errors:
        print(f"{len(result.errors)} of {len(paths) + len(input_errors)} file(s) failed", file=sys.stderr)
    return 1 if result.errors or not paths else 0
