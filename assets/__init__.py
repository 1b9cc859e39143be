"""Dagster assets and checks: ingestion into the lake, the dbt warehouse and marts.

Assets orchestrate; they know nothing of file formats (that is `connectors`) and nothing
of SQL (that is `dbt/`).
"""

import connectors  # noqa: F401  (first: it configures polars' allocator before polars loads)
