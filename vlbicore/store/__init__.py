"""One Zarr store per fit (epoch × model): its layout and atomic write (``layout``, ``atomic``), reading
and checking it (``read``), and the per-fit summary table and text (``summary``).

May import ``vlbicore.statistics`` and ``vlbicore.errors``; never inference, likelihood or models (a
store is read without the code that made it).
"""
from vlbicore.store.atomic import remove_stale_temps, write_directory_atomically
from vlbicore.store.layout import (REQUIRED_GROUPS, SNAPSHOT_DIM, ZARR_FORMAT, build_fit_tree, build_snapshot_tree,
                                   write_fit_store, write_snapshot_store)
from vlbicore.store.read import (chain_weights, check_schema, fit_level_summary, is_snapshot_store, json_attr,
                                 missing_groups, open_fit_store, parameter_names, parameter_statistics, read_fit_tree,
                                 schema_problem, skipped_snapshots, snapshot_records, snapshot_view, snapshot_views)
from vlbicore.store.summary import SUMMARY_COLUMNS, format_summary, parameter_summary, summary_table

__all__ = [
    "REQUIRED_GROUPS", "SNAPSHOT_DIM", "SUMMARY_COLUMNS", "ZARR_FORMAT", "build_fit_tree", "build_snapshot_tree",
    "is_snapshot_store", "skipped_snapshots", "snapshot_records", "snapshot_view", "snapshot_views", "write_snapshot_store", "chain_weights", "check_schema", "fit_level_summary",
    "format_summary", "json_attr", "missing_groups", "open_fit_store", "parameter_names", "parameter_statistics",
    "parameter_summary", "read_fit_tree", "remove_stale_temps", "schema_problem", "summary_table",
    "write_directory_atomically", "write_fit_store",
]
