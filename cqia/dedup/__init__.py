"""Dedup: exact and near duplicates across the release, from the categories' keys."""
