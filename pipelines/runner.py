"""Materialize a range of days in-process: what `inferledger run` and `demo` do."""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assets.anomalies import ANOMALY_ASSETS
from assets.dbt_launcher import WarmDbt
from assets.exports import marts_export_asset
from assets.ingestion import INGESTION_ASSETS, gpu_telemetry, vllm_hourly
from assets.prices import PRICE_ASSETS
from assets.quality import LAKE_CHECKS
from assets.warehouse import warehouse_assets
from pipelines.config import Settings
from pipelines.definitions import resources

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    days: list[date]
    ingestion_runs: int
    warehouse_run_id: str
    # Lake check runs (a GX suite over the range's partitions of one table), and those that
    # failed without blocking: "check: description".
    checks_run: int = 0
    check_warnings: list[str] = field(default_factory=list)


class LakeCheckFailed(RuntimeError):
    """A blocking lake check failed: the marts were not built from the bad partition."""


# Ingestion in two runs side by side: the telemetry next to the gateway logs, the inventory
# and the bill. They write only Parquet, so nothing is shared; each parses in C++/Rust with
# the GIL released, so on two cores the day's two largest sources overlap instead of
# queueing. On a production day (10 M requests, 1,000 GPUs) the ingestion is bound by its
# CPU seconds on two cores, whichever side ends last (now the gateway's, ~9 s after the
# telemetry): with the bill (~4 s) moved beside the telemetry to even the two sides, it took
# the same time (51.2-51.6 s against 51.8 s).
TELEMETRY_ASSETS = [gpu_telemetry, vllm_hourly]

# Dagster's per-event console lines are for the UI; a CLI run reports warnings and errors only.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def run_logging_is_thread_safe(instance: dg.DagsterInstance) -> bool:
    """Whether a run on `instance` can start while another run emits in another thread.

    At the start of every run on an instance with settings (a DAGSTER_HOME with a
    dagster.yaml), Dagster calls `logging.config.dictConfig` to build the Python log
    handlers that dagster.yaml may name, even when it names none. dictConfig closes every
    handler in the process while it holds logging's module lock, and so deadlocks against a
    run that is emitting in another thread (seen here: the CLI's ingestion hung). With no
    handlers named the call builds nothing, so it is skipped on this instance and the runs
    can go side by side; with handlers named, they go one after the other.
    """
    if instance.get_python_log_dagster_handler_config():
        return False
    instance.get_yaml_python_handlers = list  # type: ignore[method-assign]  # [], as dictConfig would give
    return True


