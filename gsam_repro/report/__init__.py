"""Tables and figures from runs.parquet / history.parquet, the paper's numbers beside ours."""
