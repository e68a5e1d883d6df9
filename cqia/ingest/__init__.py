"""Ingest: raw files of one source category -> judged records (the category stage's core)."""
