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
