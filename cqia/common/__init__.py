"""What every phase shares: errors, file I/O, params, the lineage format, stage entries."""
