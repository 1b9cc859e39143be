"""The inferledger code location: definitions, schedules, sensors, configuration, the CLI."""

import connectors  # noqa: F401  (first: it configures polars' allocator before polars loads)
