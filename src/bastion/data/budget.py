"""A decoded-size budget for uploads, checked from the file's own structure before any conversion.

A few hundred kilobytes on the wire can decode to gigabytes: a Parquet file of constant columns
(run-length encoded), an .xlsx of a million empty rows, a CSV row of a million commas. Each check
here reads only metadata or scans the raw bytes (never building the table) and estimates what the
parsed DataFrame will hold as ``cells x CELL_BYTES`` plus the text it carries; above the budget the
upload is refused with 413 ``decoded_too_large`` before pandas sees it.

Order of checks, per format: CSV — every line no wider than the header (unquoted files; quoted files
are checked by the parser, which refuses rows wider than the header), then the cell count. Parquet —
footer metadata: rows x columns and the uncompressed size. .xlsx — the first worksheet is streamed
through the zip reader (bounded chunks) and its ``<c`` cell elements counted; a declared
``<dimension>`` is never trusted. JSON is already parsed by the sniffer: rows x keys.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from bastion.errors import Invalid, PayloadTooLarge

CELL_BYTES = 8  # one float64 or one object pointer per cell, the least a DataFrame holds
MAX_DECODED = 256 * 1024 * 1024
_CHUNK = 1 << 20
_SHEET = re.compile(rb'<sheet\b[^>]*\br:id="([^"]+)"')
_REL = re.compile(rb"<Relationship\b[^>]*>")


def _refuse(estimate: int, budget: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the table would decode to about {estimate // 2**20} MiB, over the budget of "
        f"{budget // 2**20} MiB (BASTION_MAX_DECODED_BYTES)",
        code="decoded_too_large",
        estimate_bytes=estimate,
        budget_bytes=budget,
    )


def check_budget(fmt: str, data: bytes, payload: Any, budget: int = MAX_DECODED) -> int:
    """Estimated decoded bytes of an upload whose format is ``fmt``; raise when over ``budget``."""
    if fmt == "csv":
        text, delimiter = payload
        estimate = csv_estimate(text, delimiter)
    elif fmt == "parquet":
        estimate = parquet_estimate(data)
    elif fmt == "excel":
        estimate = xlsx_cells(data) * CELL_BYTES
    else:
        estimate = json_estimate(payload) if fmt == "json" else len(data)
    if estimate > budget:
        raise _refuse(estimate, budget)
    return estimate


def csv_estimate(text: str, delimiter: str) -> int:
    """Cells x CELL_BYTES + the text; refuses an unquoted line with more fields than the header."""
    lines = text.count("\n") + 1
    fields = text.count(delimiter) + lines
    if '"' not in text:
        end = text.find("\n")
        width = text.count(delimiter, 0, end if end >= 0 else len(text))
        start, line = 0, 1
        while start < len(text):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            if text.count(delimiter, start, end) > width:
                raise Invalid(
                    f"malformed CSV: line {line} has more fields than the header ({width + 1})",
                    code="bad_csv",
                    line=line,
                )
            start, line = end + 1, line + 1
    return fields * CELL_BYTES + len(text)


def parquet_estimate(data: bytes) -> int:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception:
        raise Invalid("the Parquet file could not be read", code="bad_parquet") from None
    uncompressed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return int(meta.num_rows) * int(meta.num_columns) * CELL_BYTES + int(uncompressed)


def xlsx_cells(data: bytes) -> int:
    """Cell elements in the first worksheet, counted while streaming it (bounded memory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            sheet = _first_sheet(zf)
            count, tail = 0, b""
            with zf.open(sheet) as member:
                while chunk := member.read(_CHUNK):
                    window = tail + chunk
                    count += window.count(b"<c ") + window.count(b"<c>")
                    count -= tail.count(b"<c ") + tail.count(b"<c>")
                    tail = window[-2:]
            return count
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError):
        raise Invalid("the Excel workbook could not be read", code="bad_excel") from None


def _first_sheet(zf: zipfile.ZipFile) -> str:
    """The part name of the workbook's first sheet (what pandas reads with ``sheet_name=0``)."""
    names = set(zf.namelist())
    workbook = zf.read("xl/workbook.xml")[:_CHUNK]
    first = _SHEET.search(workbook)
    if first is not None and "xl/_rels/workbook.xml.rels" in names:
        rid = first.group(1)
        for rel in _REL.findall(zf.read("xl/_rels/workbook.xml.rels")[:_CHUNK]):
            if b'Id="' + rid + b'"' in rel:
                target = re.search(rb'Target="([^"]+)"', rel)
                if target is not None:
                    path = target.group(1).decode("utf-8", "replace").lstrip("/")
                    path = path if path.startswith("xl/") else f"xl/{path}"
                    if path in names:
                        return path
    sheets = sorted(n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml"))
    if not sheets:
        raise KeyError("no worksheet")
    return sheets[0]


def json_estimate(obj: Any) -> int:
    if isinstance(obj, list):
        keys = len({k for r in obj if isinstance(r, dict) for k in r}) or 1
        return len(obj) * keys * CELL_BYTES
    if isinstance(obj, dict):
        data = obj.get("data")
        if isinstance(data, list) and isinstance(obj.get("columns"), list):
            return len(data) * len(obj["columns"]) * CELL_BYTES
        return sum(len(v) if isinstance(v, list | dict) else 1 for v in obj.values()) * CELL_BYTES
    return CELL_BYTES
