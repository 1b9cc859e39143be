"""Readers for the sources inferledger ingests.

Each module reads one family of formats and returns polars frames in the normalized
schemas of `connectors.schemas`. Nothing here imports Dagster or knows the warehouse:
a connector can be used from a notebook.
"""
