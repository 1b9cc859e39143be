"""Planned events announced in the landing store (config/planned_events.csv)."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from connectors.landing import LocalStore
from connectors.planned_events import KEY, read_planned_events
from connectors.result import SourceFormatError

DIMENSIONS = ("total", "provider", "model", "deployment", "feature", "customer")
HEADER = "dimension,key,start_date,end_date,description\n"


def _store(tmp_path: Path, text: str | None) -> LocalStore:
    if text is not None:
        path = tmp_path / KEY
        path.parent.mkdir(parents=True)
        path.write_text(text)
    return LocalStore(tmp_path)


def test_events_are_read_with_inclusive_dates(tmp_path: Path) -> None:
    store = _store(tmp_path, HEADER
                   + "feature, code-review ,2026-10-20,2026-10-24,code review GA launch\n"
                   + "customer,cust_piedpiper,2026-10-21,2026-10-21,Pied Piper load test\n")
    events = read_planned_events(store, DIMENSIONS)
    assert events.rows() == [
        ("feature", "code-review", date(2026, 10, 20), date(2026, 10, 24), "code review GA launch"),
        ("customer", "cust_piedpiper", date(2026, 10, 21), date(2026, 10, 21),
         "Pied Piper load test"),
    ]


def test_customer_keys_are_hashed_like_the_gateway_ids(tmp_path: Path) -> None:
    store = _store(tmp_path, HEADER
                   + "customer,cust_piedpiper,2026-10-21,2026-10-21,load test\n"
                   + "feature,code-review,2026-10-20,2026-10-24,launch\n")
    events = read_planned_events(store, DIMENSIONS, customer_salt="pepper")
    digest = hashlib.sha256(b"peppercust_piedpiper").hexdigest()[:16]
    assert events["key"].to_list() == [digest, "code-review"]


def test_no_file_or_only_a_header_means_no_events(tmp_path: Path) -> None:
    assert read_planned_events(_store(tmp_path, None), DIMENSIONS).height == 0
    assert read_planned_events(_store(tmp_path / "h", HEADER), DIMENSIONS).height == 0


@pytest.mark.parametrize(("line", "message"), [
    ("team,platform,2026-10-20,2026-10-24,launch",
     ("line 3: dimension 'team' is not one the detector watches (customer, deployment, "
      "feature, model, provider, total)")),
    ("feature,code-review,2026-10-24,2026-10-20,launch",
     "line 3: end_date is before start_date"),
    ("feature,code-review,20/10/2026,2026-10-24,launch",
     "line 3: start_date '20/10/2026' is not a date (YYYY-MM-DD)"),
    (",code-review,2026-10-20,2026-10-24,launch",
     "line 3: dimension '' is not one the detector watches"),
    ("feature,code-review,,2026-10-24,launch",
     "line 3: start_date '' is not a date (YYYY-MM-DD)"),
    ("feature,,2026-10-20,2026-10-24,launch", "line 3: key is empty"),
    ("feature,code-review,2026-10-20,2026-10-24,", "line 3: description is empty"),
])
def test_a_bad_line_fails_naming_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    store = _store(tmp_path, HEADER + "total,all,2026-10-01,2026-10-02,ok\n" + line + "\n")
    with pytest.raises(SourceFormatError) as err:
        read_planned_events(store, DIMENSIONS)
    assert str(err.value).startswith(f"{KEY} {message}")
    assert "fix the line or remove it" in str(err.value)


def test_a_missing_column_names_the_header(tmp_path: Path) -> None:
    store = _store(tmp_path, "dimension,key,start,end\nfeature,x,2026-10-01,2026-10-02\n")
    with pytest.raises(SourceFormatError, match="missing column.*start_date.*end_date"):
        read_planned_events(store, DIMENSIONS)
