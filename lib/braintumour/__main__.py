"""Command line: a thin layer over the functions the notebooks call.

python -m braintumour data [--url URL] [--sha256 HEX]   find the dataset or download it, then the figshare
                                                         masks and patient ids, then Br35H
python -m braintumour manifest                           build/check the manifest, print the fingerprint
python -m braintumour notebook NB... --profile P [--reports DIR]   execute notebooks with papermill
python -m braintumour export [--reports DIR]             HTML and PDF again from the executed notebooks
python -m braintumour experiments-log                    docs/experiments.md's table of the result files
python -m braintumour ood-fit --model M [--method NAME]  fit the unfamiliar score of a model, write it beside it
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _cam_method(text: str) -> str:
    from braintumour.analysis.explain import CAM_METHODS

    if text not in CAM_METHODS:
        raise argparse.ArgumentTypeError(f"unknown CAM method {text!r} (choose from {', '.join(CAM_METHODS)})")
    return text


def _notebook_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such notebook file")
    return text


def _parameter(text: str) -> tuple[str, object]:
    """NAME=JSON for `notebook --param`: a bad one is an argument error (exit status 2)."""
    import json

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=JSON, e.g. 'seeds=[0]'")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON ({e.msg})") from e


def _cmd_data(args: argparse.Namespace) -> int:
    from braintumour.datasets import SOURCES

    options = {"kaggle": {"url": args.url or None, "sha256": args.sha256 or None, "force": args.force},
               "figshare": {"api_url": args.figshare_api or None}}
    for name, source in SOURCES.items():
        if name not in args.skip:
            source.fetch(**options.get(name, {}))
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    import warnings

    from braintumour.datasets.kaggle import load_dataset

    with warnings.catch_warnings():  # the skipped files are listed below, one line each, cached or not
        warnings.filterwarnings("ignore", message=r"\d+ unreadable image\(s\) skipped")
        ds = load_dataset(skip_bad=args.skip_bad)
    for err in ds.manifest.error[ds.manifest.error != ""]:
        print(f"SKIPPED: {err}", file=sys.stderr)
    if args.fingerprint_only:
        print(ds.fingerprint)
        return 0
    counts = ds.manifest.groupby(["split", "class_name"]).size().unstack()
    print(f"dataset:     {ds.root}\nimages:      {len(ds.manifest)}\nfingerprint: {ds.fingerprint}")
    print(counts.to_string())
    return 0


def _cmd_notebook(args: argparse.Namespace) -> int:
    from braintumour.files import check_output_path
    from braintumour.reporting.pipeline import NotebookFailed, execute

    if args.reports:
        check_output_path(args.reports, folder=True)
    # `make reproduce` exports REPRODUCE_T0 so elapsed time counts from the start of the whole run.
    t0 = float(os.environ.get("REPRODUCE_T0") or time.time())
    for i, nb in enumerate(args.notebooks, 1):
        position = args.position or f"{i}/{len(args.notebooks)}"
        try:
            execute(
                nb,
                args.profile,
                Path(args.reports) if args.reports else None,
                position=f"[{position}, {time.time() - t0:.0f} s elapsed]",
                parameters=dict(args.param),
            )
        except NotebookFailed as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from braintumour.config import reports_dir
    from braintumour.reporting.export import export

    reports = Path(args.reports) if args.reports else reports_dir()
    executed = sorted((reports / "executed").glob("[0-9][0-9]_*.ipynb"))
    executed = [p for p in executed if not p.name.endswith(".FAILED.ipynb")]
    if not executed:
        print(f"ERROR: no executed notebooks in {reports / 'executed'} (make reproduce writes them)", file=sys.stderr)
        return 2
    for nb in executed:
        html, pdf = export(nb, reports)
        print(f"{nb.name} -> {html.name}, {pdf.name}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from braintumour.predict import main as predict_main

    return predict_main(args)


def _cmd_ood_fit(args: argparse.Namespace) -> int:
    from braintumour.analysis.ood_files import fit_for_model, ood_paths

    for model in args.model:
        d = fit_for_model(Path(model), args.method)
        print(f"{ood_paths(Path(model))[0]}: {d.method}; "
              f"{d.validation_flagged:.2%} of {d.n_threshold} validation images flagged")
    return 0


def _cmd_readme_results(args: argparse.Namespace) -> int:
    from braintumour.config import project_root
    from braintumour.reporting.summary import rewrite_readme

    readme = project_root() / "README.md"
    changed = rewrite_readme(readme, Path(args.metrics) if args.metrics else None)
    print(f"{readme}: results block {'rewritten' if changed else 'already up to date'}")
    return 0


def _cmd_experiments_log(args: argparse.Namespace) -> int:
    from braintumour.config import project_root
    from braintumour.reporting.experiment_log import rewrite_log

    root = project_root()
    doc = root / "docs" / "experiments.md"
    changed = rewrite_log(doc, root / "experiments" / "results", root)
    print(f"{doc}: result-file table {'rewritten' if changed else 'already up to date'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m braintumour", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_notebook_commands(sub)
    _add_predict_commands(sub)
    _add_report_commands(sub)
    return parser


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from braintumour.config import COLLECTIONS

    p = sub.add_parser("data", help="find the dataset, or download, check and unpack it into data/raw/")
    p.add_argument("--url", default="", help="zip of the Kaggle layout (default $DATA_URL)")
    p.add_argument("--sha256", default="", help="expected SHA-256 of the zip (default $DATA_SHA256)")
    p.add_argument("--force", action="store_true", help="download even if a dataset is found elsewhere")
    p.add_argument("--figshare-api", default="",
                   help="figshare file listing (default $FIGSHARE_API_URL, else figshare's public API)")
    p.add_argument("--skip", action="append", default=[], choices=["figshare", *COLLECTIONS],
                   help="leave out a source (repeatable): the figshare masks and patient ids, or a collection; "
                        "a collection's zip is taken from $<NAME>_URL (BR35H_URL, BRATS_SLICES_URL, "
                        "OASIS_SLICES_URL, OPENNEURO_SLICES_URL; SHA-256 in ..._SHA256) where set")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("manifest", help="build or check the manifest and print the data fingerprint")
    p.add_argument("--skip-bad", action="store_true", help="list unreadable images instead of stopping")
    p.add_argument("--fingerprint-only", action="store_true", help="print only the data fingerprint")
    p.set_defaults(func=_cmd_manifest)


def _add_notebook_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebook", help="execute notebooks in order with papermill, export HTML and PDF")
    p.add_argument("notebooks", nargs="+", type=_notebook_file)
    p.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    p.add_argument("--position", default="", help="shown in the progress line, e.g. 3/7")
    p.add_argument("--reports", default="", help="output folder (default: reports/, or $BRAINTUMOUR_REPORTS)")
    p.add_argument("--param", action="append", default=[], type=_parameter, metavar="NAME=JSON",
                   help="a parameter of the notebook's parameters cell, e.g. --param 'seeds=[0]' (repeatable)")
    p.set_defaults(func=_cmd_notebook)

    p = sub.add_parser("export", help="export the executed notebooks again as HTML and PDF for a reader")
    p.add_argument("--reports", default="", help="reports folder (default: reports/, or $BRAINTUMOUR_REPORTS)")
    p.set_defaults(func=_cmd_export)



def _add_report_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("readme-results", help="rewrite README.md's results block from reports/metrics/")
    p.add_argument("--metrics", default="", help="metrics folder (default reports/metrics)")
    p.set_defaults(func=_cmd_readme_results)

    p = sub.add_parser("experiments-log", help="rewrite docs/experiments.md's table of experiments/results/")
    p.set_defaults(func=_cmd_experiments_log)


def _add_predict_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify new slices (files or folders), with a Grad-CAM overlay each")
    p.add_argument("paths", nargs="+", help="image files (JPEG, PNG, TIFF, DICOM) or folders (searched recursively)")
    p.add_argument("--model", default="",
                   help="checkpoint (default: the project's reports/models/custom_cnn_generalised.pt where "
                        "notebook 11 wrote it, else custom_cnn_external.pt where notebook 08 did, else "
                        "custom_cnn.pt; found from any folder)")
    p.add_argument("--out", default="", help="folder for the Grad-CAM overlay PNGs (none written if not given)")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--output", default="", help="write the table/JSON/CSV to this file instead of stdout")
    p.add_argument("--cam", default="gradcam", type=_cam_method,
                   help="CAM method: gradcam, gradcam++, hirescam, layercam, eigencam, scorecam")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("ood-fit", help="fit a model's unfamiliar (out-of-distribution) score on the Kaggle "
                                       "training images, threshold it on validation, write it beside the model")
    p.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    # The names of `ood.METHODS`, written out so that `--help` does not import torch; None: `ood.default_scores`.
    p.add_argument("--method", default=None, choices=["knn", "mahalanobis", "energy"])
    p.set_defaults(func=_cmd_ood_fit)


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad or missing input, reported in one line rather than a traceback.
    Imported only once something has failed: `checkpoints` imports torch, seconds that every
    command (each notebook of `make reproduce` is one) would pay otherwise."""
    from braintumour.analysis.calibration import CalibrationError
    from braintumour.analysis.ood_files import OodFileError
    from braintumour.datasets.download import DownloadError
    from braintumour.datasets.images import ImageDecodeError
    from braintumour.datasets.kaggle import DataNotFoundError, DatasetLayoutError
    from braintumour.files import OutputPathError
    from braintumour.training.checkpoints import CheckpointError
    from braintumour.training.device import DeviceUnavailable

    return (DataNotFoundError, DatasetLayoutError, ImageDecodeError, DownloadError, CheckpointError, OutputPathError,
            CalibrationError, DeviceUnavailable, OodFileError)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        if not isinstance(e, _input_errors()):
            raise
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
