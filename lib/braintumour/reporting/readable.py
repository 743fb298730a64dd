"""Notebook output for a reader of the exported reports: tables without pandas' machinery, and
mappings said as sentences, never as Python reprs.

`show_tables_readably()` (first cell of every notebook) makes every DataFrame a cell shows go
through `table`: no index column unless the index carries meaning, a column per key where a cell
held a dict, an interval as "low–high", numbers rounded as the text quotes them. Metrics files
keep their full precision; only what is shown is rounded.
"""

from __future__ import annotations

import ast
import html
import math
import re
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

DIGITS = 4  # decimals of a shown fraction, as the notebooks' sentences quote accuracies (0.9924)


def number(value: Any, digits: int = DIGITS) -> str:
    """One value as a reader reads it: integers with thousands separators, fractions to `digits`
    decimals (scientific below that), an interval as "low–high", a missing value as a dash."""
    if value is None or value is pd.NA or (isinstance(value, Real) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        v = float(value)
        if v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.1e}"
        return f"{v:,.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, Real) for v in value):
        return f"{number(value[0], digits)}–{number(value[1], digits)}"
    if isinstance(value, list | tuple):
        return ", ".join(number(v, digits) for v in value)
    return str(value)


def listing(mapping: Mapping[Any, Any], digits: int = DIGITS) -> str:
    """A mapping as a phrase: "train 517, tune 98 and test 230"."""
    items = [f"{key} {number(value, digits)}" for key, value in mapping.items()]
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]])) if items else "none"


def compute_sentence(compute: Mapping[str, Any]) -> str:
    """`outputs.compute_record` as a phrase: "cpu (AMD EPYC, AVX512), bfloat16, 2 threads"."""
    where = ", ".join(str(compute[k]) for k in ("device_name", "cpu_capability") if compute.get(k))
    threads = f", {compute['threads']} threads" if compute.get("threads") else ""
    return f"{compute['device']}{f' ({where})' if where else ''}, {compute['precision']}{threads}"


def _expand_mappings(frame: pd.DataFrame) -> pd.DataFrame:
    """A column whose cells are dicts becomes one column per key, named "<column>: <key>"."""
    columns = []
    for name in frame.columns:
        cells = frame[name]
        if cells.map(lambda v: isinstance(v, Mapping)).any():
            wide = pd.DataFrame([dict(v) if isinstance(v, Mapping) else {} for v in cells], index=frame.index)
            columns.append(wide.rename(columns=lambda key, name=name: f"{name}: {key}"))
        else:
            columns.append(cells.to_frame())
    return pd.concat(columns, axis=1) if columns else frame


def _index_is_meaningless(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) or (index.nlevels == 1 and index.name is None
                                                 and list(index) == list(range(len(index))))


def table(frame: pd.DataFrame | pd.Series, digits: int = DIGITS) -> Styler:
    """`frame` styled for reading (see the module's docstring)."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    frame = _expand_mappings(frame)
    # no random ids, so that re-executing a notebook writes the same HTML
    styled = Styler(frame, uuid_len=0, cell_ids=False, table_attributes='class="dataframe"')
    styled = styled.format(lambda v: number(v, digits))
    if frame.index.nlevels == 1:
        styled = styled.format_index(lambda v: number(v, digits), axis=0)
    return styled.hide(axis="index") if _index_is_meaningless(frame.index) else styled


def show_tables_readably(digits: int = DIGITS) -> None:
    """Every DataFrame or Series a cell shows from now on is shown as `table(frame, digits)`."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:  # not in a notebook: nothing to format for
        return
    html = shell.display_formatter.formatters["text/html"]
    for kind in (pd.DataFrame, pd.Series):
        html.for_type(kind, lambda frame: table(frame, digits).to_html())


def settings(params: Mapping[str, Any], keys: list[str]) -> pd.DataFrame:
    """The profile settings a notebook uses, one row each: setting, value."""
    said = [listing(params[k]) if isinstance(params[k], Mapping) else number(params[k]) for k in keys]
    return pd.DataFrame({"setting": keys, "value": said})


def targets_sentence(targets: Mapping[str, bool]) -> str:
    """Which targets are met and which missed, in words: "met: a, b; missed: c"."""
    def named(met: bool) -> str:
        return ", ".join(k.replace("_", " ") for k, v in targets.items() if bool(v) == met) or "none"

    return f"met: {named(True)}; missed: {named(False)}"


