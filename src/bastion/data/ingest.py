"""Read an uploaded table (CSV, JSON, Excel, Parquet) into a DataFrame, refusing anything dubious.

The format is sniffed from the bytes, never from the file name or the declared content type. Every
refusal is a :class:`~bastion.errors.BastionError` with a stable code and a message that names a row,
a column or a byte offset but never repeats a cell's value. pandas is imported inside the functions:
the API server imports this module at start-up.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.data.budget import MAX_DECODED, check_budget
from bastion.data.identifiers import text_values
from bastion.data.sniff import MAX_UNCOMPRESSED, SNIFF_CHARS, Format, sniff_format, sniff_payload
from bastion.errors import Invalid, PayloadTooLarge

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ColumnStats",
    "Format",
    "TopValue",
    "describe",
    "parse_table",
    "read_upload",
    "sniff_format",
]

MAX_BYTES = 100 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_COLUMNS = 1_000
MAX_CELL_CHARS = 32_767  # Excel's own cell limit
DISTINCT_CAP = 10_000
TOP_N, TOP_MAX_DISTINCT, TOP_MIN_COUNT, TOP_MAX_CHARS = 5, 50, 2, 64

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMERIC = re.compile(r"[+\-\t\r][\d\s().,+\-/:]*")  # "-", "+1 (555) 010-0100", "-3.5"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class TopValue(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: str
    count: int


class ColumnStats(BaseModel):
    """Summary of one column, safe to return and store: identifier values never appear in it."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    non_null: int
    nulls: int
    distinct: int
    distinct_capped: bool
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    top: list[TopValue] = Field(default_factory=list)


# ----------------------------------------------------------------------------- parsing


def _csv_frame(text: str, delimiter: str, max_rows: int, max_columns: int) -> pd.DataFrame:
    import pandas as pd

    header = next(csv.reader(io.StringIO(text[:SNIFF_CHARS]), delimiter=delimiter), [])
    if len(header) > max_columns:
        raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    named = [h.strip() for h in header if h.strip()]
    if len(set(named)) != len(named):
        raise Invalid("the header names a column twice", code="duplicate_column")
    try:
        with warnings.catch_warnings():
            # index_col=False makes pandas keep a row wider than the header, dropping its extra
            # fields with only a warning: such a row is refused instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                io.StringIO(text), sep=delimiter, nrows=max_rows + 1, index_col=False, low_memory=False
            )
    except pd.errors.ParserWarning:
        raise Invalid("malformed CSV: a row has more fields than the header", code="bad_csv") from None
    except pd.errors.EmptyDataError:
        raise Invalid("the file has no columns", code="no_columns") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise Invalid(f"malformed CSV: {str(exc)[:200]}", code="bad_csv") from None


def _json_frame(obj: Any, max_rows: int, max_columns: int) -> pd.DataFrame:
    """Records (``[{...}, ...]`` or JSON Lines), columns (``{"col": [...]}``) or split orientation."""
    import pandas as pd

    if isinstance(obj, list):
        columns = _record_columns(obj, max_rows, max_columns)
    elif isinstance(obj, dict) and {"columns", "data"} <= set(obj) <= {"columns", "data", "index"}:
        columns = _split_columns(obj, max_rows, max_columns)
    elif isinstance(obj, dict):
        columns = _object_columns(obj, max_rows, max_columns)
    else:
        raise Invalid("JSON must be an array of objects or an object of columns", code="bad_json")
    for name, values in columns.items():
        row = next((i for i, v in enumerate(values) if isinstance(v, dict | list)), None)
        if row is not None:
            raise Invalid(
                f"row {row + 1}, column {name[:64]!r} holds a nested value; flatten the data",
                code="nested_value",
                row=row + 1,
                column=name,
            )
    return pd.DataFrame(columns)


def _record_columns(obj: list[Any], max_rows: int, max_columns: int) -> dict[str, list[Any]]:
    """``[{...}, ...]``: the columns are the union of the records' keys, in first-seen order."""
    if not all(isinstance(r, dict) for r in obj):
        raise Invalid("a JSON array must hold one object per row", code="bad_json")
    if len(obj) > max_rows:
        raise PayloadTooLarge(f"more than {max_rows} rows", code="too_many_rows")
    keys: dict[str, None] = {}
    for record in obj:
        keys.update(dict.fromkeys(record))
        if len(keys) > max_columns:
            raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    return {k: [r.get(k) for r in obj] for k in keys}


def _split_columns(obj: dict[str, Any], max_rows: int, max_columns: int) -> dict[str, list[Any]]:
    """``{"columns": [...], "data": [[...], ...]}`` (pandas' split orientation)."""
    names, data = obj["columns"], obj["data"]
    if not isinstance(names, list) or not isinstance(data, list):
        raise Invalid("split JSON needs 'columns' and 'data' lists", code="bad_json")
    if len(names) > max_columns:
        raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    if len(data) > max_rows:
        raise PayloadTooLarge(f"more than {max_rows} rows", code="too_many_rows")
    if not all(isinstance(r, list) and len(r) == len(names) for r in data):
        raise Invalid("every 'data' row must have one value per column", code="bad_json")
    return {str(n): [r[i] for r in data] for i, n in enumerate(names)}


