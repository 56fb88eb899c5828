"""The decoded-size budget: refused from metadata before conversion, whatever the file declares."""

from __future__ import annotations

import pytest

from bastion.data.budget import CELL_BYTES, check_budget, xlsx_cells
from bastion.data.ingest import parse_table
from bastion.errors import Invalid, PayloadTooLarge
from tests.data.bombs import comma_bomb, parquet_bomb, xlsx_bomb


def test_parquet_that_decodes_past_the_budget_is_refused_from_its_footer() -> None:
    data = parquet_bomb(20_000, 1_000)  # 160 MB decoded from a small file
    with pytest.raises(PayloadTooLarge) as info:
        parse_table(data, max_decoded=64 * 2**20)
    assert info.value.code == "decoded_too_large"
    assert info.value.details["estimate_bytes"] >= 20_000 * 1_000 * CELL_BYTES


def test_default_budget_refuses_the_reported_parquet_bomb() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        parse_table(parquet_bomb())
    assert info.value.code == "decoded_too_large"


def test_csv_row_wider_than_the_header_is_refused() -> None:
    with pytest.raises(Invalid) as info:
        parse_table(b"a,b\n1,2\n3,4,5\n")
    assert info.value.code == "bad_csv" and info.value.details["line"] == 3
    with pytest.raises(Invalid) as info:
        parse_table(comma_bomb(200_000))
    assert info.value.code == "bad_csv"


def test_quoted_csv_row_wider_than_the_header_is_refused_by_the_parser() -> None:
    with pytest.raises(Invalid) as info:
        parse_table(b'a,b\n"x,y",2,3\n')
    assert info.value.code == "bad_csv"
    assert parse_table(b'a,b\n"x,y",2\n')["a"][0] == "x,y"


def test_csv_cell_count_is_budgeted() -> None:
    text = "a,b\n" + "1,2\n" * 100_000
    with pytest.raises(PayloadTooLarge) as info:
        check_budget("csv", text.encode(), (text, ","), budget=1_000_000)
    assert info.value.code == "decoded_too_large"


def test_xlsx_cells_are_counted_not_read_from_a_lying_dimension() -> None:
    data = xlsx_bomb(5_000, dimension="A1:A2")
    assert xlsx_cells(data) == 5_000
    with pytest.raises(PayloadTooLarge) as info:
        parse_table(data, max_decoded=5_000 * CELL_BYTES - 1)
    assert info.value.code == "decoded_too_large"
    assert len(parse_table(data)) == 4_999  # under the budget it parses as before


def test_json_is_budgeted_by_rows_and_keys() -> None:
    data = b"[" + b",".join(b'{"a": 1, "b": 2}' for _ in range(1000)) + b"]"
    with pytest.raises(PayloadTooLarge):
        parse_table(data, max_decoded=1000 * 2 * CELL_BYTES - 1)
    assert len(parse_table(data)) == 1000