def run_range(
    settings: Settings,
    start: date,
    end: date,
    *,
    chunk_days: int = 5,
    on_chunk: Callable[[list[date]], None] | None = None,
    instance: dg.DagsterInstance | None = None,
    telemetry_instance: dg.DagsterInstance | None = None,
) -> RunReport:
    """Ingest `start..end` (inclusive) in chunks, then build the warehouse in one dbt run.

    The telemetry runs go to `telemetry_instance` (an ephemeral one by default): they run
    beside the others, and an in-memory instance's storage is not shared across threads.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    res = resources(settings)
    instance = instance or dg.DagsterInstance.ephemeral()
    telemetry_instance = telemetry_instance or dg.DagsterInstance.ephemeral()
    runs = 0
    side_by_side = run_logging_is_thread_safe(instance) and run_logging_is_thread_safe(telemetry_instance)
    others = [a for a in INGESTION_ASSETS if a not in TELEMETRY_ASSETS] + PRICE_ASSETS
    evaluations: list[dg.AssetCheckEvaluation] = []
    warm = _WarmDbtStarter()  # dbt's process, started as the ingestion ends
    # What is loaded by now (Dagster, polars, the definitions) outlives the runs: frozen out
    # of the collector while they run, a full collection walks only the runs' objects (a
    # production day's full collections: 1.10-1.14 s, then 0.65-0.79 s). Unfrozen at the end.
    gc.freeze()
    try:
        for i in range(0, len(days), chunk_days):
            chunk = days[i : i + chunk_days]
            last_chunk = i + chunk_days >= len(days)
            if last_chunk:
                warm.expect(2)

            tags = _range_tags(chunk[0], chunk[-1])

            def ingest(assets: list, on: dg.DagsterInstance, tags: dict[str, str] = tags,
                       last_chunk: bool = last_chunk) -> None:
                # The assets, then their lake checks (the GX suites) as the daily job runs them.
                # Checks last: in one in-process run a check would run as soon as its asset is
                # done, and the bill's (with GX's import) would hold back the gateway logs.
                keys = {key for a in assets for key in a.keys}
                checks = [c for c in LAKE_CHECKS if {k.asset_key for k in c.check_keys} <= keys]
                defs = dg.Definitions(assets=assets, asset_checks=checks, resources=res, jobs=[
                    dg.define_asset_job("ingest", selection=dg.AssetSelection.all().without_checks()),
                    dg.define_asset_job("check", selection=dg.AssetSelection.all_asset_checks())])
                defs.resolve_job_def("ingest").execute_in_process(instance=on, run_config=QUIET_RUN_CONFIG, tags=tags)
                if last_chunk:
                    warm.ingestion_ended()
                if not checks:
                    return
                run_id = str(uuid.uuid4())
                try:
                    defs.resolve_job_def("check").execute_in_process(
                        instance=on, run_config=QUIET_RUN_CONFIG, tags=tags, run_id=run_id)
                finally:
                    # A failed blocking check fails its step (Dagster's own error): the
                    # evaluations come from the run's event log either way.
                    records = on.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
                    evaluations.extend(r.event_log_entry.dagster_event.event_specific_data for r in records)

            try:
                if side_by_side:
                    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest") as pool:
                        jobs = [pool.submit(ingest, TELEMETRY_ASSETS, telemetry_instance),
                                pool.submit(ingest, others, instance)]
                        for done in jobs:
                            done.result()  # a failed run raises here, after both have finished
                else:
                    ingest(TELEMETRY_ASSETS, telemetry_instance)
                    ingest(others, instance)
            except Exception as error:
                _stop_on_blocking_failures(evaluations, chunk, error)
                raise
            runs += 2
            if on_chunk:
                on_chunk(chunk)
        result = dg.materialize(
            [warehouse_assets(), *ANOMALY_ASSETS, marts_export_asset()],
            resources=res, instance=instance, run_config=QUIET_RUN_CONFIG,
            tags=_range_tags(days[0], days[-1]),
        )
        warnings = [_describe(e) for e in evaluations if not e.passed]
        return RunReport(days=days, ingestion_runs=runs, warehouse_run_id=result.run_id,
                         checks_run=len(evaluations), check_warnings=warnings)
    finally:
        warm.close()
        gc.unfreeze()


class _WarmDbtStarter:
    """Starts dbt's process (assets.dbt_launcher.WarmDbt) once the last ingestion run of a
    range has ended: while the lake checks run (about one core busy), dbt imports itself,
    and the warehouse's build starts ~3 s sooner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = 0
        self._folder: Path | None = None
        self._warm: WarmDbt | None = None

    def expect(self, runs: int) -> None:
        self._waiting = runs

    def ingestion_ended(self) -> None:
        with self._lock:
            self._waiting -= 1
            if self._waiting or self._warm is not None:
                return
            self._folder = Path(tempfile.mkdtemp(prefix="inferledger-dbt-"))
            try:
                self._warm = WarmDbt(self._folder)
            except OSError as e:  # no Unix sockets here, a TMPDIR too long for one: dbt starts cold
                log.warning("dbt will start cold: could not start it ahead (%s)", e)

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _describe(evaluation: dg.AssetCheckEvaluation) -> str:
    return f"{evaluation.check_name}: {evaluation.description or 'failed'}"


def _stop_on_blocking_failures(evaluations: list[dg.AssetCheckEvaluation], chunk: list[date],
                               error: Exception) -> None:
    """Raise LakeCheckFailed when a blocking lake check failed: the daily job would not
    build the marts from that partition, and neither does a range run."""
    blocking = {spec.name for checks in LAKE_CHECKS for spec in checks.check_specs if spec.blocking}
    failed = [_describe(e) for e in evaluations if not e.passed and e.check_name in blocking]
    if failed:
        raise LakeCheckFailed(
            f"lake checks failed for {chunk[0]}..{chunk[-1]}, so the marts were not built: "
            + "; ".join(failed) + ". Fix the source files (or quarantine the rows) and run the days again."
        ) from error
