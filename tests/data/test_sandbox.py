"""Parsing in a separate process: its limits hold and its refusals arrive as the same errors."""

from __future__ import annotations

import pytest

from bastion.data.sandbox import ParseLimits, Sandbox, check_policy_text
from bastion.errors import Invalid, PayloadTooLarge, UnsupportedMedia
from tests.data.bombs import xlsx_bomb

KEY = b"k" * 32


def test_a_clean_upload_comes_back_deidentified_as_parquet() -> None:
    import io

    import pandas as pd

    out = Sandbox(ParseLimits()).run(
        b"name,age\nAda Lovelace,36\nAlan Turing,41\n", policy=None, hmac_key=KEY
    )
    assert (out.fmt, out.rows) == ("csv", 2)
    frame = pd.read_parquet(io.BytesIO(out.parquet))
    assert "Ada Lovelace" not in frame.to_csv()
    assert {a["column"] for a in out.actions} == {"name", "age"}


def test_refusals_keep_their_status_and_code() -> None:
    box = Sandbox(ParseLimits())
    with pytest.raises(Invalid) as info:
        box.run(b"a,b\n1,2,3\n", policy=None, hmac_key=KEY)
    assert info.value.code == "bad_csv"
    with pytest.raises(UnsupportedMedia):
        box.run(b"%PDF-1.4 xxxxxxxxxxxxxxxxxxxx", policy=None, hmac_key=KEY)


def test_cpu_limit_ends_a_slow_parse() -> None:
    # 300k one-cell rows: under the decoded budget, but openpyxl needs far more than 2 s of CPU.
    box = Sandbox(ParseLimits(cpu_seconds=2, timeout_seconds=60))
    with pytest.raises(PayloadTooLarge) as info:
        box.run(xlsx_bomb(300_000), policy=None, hmac_key=KEY)
    assert info.value.code == "parse_limit_exceeded"


def test_wall_clock_timeout_ends_a_parse() -> None:
    box = Sandbox(ParseLimits(cpu_seconds=60, timeout_seconds=1))
    with pytest.raises(PayloadTooLarge) as info:
        box.run(xlsx_bomb(300_000), policy=None, hmac_key=KEY)
    assert info.value.code == "parse_limit_exceeded" and "longer than 1 s" in info.value.message


def test_memory_limit_ends_a_parse_that_outgrows_it() -> None:
    # 40 MB of short text cells: within the decoded budget, but Python strings need ~10x that.
    data = b"a,b\n" + b"xy,zw\n" * 7_000_000
    box = Sandbox(ParseLimits(memory_mb=128, max_decoded=2**31))
    with pytest.raises(PayloadTooLarge) as info:
        box.run(data, policy=None, hmac_key=KEY)
    assert info.value.code == "parse_limit_exceeded"


def test_deeply_nested_policy_is_bad_policy() -> None:
    with pytest.raises(Invalid) as info:
        check_policy_text('{"columns": ' * 5000 + "}" * 5000)
    assert info.value.code == "bad_policy"
    check_policy_text('{"columns": {"mrn": "pseudonymize"}}')