def _object_columns(obj: dict[str, Any], max_rows: int, max_columns: int) -> dict[str, list[Any]]:
    """``{"col": [...]}`` or ``{"col": {index: value}}``, every column the same length."""
    if len(obj) > max_columns:
        raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    index: dict[str, None] = {}
    for v in obj.values():
        if isinstance(v, dict):
            index.update(dict.fromkeys(v))
    columns: dict[str, list[Any]] = {}
    for k, v in obj.items():
        if isinstance(v, list):
            columns[k] = v
        elif isinstance(v, dict):
            columns[k] = [v.get(i) for i in index]
        else:
            raise Invalid("a JSON object must map each column to a list or object", code="bad_json")
    if len({len(v) for v in columns.values()}) > 1:
        raise Invalid("JSON columns have different lengths", code="bad_json")
    if columns and len(next(iter(columns.values()))) > max_rows:
        raise PayloadTooLarge(f"more than {max_rows} rows", code="too_many_rows")
    return columns


def _excel_frame(data: bytes, max_rows: int) -> pd.DataFrame:
    """First sheet only, cached cell values only (formulas are never evaluated)."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.read_excel(io.BytesIO(data), sheet_name=0, engine="openpyxl", nrows=max_rows + 1)
    except MemoryError:
        raise
    except Exception:  # a malformed workbook can fail in zipfile, XML or openpyxl code alike
        raise Invalid("the Excel workbook could not be read", code="bad_excel") from None


def _parquet_frame(data: bytes, max_rows: int, max_columns: int, max_uncompressed: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        schema = pf.schema_arrow
    except Exception:
        raise Invalid("the Parquet file could not be read", code="bad_parquet") from None
    if meta.num_columns > max_columns:
        raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    if meta.num_rows > max_rows:
        raise PayloadTooLarge(f"more than {max_rows} rows", code="too_many_rows")
    if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > max_uncompressed:
        raise PayloadTooLarge(
            f"the file expands to more than {max_uncompressed // 2**20} MiB", code="archive_too_large"
        )
    text_columns = []
    for field in schema:
        t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            raise Invalid(
                f"column {field.name[:64]!r} has type {t}, which is not a flat table value",
                code="unsupported_type",
            )
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            text_columns.append(field.name)
    try:
        # Text stays dictionary-encoded (pandas categoricals): a value repeated a million times by
        # run-length encoding is held once until _check_frame has measured it.
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=text_columns).read()
        fields = [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
        table = table.cast(pa.schema(fields))
        df = table.to_pandas(ignore_metadata=True)  # no pandas metadata: dtypes come from Arrow only
    except Exception:
        raise Invalid("the Parquet file could not be read", code="bad_parquet") from None
    return df.drop(columns=[c for c in df.columns if re.fullmatch(r"__index_level_\d+__", str(c))])


def _is_formula(value: str) -> bool:
    if value[0] in "=@":
        return True
    return not (_SIGNED_NUMERIC.fullmatch(value) or _NUMBER.fullmatch(value.strip()))


def _check_frame(
    df: pd.DataFrame, *, max_rows: int, max_columns: int, max_cell_chars: int, max_text_chars: int
) -> pd.DataFrame:
    """Checks every format shares: shape, header names, cell sizes, total text and formula injection.

    The total-text budget matters for .xlsx shared strings and Parquet dictionaries, where one long
    value can be referenced by every row without costing bytes in the file.
    """
    _check_shape(df, max_rows=max_rows, max_columns=max_columns)
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    _check_header(df, max_cell_chars)
    total_chars = 0
    for name in df.columns:
        text = text_values(df[name])
        if text.empty:
            continue
        lengths = text.str.len()
        total_chars += int(lengths.sum())
        if total_chars > max_text_chars:
            raise PayloadTooLarge(
                f"the table holds more than {max_text_chars} characters of text", code="data_too_large"
            )
        _check_cells(text, lengths, name, max_cell_chars)
        if df[name].dtype == "category":
            df[name] = df[name].astype(object)
    return df


def _check_shape(df: pd.DataFrame, *, max_rows: int, max_columns: int) -> None:
    if len(df.columns) == 0:
        raise Invalid("the file has no columns", code="no_columns")
    if len(df.columns) > max_columns:
        raise PayloadTooLarge(f"more than {max_columns} columns", code="too_many_columns")
    if len(df) > max_rows:
        raise PayloadTooLarge(f"more than {max_rows} rows", code="too_many_rows")
    if len(df) == 0:
        raise Invalid("the file has a header but no rows", code="no_rows")


def _check_header(df: pd.DataFrame, max_cell_chars: int) -> None:
    """Unique header names, none too long and none a formula (row 0 in the errors)."""
    if len(set(df.columns)) != len(df.columns):
        raise Invalid("the header names a column twice", code="duplicate_column")
    for position, name in enumerate(df.columns, start=1):
        if len(name) > max_cell_chars:
            raise Invalid(f"header of column {position} is too long", code="cell_too_large", row=0)
        if name and name.startswith(_FORMULA_START) and _is_formula(name):
            raise Invalid(
                f"header of column {position} looks like a spreadsheet formula (formula injection)",
                code="formula_injection",
                row=0,
                column=position,
            )


def _check_cells(text: pd.Series[str], lengths: pd.Series[int], name: str, max_cell_chars: int) -> None:
    """One column's text cells: none longer than ``max_cell_chars``, none a formula (1-based rows)."""
    too_long = text[lengths > max_cell_chars]
    if not too_long.empty:
        row = int(too_long.index[0]) + 1
        raise Invalid(
            f"row {row}, column {name[:64]!r}: cell longer than {max_cell_chars} characters",
            code="cell_too_large",
            row=row,
            column=name,
        )
    suspects = text[text.str[:1].isin(_FORMULA_START)]
    for index, value in suspects.items():
        if _is_formula(value):
            row = int(index) + 1
            raise Invalid(
                f"row {row}, column {name[:64]!r}: cell looks like a spreadsheet formula (formula "
                "injection); remove it, or prefix it with an apostrophe if it is text",
                code="formula_injection",
                row=row,
                column=name,
            )