def value_with_ci(r: Mapping[str, Any], k: str) -> str:
    """A measure and its 95% interval, "0.0123 [0.0100, 0.0150]", from a block holding `k` and
    `ci95[k]` (notebook 09's calibration table)."""
    return f"{r[k]:.4f} [{r['ci95'][k][0]:.4f}, {r['ci95'][k][1]:.4f}]"


def show_figure(name: str, width: int = 720) -> None:
    """Display a saved figure, reports/figures/<name>.png, in a notebook (the results notebook)."""
    from IPython.display import Image, display

    from braintumour.config import reports_dir

    display(Image(filename=str(reports_dir() / "figures" / f"{name}.png"), width=width))


def phrase(value: Any, digits: int = DIGITS) -> str:
    """Any plain Python value as words: a dict as "key value" pairs (nested ones after a colon), a list
    or tuple as its items, a number by `number`."""
    if isinstance(value, Mapping):
        if any(isinstance(v, Mapping) for v in value.values()):
            return "; ".join(f"{key}: {phrase(v, digits)}" for key, v in value.items())
        return listing({key: phrase(v, digits) if isinstance(v, list | tuple) else v for key, v in value.items()},
                       digits)
    if isinstance(value, list | tuple) and not (len(value) == 2 and all(isinstance(v, Real) for v in value)):
        return ", ".join(phrase(v, digits) for v in value)
    return number(value, digits)


def _literal_spans(text: str) -> list[tuple[int, int]]:
    """Outermost balanced {...} and [...] spans of `text`."""
    spans, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "{[":
            start, depth = (i if depth == 0 else start), depth + 1
        elif ch in "}]" and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans


def without_reprs(text: str) -> str:
    """`text` with every Python dict or list literal in it (as a notebook once printed it) said as a phrase;
    anything that does not parse as a literal stays as it is."""
    for start, end in reversed(_literal_spans(text)):
        if start and (text[start - 1].isalnum() or text[start - 1] in "_)]"):  # an index, f(x)[0], not a value
            continue
        try:
            value = ast.literal_eval(text[start:end])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict | list) and value:
            text = text[:start] + phrase(value) + text[end:]
    # a dict pandas cut short in a table cell ("{'glioma': 0.02, 'notumor'...") cannot be parsed: its keys
    # and values are said the same way, up to where it was cut
    return re.sub(r"\{('[^'{}]*'[^{}]*?)(\.\.\.|…)",
                  lambda m: re.sub(r"'([^']*)'(:\s?)?", lambda k: k.group(1) + (" " if k.group(2) else ""), m.group(1))
                  + m.group(2), text)


def html_without_reprs(markup: str) -> str:
    """`without_reprs` applied to the text between the tags of `markup` (table cells, paragraphs)."""
    def said(match: re.Match) -> str:
        text = html.unescape(match.group(1))
        new = without_reprs(text)
        return match.group(0) if new == text else f">{html.escape(new, quote=False)}<"

    return re.sub(r">([^<>]*[\[{][^<>]*)<", said, markup)


def html_without_row_numbers(markup: str) -> str:
    """Each pandas table in `markup` whose index is only the row numbers 0, 1, 2, ... (the header's corner
    cell empty) without that index column; a table whose index names its rows stays as it is."""
    def dropped(match: re.Match) -> str:
        table = match.group(0)
        head, body = table.split("<tbody>", 1) if "<tbody>" in table else (table, "")
        numbers = re.findall(r"<tr[^>]*>\s*<th[^>]*>([^<]*)</th>", body)
        if (head.count("<tr") != 1 or not re.search(r"<tr[^>]*>\s*<th[^>]*></th>", head)
                or numbers != [str(i) for i in range(body.count("<tr"))] or not numbers):
            return table
        strip = r"(<tr[^>]*>)\s*<th[^>]*>[^<]*</th>"
        return re.sub(strip, r"\1", head, count=1) + "<tbody>" + re.sub(strip, r"\1", body)

    return re.sub(r'<table[^>]*class="dataframe"[^>]*>.*?</table>', dropped, markup, flags=re.S)
