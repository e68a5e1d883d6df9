"""Publish: a category's part of the release (records, Parquet, lineage, card, statistics)."""
