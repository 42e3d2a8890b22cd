"""Gather run directories into runs.parquet and history.parquet."""
