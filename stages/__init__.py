"""DVC stages: one module per stage, each a thin entry over a pure core in `cqia`."""
