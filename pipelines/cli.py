"""The `inferledger` command line."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import date
from pathlib import Path

import click

from pipelines.cli_alerts import alerts
from pipelines.config import Settings, load_settings
from pipelines.report import report_command

DEMO_START = date(2026, 10, 1)


def _parse_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """inferledger: what a token costs you, per model, feature and customer, reconciled to the bill.

    \b
    Commands:
      demo      generate a demo month (unless present) and run the whole pipeline on it
      run       run the pipeline on any landing folder for a range of days
      generate  write the synthetic demo month in the vendors' formats
      report    write a self-contained HTML report of the marts
      alerts    test the configured alert channels (PagerDuty, Slack, webhook)
    """


@main.command()
@click.option("--landing", type=click.Path(path_type=Path), default=Path("data/landing"), show_default=True,
              help="Folder to write the landing files into.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed; same seed, same files.")
@click.option("--start", "start", callback=_parse_day, default=DEMO_START.isoformat(), show_default=True,
              help="First day of the generated data (UTC).")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True, help="Number of days.")
@click.option("--requests-per-day", type=click.IntRange(1), default=5000, show_default=True,
              help="Average gateway requests per day.")
@click.option("--gpus", type=click.IntRange(1), default=27, show_default=True,
              help="GPUs in the fleet (8-GPU nodes first, then single-GPU nodes).")
def generate(landing: Path, seed: int, start: date, days: int, requests_per_day: int, gpus: int) -> None:
    """Write a synthetic month of an AI company (CUR 2.0, FOCUS, DCGM, LiteLLM logs, inventory).

    Labelled anomalies (a one-day spike, a level shift, a new big customer) are written
    beside the data in anomaly_labels.json.
    """
    from pipelines.demo.generate import generate as run_generate

    t0 = time.perf_counter()
    summary = run_generate(landing, seed=seed, start=start, days=days,
                           requests_per_day=requests_per_day, gpus=gpus)
    click.echo(f"Wrote {days} days from {start} into {landing} in {time.perf_counter() - t0:.1f}s")
    for source, stats in summary.items():
        shown = {k: (len(v) if isinstance(v, list) else v) for k, v in stats.items() if not isinstance(v, dict)}
        click.echo(f"  {source}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


def _name_storage_for_dbt(settings: Settings) -> None:
    """Name the warehouse (and a local lake) in the environment before the code location
    loads, as a deployment does: dbt's parse of the project for a new warehouse then happens
    at load (assets.warehouse.dbt_project), not inside the first build."""
    from assets.warehouse import dbt_storage_env
    from connectors.lake_remote import is_remote

    env = dbt_storage_env(settings.lake, settings.lake_path, settings.warehouse)
    if is_remote(settings.lake):  # INFERLEDGER_LAKE keeps naming the S3 lake in this process
        env.pop("INFERLEDGER_LAKE")
    os.environ.update(env)


def _run(settings: Settings, start: date, end: date) -> None:
    _name_storage_for_dbt(settings)
    from assets.exports import exports_dir, marts_duckdb_path
    from pipelines.runner import LakeCheckFailed, run_range
    from pipelines.summary import format_summary, read_summary

    total_days = (end - start).days + 1
    log_path = Path(settings.warehouse).with_suffix(".run.log")
    t0 = time.perf_counter()
    # dbt's own progress lines go to a log file beside the warehouse, not over the summary.
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(log),
        click.progressbar(length=total_days, label="Ingesting days", file=sys.stderr) as bar,
    ):
        try:
            report = run_range(settings, start, end, on_chunk=lambda chunk: bar.update(len(chunk)))
        except LakeCheckFailed as failed:
            raise click.ClickException(str(failed)) from None
    click.echo(f"Built the warehouse for {start}..{end} in {time.perf_counter() - t0:.1f}s "
               f"(dbt log: {log_path})")
    click.echo(f"Lake checks (Great Expectations): {report.checks_run} suite runs, "
               + ("all passed" if not report.check_warnings else
                  f"{len(report.check_warnings)} failed (not blocking):\n  " + "\n  ".join(report.check_warnings))
               + "\n")
    click.echo(format_summary(read_summary(settings.warehouse)))
    warehouse = Path(settings.warehouse).resolve()
    click.echo(f"\nWarehouse (DuckDB): {warehouse}")
    click.echo(f"For BI tools (read-only): {marts_duckdb_path(warehouse)} and {exports_dir(settings.lake_path)}")


@main.command()
@click.option("--landing", type=str, required=True, help="Landing folder or s3://bucket/prefix.")
@click.option("--warehouse", type=click.Path(path_type=Path), required=True, help="DuckDB warehouse file.")
@click.option("--lake", type=str, default=None,
              help="Parquet lake: a folder or s3://bucket/prefix (worked on through a local copy, "
                   "INFERLEDGER_LAKE_CACHE, default 'lake-cache' beside the warehouse) "
                   "[default: 'lake' beside the warehouse].")
@click.option("--start", callback=_parse_day, required=True, help="First day, YYYY-MM-DD (UTC).")
@click.option("--end", callback=_parse_day, required=True, help="Last day, YYYY-MM-DD, inclusive.")
def run(landing: str, warehouse: Path, lake: str | None, start: date, end: date) -> None:
    """Ingest a landing folder for START..END (inclusive) and build the marts."""
    if end < start:
        raise click.BadParameter(f"--end {end} is before --start {start}")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    lake = lake or str(warehouse.parent / "lake")
    _run(Settings(landing=landing, lake=lake, warehouse=str(warehouse),
                  lake_cache=os.environ.get("INFERLEDGER_LAKE_CACHE"),
                  exports=os.environ.get("INFERLEDGER_EXPORTS")), start, end)


@main.command()
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True,
              help="Days to generate when the landing folder is empty.")
@click.option("--requests-per-day", type=click.IntRange(1), default=5000, show_default=True)
def demo(days: int, requests_per_day: int) -> None:
    """Generate the demo month into ./data/landing (unless there) and run the whole pipeline."""
    from pipelines.demo.generate import LABELS_FILE, demo_range
    from pipelines.demo.generate import generate as run_generate

    settings = load_settings()
    landing = Path(settings.landing)
    labels = landing / LABELS_FILE
    if labels.exists():
        click.echo(f"Using the demo data already in {landing} (delete it to regenerate)")
    else:
        t0 = time.perf_counter()
        run_generate(landing, days=days, requests_per_day=requests_per_day)
        click.echo(f"Generated {days} demo days into {landing} in {time.perf_counter() - t0:.1f}s")
    start, end = demo_range(labels)
    Path(settings.warehouse).parent.mkdir(parents=True, exist_ok=True)
    _run(settings, start, end)


main.add_command(report_command)
main.add_command(alerts)

if __name__ == "__main__":
    main()
