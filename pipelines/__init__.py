"""The inferledger code location: definitions, schedules, sensors, configuration, the CLI."""