def read_upload(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_cell_chars: int = MAX_CELL_CHARS,
    max_rows: int = MAX_ROWS,
    max_columns: int = MAX_COLUMNS,
    max_uncompressed: int = MAX_UNCOMPRESSED,
    max_decoded: int = MAX_DECODED,
) -> tuple[Format, pd.DataFrame]:
    """Sniff and parse an upload in one pass; see :func:`parse_table`.

    The decoded-size budget (:mod:`bastion.data.budget`) is checked between the two, from metadata.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes", code="file_too_large")
    fmt, payload = sniff_payload(data, max_uncompressed=max_uncompressed)
    check_budget(fmt, data, payload, max_decoded)
    if fmt == "csv":
        df = _csv_frame(payload[0], payload[1], max_rows, max_columns)
    elif fmt == "json":
        df = _json_frame(payload, max_rows, max_columns)
    elif fmt == "excel":
        df = _excel_frame(data, max_rows)
    else:
        df = _parquet_frame(data, max_rows, max_columns, max_uncompressed)
    return fmt, _check_frame(
        df,
        max_rows=max_rows,
        max_columns=max_columns,
        max_cell_chars=max_cell_chars,
        max_text_chars=max_uncompressed,
    )


def parse_table(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_cell_chars: int = MAX_CELL_CHARS,
    max_rows: int = MAX_ROWS,
    max_columns: int = MAX_COLUMNS,
    max_uncompressed: int = MAX_UNCOMPRESSED,
    max_decoded: int = MAX_DECODED,
) -> pd.DataFrame:
    """Parse an upload of any supported format (sniffed from the bytes) into a checked DataFrame.

    Rows are numbered from 1 after the header in every error. Raises Invalid (422), PayloadTooLarge
    (413) or UnsupportedMedia (415); never a parser's own exception.
    """
    return read_upload(
        data,
        max_bytes=max_bytes,
        max_cell_chars=max_cell_chars,
        max_rows=max_rows,
        max_columns=max_columns,
        max_uncompressed=max_uncompressed,
        max_decoded=max_decoded,
    )[1]


# ----------------------------------------------------------------------------- statistics


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def describe(df: pd.DataFrame, *, hide_values: Iterable[str] = ()) -> list[ColumnStats]:
    """Column statistics; run it on the de-identified frame.

    ``hide_values`` (see :func:`bastion.data.deid.hidden_value_columns`) names columns whose values must
    not appear at all. Elsewhere top values are only given for low-cardinality columns, and only values
    seen at least twice, so a unique free-text cell is never echoed back.
    """
    hidden = set(hide_values)
    stats: list[ColumnStats] = []
    for name in df.columns:
        s = df[name]
        non_null = int(s.notna().sum())
        distinct = int(s.nunique(dropna=True))
        fields: dict[str, Any] = {
            "name": str(name),
            "dtype": str(s.dtype),
            "non_null": non_null,
            "nulls": len(s) - non_null,
            "distinct": min(distinct, DISTINCT_CAP),
            "distinct_capped": distinct > DISTINCT_CAP,
        }
        if str(name) not in hidden and non_null:
            kind = s.dtype.kind
            if kind in "iuf":
                fields.update(
                    min=_finite(s.min()), max=_finite(s.max()), mean=_finite(s.mean()), std=_finite(s.std())
                )
            elif kind == "M":
                fields.update(min=s.min().isoformat(), max=s.max().isoformat())
            elif distinct <= TOP_MAX_DISTINCT:
                counts = s.dropna().astype(str).value_counts()
                fields["top"] = [
                    TopValue(value=str(v), count=int(c))
                    for v, c in counts.items()
                    if c >= TOP_MIN_COUNT and len(str(v)) <= TOP_MAX_CHARS
                ][:TOP_N]
        stats.append(ColumnStats(**fields))
    return stats
