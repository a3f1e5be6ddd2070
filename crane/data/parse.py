"""Readers for the raw record formats: JSON lines, Python-literal lines and CSV, gzip or not.

Real review dumps contain the odd broken line. A reader skips it, counts it, logs the first
few with file and line number, and stops with a clear error when broken lines are more than
`max_malformed_share` of all lines: a few bad lines are noise, many mean a wrong or damaged
file that would silently shrink the dataset. A line whose rating or time is not a
non-negative number ("abc", "", -1, true) is malformed too: it would otherwise become the
default rating 1 / time 0 unnoticed. A missing field (or JSON null) stays "unknown".
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_MAX_MALFORMED_SHARE = 0.001
_GZIP_MAGIC = b"\x1f\x8b"
_LOGGED_EXAMPLES = 5
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class ParseError(ValueError):
    """A raw file cannot be read as the format it claims (names the file, and line if known)."""


@dataclass
class ParseReport:
    """What a reader saw in one file: line count and the malformed lines."""

    path: Path
    lines: int = 0
    malformed: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    @property
    def malformed_share(self) -> float:
        return self.malformed / self.lines if self.lines else 0.0

    def add_malformed(self, line_no: int, reason: str) -> None:
        self.malformed += 1
        if len(self.examples) < _LOGGED_EXAMPLES:
            self.examples.append((line_no, reason))
            log.warning("%s:%d: malformed line skipped: %s", self.path, line_no, reason)

    def check(self, max_malformed_share: float) -> None:
        """Log the total and raise when the malformed share exceeds the limit."""
        if not self.malformed:
            return
        log.warning("%s: %d of %d lines malformed (%.4f%%), skipped", self.path,
                    self.malformed, self.lines, 100 * self.malformed_share)
        if self.malformed_share > max_malformed_share:
            shown = "; ".join(f"line {n}: {reason}" for n, reason in self.examples)
            raise ParseError(
                f"{self.path}: {self.malformed} of {self.lines} lines are malformed "
                f"({self.malformed_share:.4%} > max_malformed_share {max_malformed_share:.4%}); "
                f"first: {shown}")


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) of a text file, gzip detected by its magic bytes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"raw file not found: {path}")
    compressed = is_gzip(path)
    line_no = 0
    try:
        with (gzip.open(path, "rt", encoding="utf-8", errors="replace") if compressed
              else open(path, encoding="utf-8", errors="replace")) as fh:
            for line_no, line in enumerate(fh, start=1):
                yield line_no, line
    except _GZIP_ERRORS as error:
        raise ParseError(f"{path}: corrupt or truncated gzip data after line {line_no}: "
                         f"{error}") from None


def _decode_json(text: str) -> Any:
    return json.loads(text)


def _decode_literal(text: str) -> Any:
    # The 2014 metadata is one Python dict literal per line: literal_eval parses it without
    # executing anything (never eval).
    return ast.literal_eval(text)


DECODERS: dict[str, Callable[[str], Any]] = {"json": _decode_json, "literal": _decode_literal}


def read_records(
    path: str | Path,
    fmt: str,
    fields: Iterable[str],
    *,
    required: Iterable[str] = (),
    keep: tuple[str, set] | None = None,
    numeric: Iterable[str] = (),
    max_malformed_share: float = DEFAULT_MAX_MALFORMED_SHARE,
) -> pd.DataFrame:
    """Read one record per line into a frame holding `fields` (None where a record lacks one).

    fmt: "json" (JSON lines) or "literal" (Python dict literals). A line that does not parse,
    or is not a mapping, is malformed, and so is one whose `numeric` field is present but not
    a non-negative number. `required` fields must occur in at least one record, else the file
    is not what the source expects. `keep=(field, values)` drops records whose field is not
    in `values` early (metadata files are much larger than the item set).
    """
    if fmt not in DECODERS:
        raise ValueError(f"unknown record format {fmt!r}; expected one of {sorted(DECODERS)}")
    decode = DECODERS[fmt]
    fields = list(fields)
    columns: dict[str, list] = {name: [] for name in fields}
    required = list(required)
    numeric = list(numeric)
    absent = set(required)  # required fields not yet seen in any record (before `keep`)
    report = ParseReport(Path(path))
    keep_field, keep_values = keep if keep is not None else (None, None)
    for line_no, line in iter_lines(path):
        text = line.strip()
        if not text:
            continue
        report.lines += 1
        try:
            record = decode(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:
            report.add_malformed(line_no, f"{type(error).__name__}: {error}"[:200])
            continue
        if not isinstance(record, dict):
            report.add_malformed(line_no, f"expected a mapping, got {type(record).__name__}")
            continue
        if absent:
            absent.difference_update([name for name in absent if name in record])
        if keep_field is not None and record.get(keep_field) not in keep_values:
            continue
        problem = _bad_number(record, numeric)
        if problem:
            report.add_malformed(line_no, problem)
            continue
        for name in fields:
            columns[name].append(record.get(name))
    report.check(max_malformed_share)
    if absent and report.lines > report.malformed:
        missing = [name for name in required if name in absent]
        raise ParseError(f"{path}: column(s) {missing} missing: no record has them "
                         f"(expected fields {fields})")
    return pd.DataFrame(columns, columns=fields)


def _bad_number(record: dict, names: list[str]) -> str | None:
    """Why the first of `names` present in record is not a non-negative number, else None."""
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            return f"{name} is not a number: {value!r}"
        if number < 0:
            return f"{name} is negative: {value!r}"
    return None


def read_json_lines(path: str | Path, fields: Iterable[str], **kwargs: Any) -> pd.DataFrame:
    return read_records(path, "json", fields, **kwargs)


def read_literal_lines(path: str | Path, fields: Iterable[str], **kwargs: Any) -> pd.DataFrame:
    return read_records(path, "literal", fields, **kwargs)


_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)")


def read_csv_table(
    path: str | Path,
    columns: dict[str, str],
    *,
    header: bool = True,
    names: list[str] | None = None,
    numeric: Iterable[str] = (),
    required: Iterable[str] = (),
    sep: str = ",",
    line_column: str | None = None,
    max_malformed_share: float = DEFAULT_MAX_MALFORMED_SHARE,
) -> pd.DataFrame:
    """Read a CSV (gzip or not) into a frame with the columns renamed by `columns`.

    columns: file column name -> output name (the file's header names, or `names` when the
    file has no header). Rows with the wrong number of fields, a non-number or negative
    number in a `numeric` output column, or an empty `required` output column are malformed
    (reported with their line number). Blank lines are ignored. String columns keep missing
    values as NaN: the caller decides about them. `sep`: the field delimiter. `line_column`:
    an output column with each row's line number in the file (for the caller's messages).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"raw file not found: {path}")
    if not header and not names:
        raise ValueError(f"{path}: a CSV without header needs column names")
    compression = "gzip" if is_gzip(path) else None
    read_kwargs: dict[str, Any] = dict(compression=compression, sep=sep, dtype=str,
                                       keep_default_na=False,
                                       na_values=[""], skip_blank_lines=False,
                                       on_bad_lines="warn", engine="c", index_col=False)
    if header:
        file_columns = list(_read_csv(path, nrows=0, **read_kwargs).columns)
    else:
        file_columns = list(names)
        read_kwargs.update(header=None, names=file_columns)
    missing = [name for name in columns if name not in file_columns]
    if missing:
        raise ParseError(f"{path}: column(s) {missing} not found; the file has {file_columns}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # All columns, not usecols: pandas checks the field count only without it.
        frame = _read_csv(path, **read_kwargs)[list(columns)]
    skipped: list[tuple[int, str]] = []
    for warning in caught:
        skipped.extend((int(n), why) for n, why in _SKIPPED_LINE.findall(str(warning.message)))

    header_lines = 1 if header else 0
    frame = frame.rename(columns=columns)
    lines = _physical_lines(np.arange(len(frame)), header_lines, [n for n, _ in skipped])
    return check_rows(path, frame, lines, skipped, numeric=numeric, required=required,
                      line_column=line_column, max_malformed_share=max_malformed_share)


def check_rows(path: str | Path, frame: pd.DataFrame, lines: np.ndarray,
               skipped: list[tuple[int, str]] = (), *, numeric: Iterable[str] = (),
               required: Iterable[str] = (), line_column: str | None = None,
               max_malformed_share: float = DEFAULT_MAX_MALFORMED_SHARE) -> pd.DataFrame:
    """The rows of a table read from `path` that are not malformed, numbers parsed.

    lines: each row's line (or row) number in the file; skipped: (line, reason) of rows the
    reader already dropped. Blank rows (every cell missing) are ignored; a non-number or
    negative number in a `numeric` column, or a missing or blank `required` cell, makes the
    row malformed, and more than `max_malformed_share` malformed rows stop with a ParseError.
    """
    skipped = list(skipped)
    frame = frame.copy()
    blank = frame.isna().all(axis=1).to_numpy()
    report = ParseReport(Path(path), lines=int(len(frame) + len(skipped) - blank.sum()))
    problems = list(skipped)
    bad_rows = np.zeros(len(frame), dtype=bool)
    for name in numeric:
        raw = frame[name]
        values = pd.to_numeric(raw, errors="coerce")
        not_number = ((values.isna() & raw.notna()) | np.isinf(values)).to_numpy()
        negative = (values < 0).to_numpy()
        for invalid, why in ((not_number, "is not a number"), (negative, "is negative")):
            problems.extend((int(lines[row]), f"{name} {why}: {raw.iloc[row]!r}")
                            for row in np.flatnonzero(invalid))
        bad_rows |= not_number | negative
        frame[name] = values
    for name in required:
        empty = (frame[name].isna() | (frame[name].astype(str).str.strip() == "")).to_numpy()
        empty = empty & ~blank
        problems.extend((int(lines[row]), f"{name} is empty") for row in np.flatnonzero(empty))
        bad_rows |= empty
    counted: set[int] = set()
    for line_no, reason in sorted(problems):
        if line_no not in counted:  # a row with two problems is one malformed row
            counted.add(line_no)
            report.add_malformed(line_no, reason or "invalid value")
    report.check(max_malformed_share)
    if line_column:
        frame[line_column] = np.asarray(lines, dtype=np.int64)
    keep_rows = ~(blank | bad_rows)
    return frame.loc[keep_rows].reset_index(drop=True)


def _physical_lines(rows: np.ndarray, header_lines: int, skipped_lines: list[int]
                    ) -> np.ndarray:
    """File line numbers (1-based) of kept rows: pandas skipped `skipped_lines` before."""
    lines = rows + header_lines + 1
    for skipped in sorted(skipped_lines):  # each skipped line at or before shifts the rest
        lines = np.where(lines >= skipped, lines + 1, lines)
    return lines


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except _GZIP_ERRORS as error:
        raise ParseError(f"{path}: corrupt or truncated gzip data: {error}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ParseError(f"{path}: not a readable CSV: {error}") from None
    except pd.errors.EmptyDataError:
        raise ParseError(f"{path}: empty file, expected a CSV") from None

