"""The command line explains itself and refuses bad arguments clearly."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import main


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "run", "generate"):
        assert command in result.output


def test_run_rejects_a_malformed_date_naming_it() -> None:
    result = CliRunner().invoke(
        main, ["run", "--landing", "x", "--warehouse", "w.duckdb", "--start", "2026-13-01", "--end", "2026-10-02"]
    )
    assert result.exit_code == 2
    assert "'2026-13-01' is not a date" in result.output


def test_run_rejects_an_end_before_the_start() -> None:
    result = CliRunner().invoke(
        main, ["run", "--landing", "x", "--warehouse", "w.duckdb", "--start", "2026-10-05", "--end", "2026-10-02"]
    )
    assert result.exit_code == 2
    assert "before --start" in result.output


def test_run_names_its_storage_for_dbt_before_the_code_location_loads(tmp_path, monkeypatch) -> None:
    import os

    from pipelines.cli import _name_storage_for_dbt
    from pipelines.config import Settings

    monkeypatch.setenv("INFERLEDGER_LAKE", "unchanged")
    monkeypatch.setenv("INFERLEDGER_WAREHOUSE", "unchanged")
    (tmp_path / "w").mkdir()
    _name_storage_for_dbt(Settings(landing="l", lake=str(tmp_path / "lake"),
                                   warehouse=str(tmp_path / "w" / ".." / "wh.duckdb")))
    assert os.environ["INFERLEDGER_WAREHOUSE"] == str((tmp_path / "wh.duckdb").resolve())
    assert os.environ["INFERLEDGER_LAKE"] == str((tmp_path / "lake").resolve())
    # An S3 lake: the variable keeps naming the bucket (dbt is given the local copy at run time).
    monkeypatch.setenv("INFERLEDGER_LAKE", "s3://bucket/lake")
    _name_storage_for_dbt(Settings(landing="l", lake="s3://bucket/lake",
                                   warehouse=str(tmp_path / "other.duckdb")))
    assert os.environ["INFERLEDGER_LAKE"] == "s3://bucket/lake"
    assert os.environ["INFERLEDGER_WAREHOUSE"] == str((tmp_path / "other.duckdb").resolve())
