"""Tell what an upload is from its bytes alone: CSV, JSON, .xlsx or Parquet, or a clear refusal.

The file name and the declared content type are never consulted: a CSV called ``x.parquet`` is CSV.
Only the zip directory of an .xlsx is read here (never its members), so an archive that would
expand past the limit is refused before anything is decompressed.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from typing import Any, Literal

from bastion.errors import Invalid, PayloadTooLarge, UnsupportedMedia

Format = Literal["csv", "json", "excel", "parquet"]

MAX_UNCOMPRESSED = 256 * 1024 * 1024  # what an .xlsx or .parquet may expand to (bytes, or text chars)
MAX_ZIP_MEMBERS = 10_000

_BINARY_MAGIC: list[tuple[bytes, str]] = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy .xls or password-protected workbook (OLE2)"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"\x7fELF", "an executable"),
]
_WIDE_BOMS = [
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
]
_DELIMITERS = (",", ";", "\t", "|")
SNIFF_CHARS = 65_536


def _looks_wide(data: bytes) -> bool:
    """UTF-16 without a BOM: ASCII text with a NUL after (or before) every character."""
    head = data[:512]
    if len(head) < 8:
        return False
    for zeros, chars in ((head[1::2], head[0::2]), (head[0::2], head[1::2])):
        printable = sum(1 for b in chars if 32 <= b < 127 or b in (9, 10, 13))
        if zeros.count(0) >= 0.9 * len(zeros) and printable >= 0.9 * len(chars):
            return True
    return False


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return b"\x00" in head or controls > len(head) // 100


def _decode(data: bytes) -> str:
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = data.count(b"\n", 0, offset) + 1
        raise Invalid(
            f"not UTF-8: invalid byte at offset {offset} (line {line}); re-save the file as UTF-8",
            code="bad_encoding",
            offset=offset,
            line=line,
        ) from None


def _check_workbook_zip(data: bytes, max_uncompressed: int) -> None:
    """Accept a zip only if it is an .xlsx whose members, as declared, expand to a sane size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise UnsupportedMedia("a damaged or truncated zip archive", code="unsupported_media_type") from None
    names = {i.filename for i in infos}
    if "xl/workbook.xml" not in names:
        what = "an OpenDocument spreadsheet (save it as .xlsx)" if "content.xml" in names else "a zip archive"
        if "xl/workbook.bin" in names:
            what = "a binary .xlsb workbook (save it as .xlsx)"
        raise UnsupportedMedia(f"{what} is not a supported table format")
    if len(infos) > MAX_ZIP_MEMBERS:
        raise PayloadTooLarge("the workbook has too many parts", code="archive_too_large")
    if sum(i.file_size for i in infos) > max_uncompressed:
        raise PayloadTooLarge(
            f"the workbook expands to more than {max_uncompressed // 2**20} MiB", code="archive_too_large"
        )


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise Invalid("JSON is nested too deeply", code="bad_json") from None
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise Invalid(
                f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", code="bad_json"
            ) from None
    rows = []  # JSON Lines: one object per line
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError):
                raise Invalid(f"malformed JSON Lines at line {number}", code="bad_json") from None
    return rows


def _detect_delimiter(text: str) -> str:
    """The delimiter that gives every sampled row the same number (> 1) of fields; most fields wins.

    A delimiter that never splits a row is not in use; if none is, the file is a single column.
    """
    sample = text[:SNIFF_CHARS]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    best: tuple[str, int] | None = None
    mismatch: tuple[int, int, int] | None = None
    for delimiter in _DELIMITERS:
        reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
        counts: list[tuple[int, int]] = []
        try:
            counts = [(reader.line_num, len(row)) for row in reader if row]
        except csv.Error:
            continue
        if not counts or all(n == 1 for _, n in counts):
            continue
        width = counts[0][1]
        bad = next(((line, n) for line, n in counts if n != width), None)
        if bad is None:
            if best is None or width > best[1]:
                best = (delimiter, width)
        elif mismatch is None:
            mismatch = (bad[0], bad[1], width)
    if best is not None:
        return best[0]
    if mismatch is not None:
        line, n, width = mismatch
        raise Invalid(
            f"malformed CSV: line {line} has {n} fields but the header has {width}", code="bad_csv", line=line
        )
    return ","


def sniff_payload(data: bytes, *, max_uncompressed: int = MAX_UNCOMPRESSED) -> tuple[Format, Any]:
    """The format and what sniffing already decoded: ``(text, delimiter)`` for CSV, the parsed JSON."""
    if not data.strip():
        raise Invalid("the file is empty", code="empty")
    if data.startswith(b"PAR1"):
        return "parquet", None
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        _check_workbook_zip(data, max_uncompressed)
        return "excel", None
    for magic, what in _BINARY_MAGIC:
        if data.startswith(magic):
            raise UnsupportedMedia(
                f"{what} is not a supported table format; upload CSV, JSON, .xlsx or Parquet"
            )
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            raise Invalid(
                f"not UTF-8: the file is {name} text; re-save it as UTF-8", code="bad_encoding", offset=0
            )
    if _looks_wide(data):
        raise Invalid("not UTF-8: the file looks like UTF-16 text; re-save it as UTF-8", code="bad_encoding")
    if _looks_binary(data):
        raise UnsupportedMedia("unrecognised binary file; upload CSV, JSON, .xlsx or Parquet")
    text = _decode(data)
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise Invalid("the file is empty", code="empty")
    if stripped[0] in "[{":
        return "json", _parse_json(text)
    return "csv", (text, _detect_delimiter(text))


def sniff_format(head: bytes, *, max_uncompressed: int = MAX_UNCOMPRESSED) -> Format:
    """The table format of an upload, from its content alone.

    Pass the whole upload (it is size-limited and held in memory anyway): an .xlsx can only be
    recognised from the zip directory at its end, and JSON must parse. Raises UnsupportedMedia (415)
    for .xls, .ods, other archives and unknown binaries, Invalid (422) for text that is not UTF-8,
    malformed JSON or ragged CSV, and PayloadTooLarge (413) for a workbook that would expand too far.
    """
    return sniff_payload(head, max_uncompressed=max_uncompressed)[0]
