"""Configuration: environment variables, else an optional TOML file, else local defaults.

    INFERLEDGER_CONFIG          path to a TOML file with [storage] landing/lake/warehouse
    INFERLEDGER_LANDING         landing store: a folder or s3://bucket/prefix
    INFERLEDGER_LAKE            the Parquet lake: a folder or s3://bucket/prefix
    INFERLEDGER_LAKE_CACHE      the local working copy of an S3 lake (default: lake-cache
                                beside the warehouse)
    INFERLEDGER_WAREHOUSE       the DuckDB warehouse file
    INFERLEDGER_EXPORTS         optional s3://bucket/prefix the BI Parquet exports are
                                mirrored to after each run (connectors.export_mirror)
    INFERLEDGER_CUSTOMER_SALT   secret salt to pseudonymize customer ids (environment only)

Secrets are read from the environment only, never from the file, and never logged.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from connectors.lake_remote import local_lake

DEFAULT_DATA_DIR = Path("data")


@dataclass(frozen=True)
class Settings:
    landing: str
    lake: str
    warehouse: str
    lake_cache: str | None = None
    exports: str | None = None  # s3:// mirror of the BI Parquet exports

    @property
    def lake_path(self) -> Path:
        """The folder the pipeline reads and writes (an S3 lake's local working copy)."""
        return local_lake(self.lake, self.lake_cache, self.warehouse)

    @property
    def marts_duckdb(self) -> str:
        return str(Path(self.warehouse).with_name("marts.duckdb"))


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    file_values: dict[str, str] = {}
    config_path = env.get("INFERLEDGER_CONFIG")
    if config_path:
        path = Path(config_path)
        if not path.exists():
            raise FileNotFoundError(
                f"INFERLEDGER_CONFIG points at {path}, which does not exist: "
                "create it or unset the variable"
            )
        file_values = tomllib.loads(path.read_text()).get("storage", {})

    def pick(name: str, default: Path) -> str:
        return env.get(f"INFERLEDGER_{name.upper()}") or file_values.get(name) or str(default)

    return Settings(
        landing=pick("landing", DEFAULT_DATA_DIR / "landing"),
        lake=pick("lake", DEFAULT_DATA_DIR / "lake"),
        warehouse=pick("warehouse", DEFAULT_DATA_DIR / "warehouse.duckdb"),
        lake_cache=env.get("INFERLEDGER_LAKE_CACHE") or file_values.get("lake_cache"),
        exports=env.get("INFERLEDGER_EXPORTS") or file_values.get("exports"),
    )
