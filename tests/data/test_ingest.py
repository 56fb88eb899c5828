"""Upload parsing: every format, sniffing from content, and each kind of bad input as a clear 4xx."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from bastion.data import ingest
from bastion.data.ingest import describe, parse_table, read_upload, sniff_format
from bastion.errors import BastionError, Invalid, PayloadTooLarge, UnsupportedMedia

CSV = b"patient_age,weight,ward\n34,70.5,A\n51,82.0,B\n67,,A\n"


def xlsx_bytes(rows: list[list[object]], *, text_cells: dict[str, str] | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    for ref, value in (text_cells or {}).items():  # force a string cell even if it starts with "="
        ws[ref].value = value
        ws[ref].data_type = "s"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def error_of(data: bytes, **limits: int) -> BastionError:
    with pytest.raises(BastionError) as info:
        parse_table(data, **limits)
    return info.value


# ---------------------------------------------------------------- formats


def test_csv_parses_with_inferred_types() -> None:
    fmt, df = read_upload(CSV)
    assert fmt == "csv"
    assert list(df.columns) == ["patient_age", "weight", "ward"]
    assert df["patient_age"].dtype.kind == "i"
    assert df["weight"].dtype.kind == "f"
    assert df["weight"].isna().sum() == 1
    assert df["ward"].tolist() == ["A", "B", "A"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_other_delimiters_and_bom(delimiter: str) -> None:
    data = b"\xef\xbb\xbf" + CSV.replace(b",", delimiter.encode())
    df = parse_table(data)
    assert list(df.columns) == ["patient_age", "weight", "ward"]  # BOM not glued to the first name
    assert len(df) == 3


def test_single_column_csv() -> None:
    df = parse_table(b"value\n1\n2\n3\n")
    assert df["value"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "payload",
    [
        [{"a": 1, "b": "x"}, {"a": 2, "b": None}],
        {"a": [1, 2], "b": ["x", None]},
        {"a": {"0": 1, "1": 2}, "b": {"0": "x", "1": None}},
        {"columns": ["a", "b"], "data": [[1, "x"], [2, None]]},
    ],
    ids=["records", "columns-lists", "columns-pandas", "split"],
)
def test_json_orientations(payload: object) -> None:
    fmt, df = read_upload(json.dumps(payload).encode())
    assert fmt == "json"
    assert df["a"].tolist() == [1, 2]
    assert df["b"].iloc[0] == "x"
    assert pd.isna(df["b"].iloc[1])


def test_json_lines() -> None:
    df = parse_table(b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_json_records_with_missing_keys_union_columns() -> None:
    df = parse_table(b'[{"a": 1}, {"b": 2}]')
    assert sorted(df.columns) == ["a", "b"]
    assert df["a"].isna().sum() == 1


def test_excel_parses_first_sheet() -> None:
    when = datetime(2020, 1, 5, 10, 30)
    data = xlsx_bytes([["age", "ward", "seen"], [34, "A", when], [51, "B", when]])
    fmt, df = read_upload(data)
    assert fmt == "excel"
    assert df[["age", "ward"]].to_dict("list") == {"age": [34, 51], "ward": ["A", "B"]}
    assert df["seen"].dtype.kind == "M" and df["seen"].iloc[0] == when


def test_parquet_parses() -> None:
    table = pa.table({"age": [34, 51], "ward": ["A", "B"], "w": pa.array([1.5, None], pa.float64())})
    fmt, df = read_upload(parquet_bytes(table))
    assert fmt == "parquet"
    assert df["age"].tolist() == [34, 51]
    assert df["ward"].tolist() == ["A", "B"]
    assert pd.isna(df["w"].iloc[1])


def test_parquet_written_by_pandas_has_no_index_column() -> None:
    buf = io.BytesIO()
    pd.DataFrame({"x": [1, 2]}, index=[10, 20]).to_parquet(buf)
    assert list(parse_table(buf.getvalue()).columns) == ["x"]


def test_sniffing_ignores_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(CSV)
    (tmp_path / "x.csv").write_bytes(parquet_bytes(pa.table({"a": [1]})))
    (tmp_path / "x.json").write_bytes(xlsx_bytes([["a"], [1]]))
    (tmp_path / "x.xlsx").write_bytes(b'[{"a": 1}]')
    assert sniff_format((tmp_path / "x.parquet").read_bytes()) == "csv"
    assert sniff_format((tmp_path / "x.csv").read_bytes()) == "parquet"
    assert sniff_format((tmp_path / "x.json").read_bytes()) == "excel"
    assert sniff_format((tmp_path / "x.xlsx").read_bytes()) == "json"


# ---------------------------------------------------------------- unsupported media


@pytest.mark.parametrize(
    "data",
    [
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),  # legacy .xls (OLE2)
        b"%PDF-1.7\n" + bytes(100),
        b"\x1f\x8b\x08\x00" + bytes(50),
        bytes(range(256)) * 4,  # unknown binary
    ],
    ids=["xls", "pdf", "gzip", "binary"],
)
def test_unsupported_binaries_are_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        sniff_format(data)
    assert info.value.status_code == 415


def test_zip_that_is_not_a_workbook_is_415() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", "<w/>")
    with pytest.raises(UnsupportedMedia):
        parse_table(buf.getvalue())


def test_zip_bomb_is_refused_from_the_directory() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\0" * (4 * 2**20))
    data = buf.getvalue()
    assert len(data) < 64 * 1024
    with pytest.raises(PayloadTooLarge) as info:
        sniff_format(data, max_uncompressed=2**20)
    assert info.value.code == "archive_too_large"
    assert sniff_format(data, max_uncompressed=8 * 2**20) == "excel"


def test_damaged_workbook_is_422() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("xl/workbook.xml", "this is not xml")
    err = error_of(buf.getvalue())
    assert (err.status_code, err.code) == (422, "bad_excel")


def test_damaged_parquet_is_422() -> None:
    err = error_of(b"PAR1" + b"garbage" * 20)
    assert (err.status_code, err.code) == (422, "bad_parquet")


def test_parquet_nested_column_is_refused() -> None:
    table = pa.table({"a": [[1, 2], [3]]})
    err = error_of(parquet_bytes(table))
    assert err.code == "unsupported_type"


def test_parquet_that_expands_too_far_is_413() -> None:
    table = pa.table({"a": ["x" * 1000] * 2000})
    with pytest.raises(PayloadTooLarge):
        parse_table(parquet_bytes(table), max_uncompressed=100_000)


def test_parquet_dictionary_bomb_is_413_with_default_limits() -> None:
    # One 30,000-char value run-length encoded 100,000 times: a small file, 3 GB of text once decoded.
    column = pa.DictionaryArray.from_arrays(pa.array([0] * 100_000, pa.int32()), pa.array(["x" * 30_000]))
    data = parquet_bytes(pa.table({"a": column}))
    assert len(data) < 1_000_000
    err = error_of(data)
    assert (err.status_code, err.code) == (413, "data_too_large")


# ---------------------------------------------------------------- bad input


def test_wrong_encoding_names_the_byte_offset() -> None:
    data = "name,city\nJosé,Bogotá\n".encode("latin-1")
    err = error_of(data)
    assert isinstance(err, Invalid)
    assert err.code == "bad_encoding"
    assert err.message.startswith("not UTF-8")
    assert err.details["offset"] == data.index(b"\xe9")
    assert err.details["line"] == 2
    assert "offset 13" in err.message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_is_a_bad_encoding_not_binary(encoding: str) -> None:
    err = error_of("a,b\n1,2\n3,4\n".encode(encoding))
    assert (err.status_code, err.code) == (422, "bad_encoding")


@pytest.mark.parametrize(
    "cell",
    [
        "=1+2",
        '=HYPERLINK("http://evil")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
    ],
)
def test_formula_injection_is_rejected_with_row_and_column(cell: str) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    data = f"id,comment\n1,fine\n2,{quoted}\n".encode()
    err = error_of(data)
    assert (err.status_code, err.code) == (422, "formula_injection")
    assert err.details == {"row": 2, "column": "comment"}
    assert "row 2" in err.message and "comment" in err.message
    assert cell.strip() not in err.message  # the offending value is never echoed


def test_signed_numbers_and_phone_numbers_are_not_formulas() -> None:
    df = parse_table(b"id,note\n1,-5\n2,+1 (555) 010-0100\n3,-\n4,-1.5e3\n5,text\n")
    assert df["note"].tolist() == ["-5", "+1 (555) 010-0100", "-", "-1.5e3", "text"]


def test_formula_in_header_is_rejected() -> None:
    err = error_of(b"id,=cmd()\n1,2\n")
    assert err.code == "formula_injection"
    assert err.details["row"] == 0


def test_formula_injection_in_excel_text_cell_is_rejected() -> None:
    data = xlsx_bytes([["id", "comment"], [1, "ok"]], text_cells={"B2": "=WEBSERVICE(A1)"})
    err = error_of(data)
    assert err.code == "formula_injection"
    assert err.details == {"row": 1, "column": "comment"}


def test_formula_injection_in_json_is_rejected() -> None:
    err = error_of(b'[{"a": "ok"}, {"a": "@cmd"}]')
    assert err.code == "formula_injection"


def test_huge_cell_is_rejected() -> None:
    data = b"id,notes\n1,short\n2," + b"x" * (ingest.MAX_CELL_CHARS + 1) + b"\n"
    err = error_of(data)
    assert (err.status_code, err.code) == (422, "cell_too_large")
    assert err.details == {"row": 2, "column": "notes"}
    assert parse_table(b"id,notes\n1," + b"x" * 500 + b"\n", max_cell_chars=500)["notes"].str.len()[0] == 500
    assert error_of(b"id,notes\n1," + b"x" * 501 + b"\n", max_cell_chars=500).code == "cell_too_large"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"  \n\r\n\t", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"a,b\n", "no_rows"),
        (b"[]", "no_columns"),
        (b"[{}, {}]", "no_columns"),
    ],
)
def test_empty_inputs_are_422(data: bytes, code: str) -> None:
    err = error_of(data)
    assert (err.status_code, err.code) == (422, code)


def test_ragged_csv_is_422_with_the_line() -> None:
    err = error_of(b"a,b,c\n1,2,3\n4,5\n")
    assert (err.code, err.details["line"]) == ("bad_csv", 3)


def test_ragged_row_beyond_the_sniffed_sample_is_422() -> None:
    body = b"a,b\n" + b"1,2\n" * 40_000 + b"3,4,5\n"
    assert error_of(body).code == "bad_csv"


def test_duplicate_header_is_422() -> None:
    assert error_of(b"a,b,a\n1,2,3\n").code == "duplicate_column"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"a": [1, 2', "bad_json"),
        (b'[{"a": 1}, 2]', "bad_json"),
        (b'{"a": [1, 2], "b": [1]}', "bad_json"),
        (b'[{"a": {"nested": 1}}]', "nested_value"),
        (b"[" * 100_000, "bad_json"),
    ],
)
def test_malformed_json_is_422(data: bytes, code: str) -> None:
    err = error_of(data)
    assert (err.status_code, err.code) == (422, code)


def test_limits_on_rows_columns_and_bytes_are_413() -> None:
    rows = b"a,b\n" + b"1,2\n" * 11
    assert isinstance(error_of(rows, max_rows=10), PayloadTooLarge)
    assert len(parse_table(rows, max_rows=11)) == 11
    wide = (",".join(f"c{i}" for i in range(12)) + "\n" + ",".join("1" * 12) + "\n").encode()
    assert error_of(wide, max_columns=11).code == "too_many_columns"
    assert error_of(b'[{"a": 1, "b": 2, "c": 3}]', max_columns=2).code == "too_many_columns"
    assert error_of(b'[{"a": 1}, {"a": 2}, {"a": 3}]', max_rows=2).code == "too_many_rows"
    table = parquet_bytes(pa.table({"a": list(range(20))}))
    assert error_of(table, max_rows=10).code == "too_many_rows"
    err = error_of(CSV, max_bytes=len(CSV) - 1)
    assert (err.status_code, err.code) == (413, "file_too_large")


# ---------------------------------------------------------------- statistics


def test_describe_numeric_and_categorical() -> None:
    df = parse_table(b"age,ward,note\n30,A,x1\n40,A,x2\n50,B,x3\n,A,x4\n")
    stats = {s.name: s for s in describe(df)}
    age = stats["age"]
    assert (age.non_null, age.nulls, age.distinct) == (3, 1, 3)
    assert (age.min, age.max, age.mean) == (30.0, 50.0, 40.0)
    assert age.std == pytest.approx(10.0)
    assert [(t.value, t.count) for t in stats["ward"].top] == [("A", 3)]  # "B" seen once is left out
    assert stats["note"].top == []  # unique values are never echoed
    assert stats["ward"].min is None


def test_describe_hides_values_of_named_columns() -> None:
    df = pd.DataFrame({"mrn": ["a1", "a1", "b2"], "n": [1, 2, 3]})
    stats = {s.name: s for s in describe(df, hide_values=["mrn", "n"])}
    assert stats["mrn"].top == [] and stats["mrn"].distinct == 2
    assert stats["n"].min is None and stats["n"].mean is None
    assert "a1" not in json.dumps([s.model_dump() for s in stats.values()])


def test_describe_caps_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "DISTINCT_CAP", 5)
    (stat,) = describe(pd.DataFrame({"x": range(20)}))
    assert (stat.distinct, stat.distinct_capped) == (5, True)
